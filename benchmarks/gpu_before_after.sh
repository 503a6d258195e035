#!/usr/bin/env bash
# bench_gpu.py for an older checkout and for this one, one after the other on the same GPU machine,
# so that their figures compare (a fresh machine and another card give other figures).
#
#   git archive OLD_COMMIT | (mkdir -p .before && tar -x -C .before)   # the "before" code
#   bash benchmarks/gpu_before_after.sh OUT_DIR [WHEELS_DIR]
#
# WHEELS_DIR holds wheels of what the GPU machine lacks (pydantic and its needs, seqeval); each
# checkout is installed into a folder of its own and run from outside the repository, so the
# repository's concner/ folder cannot shadow the installed package. Rows, in this order, go to
# OUT_DIR/gpu.json: before (the old code), after-eager (this code, CUDA graphs off), after; ROWS
# (say "before after") picks some of them. Then gpu_graph_check.py checks this code's graphed
# steps against the eager ones (OUT_DIR/gpu_graph_check.json; GRAPH_CHECK=0 skips it).
# BENCH_ARGS (say "--pairs 32 --unlabeled 64") is passed to every bench_gpu.py call.
set -uo pipefail
out=${1:?usage: gpu_before_after.sh OUT_DIR [WHEELS_DIR]}
wheels=${2:-.whl}
repo=$(pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$out"
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$@"; }
pip_target /tmp/site_deps --upgrade "$wheels"/*.whl || exit 1
pip_target /tmp/site_after --no-build-isolation "$repo" || exit 1
if [ -d "$repo/.before" ]; then pip_target /tmp/site_before --no-build-isolation "$repo/.before" || exit 1; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cd /tmp
rows=" ${ROWS:-before after-eager after} "
run() {  # label, installed checkout, extra arguments
    local label=$1 site=$2
    shift 2
    [ -d "/tmp/site_$site" ] && [[ $rows == *" $label "* ]] || return 0
    echo "== $label"
    PYTHONPATH="/tmp/site_$site:/tmp/site_deps" timeout 240 python3 -P "$repo/benchmarks/bench_gpu.py" \
        --label "$label" --out "$out/gpu.json" ${BENCH_ARGS:-} "$@" 2>&1 | grep -v "Loading weights\|Writing model" | tee "$out/$label.log" \
        | grep "stage done\|graph\|Error\|error" | head -n 20
}
run before before
run after-eager after --eager
run after after
if [ "${GRAPH_CHECK:-1}" != 0 ]; then
    echo "== graph check"
    PYTHONPATH="/tmp/site_after:/tmp/site_deps" timeout 240 python3 -P "$repo/benchmarks/gpu_graph_check.py" \
        --out "$out/gpu_graph_check.json" 2>&1 | grep -v "Loading weights\|Writing model" | tee "$out/graph_check.log" \
        | grep "check:\|Error\|error" | cut -c1-400 | head -n 30
fi
