"""What a user sees in the Prefect UI: each stage's markdown artifact and the run summary."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

# A piece of each stage's markdown that only a filled-in artifact has.
EXPECTED = {
    "ingest": "| split | sentences | tokens | entities |",
    "ingest_target": "es: ",
    "translate": "| source | translation | chrF |",
    "project": "| outcome | entities |",
    "train": "| set | type | P | R | F1 |",
    "pseudo_label": "Lowest-confidence sentences",
    "distill": "| set | type | P | R | F1 |",
    "evaluate": "| model/set | P | R | F1 |",
}


def latest_markdown(key: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no Prefect artifact with key {key!r}"
    return max(found, key=lambda a: a.created).data


def test_every_stage_publishes_its_key_figures_and_samples(demo_run):
    for stage, info in demo_run.record["stages"].items():
        markdown = latest_markdown(f"{stage.replace('_', '-')}-{info['key']}")
        assert EXPECTED[stage] in markdown, (stage, markdown[:500])
        assert info["key"] in markdown and str(demo_run.stage_dir(stage)) in markdown
    # translate shows real sentence pairs from the artifact, project the projected spans
    translate = latest_markdown(f"translate-{demo_run.record['stages']['translate']['key']}")
    assert translate.count("\n|") >= 2 + 5
    project = latest_markdown(f"project-{demo_run.record['stages']['project']['key']}")
    assert "→" in project and any(f"`{t}`" in project for t in ("PER", "LOC", "ORG", "MISC"))


def test_the_flow_publishes_the_run_summary(demo_run):
    # every run publishes under one key; the demo run's own summary is one of its versions
    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["concner-run-summary"])))
    ours = [a.data for a in versions if demo_run.record["run_id"] in a.data]
    assert ours, [a.data[:200] for a in versions]
    for stage in demo_run.record["stages"]:
        assert f"| {stage} | computed |" in ours[0]
