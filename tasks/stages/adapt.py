"""Adapt stage: continued pretraining of train.encoder on the target language (tasks/training/adapt.py).

Output: encoder/ (a transformers folder: the adapted encoder with its masked-LM head and the
tokenizer, grown by adapt.new_tokens pieces), steps.parquet (the loss curve), the held-out
target masked-LM loss before and after in the manifest. With adapt.enabled false the stage
reads nothing and writes only its manifest: train, distill and project then use train.encoder.
"""

from __future__ import annotations

from typing import Any

from concner.tasks.engine.artifacts import (ADAPT_STEPS, ADAPTED_ENCODER, TRANSLATIONS, adapted_encoder, corpus_split,
                                           load_translations)
from concner.tasks.engine.config import RunConfig
from concner.tasks.engine.model_refs import resolve_encoder
from concner.tasks.engine.stage import StageContext, StageSpec
from concner.tasks.stage_summaries import adapt as shown


def adapt_params(config: RunConfig) -> dict[str, Any]:
    if not config.adapt.enabled:
        return {"enabled": False}
    return {**config.adapt.model_dump(mode="json"), "encoder": config.train.encoder, "seed": config.seed}


def compute_adapt(ctx: StageContext) -> None:
    a = ctx.config.adapt
    if not a.enabled:
        ctx.metrics.update(enabled=False)
        return
    from concner.tasks.training.adapt import AdaptSettings, AdaptTexts, adapt_encoder, split_heldout

    unlabeled = [" ".join(s.tokens) for s in corpus_split(ctx.inputs, "target_unlabeled")]
    train_target, heldout = split_heldout(unlabeled, a.heldout, ctx.seed)
    source = {s.id: " ".join(s.tokens) for s in corpus_split(ctx.inputs, "source_train")}
    frame = load_translations(ctx.inputs["translate"])
    kept = frame[frame["kept"]]
    pairs = [(source[int(i)], " ".join(t)) for i, t in zip(kept["id"], kept["translation_tokens"])
             if int(i) in source and len(t)]
    texts = AdaptTexts(target=train_target + [t for _, t in pairs], pairs=pairs, source=list(source.values()),
                       heldout=heldout)
    settings = AdaptSettings(
        steps=a.steps, batch_size=a.batch_size, learning_rate=a.learning_rate, weight_decay=a.weight_decay,
        warmup_ratio=a.warmup_ratio, max_grad_norm=a.max_grad_norm, mask_rate=a.mask_rate, max_length=a.max_length,
        weights={"target": a.target_weight, "tlm": a.tlm_weight, "source": a.source_weight}, seed=ctx.seed)
    encoder = resolve_encoder(ctx.config.train.encoder, ctx.inputs, ctx.store_root)
    result = adapt_encoder(encoder, texts, settings, adapted_encoder(ctx.out), new_tokens=a.new_tokens,
                           log=ctx.log, progress="adapting encoder")
    ADAPT_STEPS.write(ctx.out, result.steps)
    ctx.metrics.update(
        enabled=True,
        encoder=ctx.config.train.encoder,
        texts={"target": len(texts.target), "pairs": len(texts.pairs), "source": len(texts.source),
               "heldout": len(heldout)},
        drawn=result.drawn,
        steps=len(result.steps),
        heldout_mlm_loss={"before": result.heldout_before, "after": result.heldout_after},
        new_tokens=len(result.new_tokens),
        new_token_sample=result.new_tokens[:20],
    )


def adapt_reads(config: RunConfig) -> dict[str, tuple[str, ...]]:
    if not config.adapt.enabled:
        return {"ingest": (), "ingest_target": (), "translate": ()}
    # the tiny encoder is built from the run's source and target text: both are read anyway
    return {"ingest": ("source_train.*",), "ingest_target": ("target_unlabeled.*",), "translate": (TRANSLATIONS.file,)}


STAGE = StageSpec(
    name="adapt",
    version="1",
    inputs=("ingest", "ingest_target", "translate"),
    params=adapt_params,
    reads=adapt_reads,
    libraries=("torch", "transformers", "tokenizers"),
    model_params=("encoder",),
    compute=compute_adapt,
    outputs=(ADAPTED_ENCODER, ADAPT_STEPS),
    view=shown.VIEW,
    description="adapt the encoder to the target language: masked-LM, translation-LM, source share",
)
