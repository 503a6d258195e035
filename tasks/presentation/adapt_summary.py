"""The summary of an adapt artifact: settings, texts, the held-out masked-LM loss before and after,
and the loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from concner.tasks.engine.artifacts import ADAPT_STEPS, adapted_encoder
from concner.tasks.presentation.summary import Figures, Note, SampleQuery, StageSummary
from concner.tasks.presentation.training_summary import loss_table

# Only renders artifacts: stage keys leave this module out (tasks/engine/keys.py).
PRESENTATION_ONLY = True


def adapt_summary(manifest: dict[str, Any], folder: Path, query: SampleQuery) -> StageSummary:
    m = manifest["metrics"]
    if not m.get("enabled"):
        return StageSummary("adapt", [Note("adapt is off (adapt.enabled: false): train and distill use train.encoder")])
    texts, drawn = m.get("texts", {}), m.get("drawn", {})
    loss = m.get("heldout_mlm_loss") or {}
    figures = {
        "encoder adapted": m.get("encoder"),
        "texts": f"{texts.get('target')} target sentences, {texts.get('pairs')} translation pairs, "
                 f"{texts.get('source')} source sentences",
        "examples drawn": ", ".join(f"{k} {v}" for k, v in drawn.items()),
        "new vocabulary pieces": f"{m.get('new_tokens', 0)}" + (
            f" (e.g. {' '.join(m['new_token_sample'][:10])})" if m.get("new_token_sample") else ""),
        "adapted encoder": adapted_encoder(folder),
    }
    if loss.get("before") is not None:
        figures["held-out masked-LM loss"] = (f"before {loss['before']:.4f}, after {loss['after']:.4f} "
                                              f"({loss['after'] - loss['before']:+.4f}) on {texts.get('heldout')} "
                                              "target sentences never trained on")
    else:
        figures["held-out masked-LM loss"] = "none: too little unlabeled target text to hold any out"
    blocks = [Figures("adapt: summary", figures)]
    if ADAPT_STEPS.exists(folder):
        blocks.append(loss_table(ADAPT_STEPS.read(folder)))
    return StageSummary("adapt", blocks)
