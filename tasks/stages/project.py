"""Project stage: align each source sentence with its translation and carry the entity spans over.

Output: projected.parquet (a row per sentence: alignment, projected tags, per-entity outcomes),
projected.conll (the kept target-language training sentences), projection rates in the manifest,
and seqeval scores of the projection when the translation side has gold tags.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from concner.tasks.engine.artifacts import PROJECTED, PROJECTED_CONLL, load_split, load_translations
from concner.tasks.engine.config import RunConfig
from concner.tasks.text.corpus import Sentence
from concner.tasks.engine.model_refs import ADAPTED, TINY, resolve_encoder
from concner.tasks.nlp.projection import OUTCOMES, SUCCESS, project_sentence
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.stage_summaries import project as shown


METHOD_LETTER = {"mwmf": "m", "inter": "a", "itermax": "i"}


def project_params(config: RunConfig) -> dict[str, Any]:
    return config.project.model_dump(mode="json")


def compute_project(ctx: StageContext) -> None:
    import pandas as pd

    from concner.tasks.nlp.align import BatchAligner

    p = ctx.config.project
    source = {s.id: s for s in load_split(ctx.inputs["ingest"], "source_train")}
    translations = load_translations(ctx.inputs["translate"])
    known = translations[translations["id"].isin(source)]
    counts = Counter(
        unknown_id=int((~translations["id"].isin(source)).sum()),
        missing_translation=len(set(source) - set(translations["id"])),
        not_kept_by_translate=int((~known["kept"]).sum()),
    )
    usable = known[known["kept"]]
    pairs = [(source[i].tokens, list(toks)) for i, toks in zip(usable["id"], usable["translation_tokens"])]
    model = resolve_encoder(p.aligner_model, ctx.inputs, ctx.store_root)
    aligner = BatchAligner(model, layer=p.layer, methods=METHOD_LETTER[p.method], batch_size=p.batch_size)
    alignments = aligner.align(pairs, progress=True)
    counts.update(empty_side=aligner.last_stats.empty, truncated=aligner.last_stats.truncated)

    rows = []
    outcomes: Counter = Counter()
    by_type: dict[str, Counter] = {}
    for (sid, gold), (src_tokens, tgt_tokens), alignment in zip(
        zip(usable["id"], usable["gold_tags"]), pairs, alignments
    ):
        links = alignment[p.method]
        tags, entities = project_sentence(source[sid].tags, tgt_tokens, links)
        for e in entities:
            outcomes[e.outcome] += 1
            by_type.setdefault(e.label, Counter())[e.outcome] += 1
        complete = all(e.outcome in SUCCESS for e in entities)
        rows.append({
            "id": int(sid),
            "source_tokens": src_tokens,
            "source_tags": source[sid].tags,
            "target_tokens": tgt_tokens,
            "alignment": [list(pair) for pair in links],
            "projected_tags": tags,
            "entities": json.dumps([e.to_dict() for e in entities]),
            "gold_tags": None if gold is None else list(gold),
            "kept": bool(tgt_tokens) and (p.keep == "all" or complete),
        })
    frame = pd.DataFrame(rows)
    PROJECTED.write(ctx.out, frame)
    kept = frame[frame["kept"]] if len(frame) else frame
    PROJECTED_CONLL.write(ctx.out, [Sentence(int(r.id), list(r.target_tokens), list(r.projected_tags))
                                    for r in kept.itertuples()])

    total = sum(outcomes.values())
    ctx.metrics.update(
        pairs=len(pairs),
        kept_sentences=int(len(kept)),
        dropped_sentences=int(len(frame) - len(kept)),
        outcomes={o: outcomes[o] for o in OUTCOMES},
        projection_rate=round(sum(outcomes[o] for o in SUCCESS) / total, 4) if total else None,
        projection_rate_by_type={
            t: round(sum(c[o] for o in SUCCESS) / sum(c.values()), 4) for t, c in sorted(by_type.items())
        },
        counts=dict(counts),
        aligner={"model": p.aligner_model, "path": model, "layer": p.layer, "method": p.method},
    )
    with_gold = frame[frame["gold_tags"].notna()] if len(frame) else frame
    if len(with_gold):
        from concner.tasks.training.evaluate import score_tags  # loads torch: only when the stage computes

        ctx.metrics["projection_quality"] = score_tags(list(with_gold["gold_tags"]), list(with_gold["projected_tags"]))


def project_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    tiny = config.project.aligner_model == TINY  # built from the target text too
    return {"ingest": ("source_train.*",), "ingest_target": ("target_unlabeled.*",) if tiny else (),
            "adapt": ("encoder/*",) if config.project.aligner_model == ADAPTED else ()}


STAGE = StageSpec(
    name="project",
    version="1",
    inputs=("ingest", "ingest_target", "translate", "adapt"),
    params=project_params,
    reads=project_reads,
    libraries=("torch", "transformers", "simalign", "seqeval"),
    model_params=("aligner_model",),
    compute=compute_project,
    outputs=(PROJECTED, PROJECTED_CONLL),
    view=shown.VIEW,
    description="align source and translation words (simalign) and project entity spans",
)
