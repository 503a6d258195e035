"""What `concner inspect`, the Prefect UI and `concner report` show of the adapt stage's artifact.

Only renders: stage keys leave this module out (tasks/engine/keys.py), so restyling it recomputes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from concner.tasks.presentation.summary import StageView

PRESENTATION_ONLY = True


def headline(m: dict) -> str:
    if not m.get("enabled"):
        return "off (adapt.enabled: false)"
    loss = m.get("heldout_mlm_loss") or {}
    text = f"{m.get('steps')} steps"
    if loss.get("before") is not None:
        text += f", held-out target MLM loss {loss['before']:.2f} -> {loss['after']:.2f}"
    return text + (f", +{m['new_tokens']} pieces" if m.get("new_tokens") else "")


def summary(manifest: dict[str, Any], folder: Path, query):
    from concner.tasks.presentation.adapt_summary import adapt_summary

    return adapt_summary(manifest, folder, query)


VIEW = StageView(summary, headline)
