"""The stage registry: order, names and model roles come from the stages' declarations and are
checked when it loads."""

from __future__ import annotations

from dataclasses import replace

import pytest

from concner.tasks.engine import registry
from concner.tasks.stages import evaluate


def test_roles_come_from_the_stage_declarations():
    assert registry.STAGE_OF_ROLE == {"teacher": "train", "student": "distill"}
    assert evaluate.MODELS == registry.STAGE_OF_ROLE  # evaluate scores the models the registry declares


def test_a_misordered_or_doubled_registry_is_refused_when_it_loads():
    stages = list(registry.STAGES)
    assert registry.check(stages) == registry.STAGE_OF_ROLE
    moved = [s for s in stages if s.name != "ingest"] + [registry.get("ingest")]
    with pytest.raises(ValueError, match="listed before its inputs"):
        registry.check(moved)
    with pytest.raises(ValueError, match="registered twice"):
        registry.check(stages + [registry.get("evaluate")])
    second_teacher = replace(registry.get("evaluate"), name="evaluate_again", role="teacher")
    with pytest.raises(ValueError, match="both train the 'teacher'"):
        registry.check(stages + [second_teacher])
