"""What a user sees in the Prefect UI: each stage's markdown artifact and the run summary."""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

# A piece of each stage's markdown that only a filled-in artifact has. The markdown renders the
# stage's summary, the same blocks `concner inspect --stage` shows.
EXPECTED = {
    "ingest": "| split | sentences | tokens | entities |",
    "ingest_target": "es: ",
    "translate": "| id | source | translation | words |",
    "adapt": "held-out masked-LM loss",
    "project": "| type | projected | repaired |",
    "train": "| set | type | P | R | F1 |",
    "pseudo_label": "an entity shows its mean word confidence",
    "distill": "| set | type | P | R | F1 |",
    "evaluate": "target_test: teacher vs student (%)",
}


def published_markdown(key: str, folder: Path) -> str:
    """The markdown published under `key` for the artifact in `folder`: the same stage key can be
    published by runs into other stores (same inputs, same key), each as a version of the key."""
    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    ours = [a.data for a in versions if f"artifact: `{folder}`" in a.data]
    assert ours, f"no Prefect artifact {key!r} for {folder} (versions: {len(versions)})"
    return ours[-1]


def test_every_stage_publishes_its_key_figures_and_samples(demo_run):
    markdown = {}
    for stage, info in demo_run.record["stages"].items():
        markdown[stage] = published_markdown(f"{stage.replace('_', '-')}-{info['key']}", demo_run.stage_dir(stage))
        assert EXPECTED[stage] in markdown[stage], (stage, markdown[stage][:500])
        assert info["key"] in markdown[stage]
    # translate shows real sentence pairs from the artifact, project the projected spans
    assert markdown["translate"].count("\n|") >= 2 + 5
    assert "→" in markdown["project"] and any(f"`{t}`" in markdown["project"] for t in ("PER", "LOC", "ORG", "MISC"))


def test_the_flow_publishes_the_run_summary(demo_run):
    # every run publishes under one key; the demo run's own summary is one of its versions
    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["concner-run-summary"])))
    ours = [a.data for a in versions if demo_run.record["run_id"] in a.data]
    assert ours, [a.data[:200] for a in versions]
    for stage in demo_run.record["stages"]:
        assert f"| {stage} | computed |" in ours[0]
