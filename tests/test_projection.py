"""Span projection rules on hand-made alignments."""

from __future__ import annotations

from concner.tasks.projection import project_sentence


def outcomes(entities):
    return [e.outcome for e in entities]


def test_contiguous_projection_with_reordering():
    tags, ents = project_sentence(
        ["O", "B-MISC", "B-ORG", "I-ORG", "O"],            # the German Deutsche Telekom group
        ["el", "grupo", "Deutsche", "Telekom", "alemán"],
        [(0, 0), (1, 4), (2, 2), (3, 3), (4, 1)],
    )
    assert tags == ["O", "O", "B-ORG", "I-ORG", "B-MISC"]
    assert outcomes(ents) == ["projected", "projected"]


def test_punctuation_is_never_part_of_a_projected_span():
    tags, ents = project_sentence(["B-PER", "I-PER"], ["Juan", ",", "Pérez"], [(0, 0), (0, 1), (1, 2)])
    assert tags == ["B-PER", "I-PER", "I-PER"]  # the one-word gap (the comma) is bridged
    assert outcomes(ents) == ["repaired"]


def test_gap_of_one_word_bridged_longer_gap_keeps_longest_run():
    tags, _ = project_sentence(["B-ORG"], ["a", "b", "c"], [(0, 0), (0, 2)])
    assert tags == ["B-ORG", "I-ORG", "I-ORG"]
    tags, ents = project_sentence(["B-ORG", "I-ORG", "I-ORG"], list("abcdefg"), [(0, 0), (1, 4), (2, 5)])
    assert tags == ["O", "O", "O", "O", "B-ORG", "I-ORG", "O"]
    assert outcomes(ents) == ["repaired"]


def test_unaligned_entity_is_dropped_and_counted():
    tags, ents = project_sentence(["B-PER", "O"], ["hola", "amigo"], [(1, 1)])
    assert tags == ["O", "O"] and outcomes(ents) == ["unaligned"]


def test_same_type_overlap_merges_different_type_keeps_longer():
    tags, ents = project_sentence(["B-LOC", "O", "B-LOC"], ["Nueva", "York"], [(0, 0), (2, 0), (2, 1)])
    assert tags == ["B-LOC", "I-LOC"] and outcomes(ents) == ["projected", "merged"]
    tags, ents = project_sentence(["B-ORG", "I-ORG", "O", "B-PER"], ["Banco", "Santander", "x"],
                                  [(0, 0), (1, 1), (3, 1)])
    assert tags == ["B-ORG", "I-ORG", "O"] and outcomes(ents) == ["projected", "collided"]
    # the later, longer span wins over an earlier shorter one of another type
    tags, ents = project_sentence(["B-PER", "O", "B-ORG", "I-ORG"], ["Banco", "Santander"],
                                  [(0, 1), (2, 0), (3, 1)])
    assert tags == ["B-ORG", "I-ORG"] and outcomes(ents) == ["collided", "projected"]
