"""Span projection rules on hand-made alignments."""

from __future__ import annotations

import random

from concner.tasks.nlp.projection import OUTCOMES, project_sentence, project_span, resolve_overlaps
from concner.tasks.text.tags import Span, spans, spans_to_tags

SUCCESS = ("projected", "repaired", "merged")


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


def test_bridging_a_one_word_gap_may_cover_punctuation():
    # the comma is aligned to the entity but dropped as a candidate (rule 1); the one-word gap it
    # leaves between "Juan" and "Pérez" is then bridged (rule 2), comma included
    tags, ents = project_sentence(["B-PER", "I-PER"], ["Juan", ",", "Pérez"], [(0, 0), (0, 1), (1, 2)])
    assert tags == ["B-PER", "I-PER", "I-PER"]
    assert outcomes(ents) == ["repaired"]


def test_punctuation_aligned_to_an_entity_is_not_projected():
    # the span's only aligned target word is a comma: nothing to project
    tags, ents = project_sentence(["O", "B-PER"], ["hola", ","], [(0, 0), (1, 1)])
    assert tags == ["O", "O"] and outcomes(ents) == ["unaligned"]
    assert (ents[0].target_start, ents[0].target_end) == (None, None)
    # aligned quotes at both edges of the span stay outside it
    tags, ents = project_sentence(["B-PER", "I-PER"], ["«", "Juan", "Pérez", "»"],
                                  [(0, 0), (0, 1), (1, 2), (1, 3)])
    assert tags == ["O", "B-PER", "I-PER", "O"] and outcomes(ents) == ["projected"]


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


# --- rule 3 on chains of overlaps ---------------------------------------------------------------


def one_word_entities(*targets: tuple[int, int, str], n_target: int = 10):
    """Project one-word source entities (in this source order) onto the given target spans."""
    source_tags = [f"B-{label}" for _, _, label in targets]
    alignment = [(i, t) for i, (start, end, _) in enumerate(targets) for t in range(start, end)]
    return project_sentence(source_tags, [f"w{i}" for i in range(n_target)], alignment)


def success_spans(entities) -> list[Span]:
    return sorted({Span(e.target_start, e.target_end, e.label) for e in entities if e.outcome in SUCCESS},
                  key=lambda s: (s.start, s.end, s.label))


def target_spans(entities) -> list[tuple[int | None, int | None]]:
    return [(e.target_start, e.target_end) for e in entities]


def test_longer_span_of_another_type_wins_over_a_shorter_one_inside_it():
    tags, ents = one_word_entities((1, 5, "ORG"), (3, 5, "LOC"), n_target=6)
    assert tags == ["O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O"]
    assert outcomes(ents) == ["projected", "collided"]
    tags, ents = one_word_entities((3, 5, "LOC"), (1, 5, "ORG"), n_target=6)
    assert tags == ["O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O"]
    assert outcomes(ents) == ["collided", "projected"]


def test_a_span_that_wins_one_collision_is_checked_against_every_kept_span():
    # ORG [1,5) beats PER [1,2); it must then also beat LOC [3,5), not silently keep both
    # (the tags would have cut ORG to [1,3) while counting ORG and LOC as projected)
    tags, ents = one_word_entities((1, 2, "PER"), (3, 5, "LOC"), (1, 5, "ORG"), n_target=6)
    assert tags == ["O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O"]
    assert outcomes(ents) == ["collided", "collided", "projected"]


def test_chain_winner_against_a_then_loser_against_c():
    # A = PER [1,2), C = LOC [2,8), B = ORG [1,5): B is longer than A but shorter than C, so B is
    # dropped, and A (which only B overlapped) stays
    tags, ents = one_word_entities((1, 2, "PER"), (2, 8, "LOC"), (1, 5, "ORG"))
    assert outcomes(ents) == ["projected", "projected", "collided"]
    assert tags == ["O", "B-PER", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC", "O", "O"]
    assert target_spans(ents)[2] == (1, 5)  # a collided entity records where it would have landed


def test_a_merged_group_that_loses_drops_every_member():
    # LOC [1,4) and LOC [3,5) merge into [1,5) (4 words), which overlaps the longer PER [4,9)
    # (5 words): the merged group loses, so both LOC entities are collided, none counts as success
    tags, ents = one_word_entities((1, 4, "LOC"), (4, 9, "PER"), (3, 5, "LOC"))
    assert outcomes(ents) == ["collided", "projected", "collided"]
    assert tags == ["O", "O", "O", "O", "B-PER", "I-PER", "I-PER", "I-PER", "I-PER", "O"]
    assert target_spans(ents) == [(1, 4), (4, 9), (3, 5)]


def test_a_merge_compares_its_grown_span_with_the_other_spans():
    # LOC [2,4) alone ties with PER [3,5) (and PER, earlier, would win the tie); merged with
    # LOC [0,3) it spans [0,4), longer than PER, so PER is dropped
    tags, ents = one_word_entities((0, 3, "LOC"), (3, 5, "PER"), (2, 4, "LOC"), n_target=6)
    assert outcomes(ents) == ["projected", "collided", "merged"]
    assert target_spans(ents) == [(0, 4), (3, 5), (0, 4)]
    assert tags == ["B-LOC", "I-LOC", "I-LOC", "I-LOC", "O", "O"]


def test_a_merge_that_reaches_two_spans_of_the_same_type_joins_them_all():
    tags, ents = one_word_entities((0, 2, "LOC"), (3, 5, "LOC"), (1, 4, "LOC"), n_target=6)
    # LOC [1,4) merges with LOC [0,2); the grown span then also joins LOC [3,5): one entity [0,5)
    assert outcomes(ents) == ["projected", "merged", "merged"]  # the earliest source span keeps its outcome
    assert target_spans(ents) == [(0, 5)] * 3
    assert tags == ["B-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC", "O"]


def test_equal_length_collision_goes_to_the_group_with_the_earlier_source_span():
    # LOC [2,4) does not reach LOC [0,2), so it meets PER [3,5) alone: equal length, and PER
    # comes first in the source, so PER keeps its words
    tags, ents = one_word_entities((0, 2, "LOC"), (3, 5, "PER"), (2, 4, "LOC"), n_target=6)
    assert outcomes(ents) == ["projected", "projected", "collided"]
    assert tags == ["B-LOC", "I-LOC", "O", "B-PER", "I-PER", "O"]


def random_case(rng: random.Random) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    n_source, n_target = rng.randint(1, 7), rng.randint(1, 8)
    source_tags, previous = [], None
    for _ in range(n_source):
        tag = rng.choice(["O", "O", "B-PER", "B-LOC", "B-ORG"] + ([f"I-{previous}"] * 3 if previous else []))
        source_tags.append(tag)
        previous = None if tag == "O" else tag[2:]
    target = [rng.choice([f"w{i}", f"w{i}", f"w{i}", ",", "."]) for i in range(n_target)]
    pairs = [(s, t) for s in range(n_source) for t in range(n_target) if rng.random() < 0.3]
    return source_tags, target, pairs


def test_random_alignments_keep_outcomes_and_tags_consistent():
    rng = random.Random(20240601)
    collided = merged = 0
    for case in range(600):
        source_tags, target, alignment = random_case(rng)
        tags, ents = project_sentence(source_tags, target, alignment)
        context = (case, source_tags, target, alignment, [e.to_dict() for e in ents])
        # every source entity gets exactly one outcome, in source order
        assert [(e.source_start, e.source_end, e.label) for e in ents] == \
            [(s.start, s.end, s.label) for s in spans(source_tags)], context
        assert all(e.outcome in OUTCOMES for e in ents), context
        assert all((e.target_start is None) == (e.outcome == "unaligned") for e in ents), context
        # the successful spans never overlap, and they are exactly the entities of the tags
        kept = success_spans(ents)
        assert all(a.end <= b.start for a, b in zip(kept, kept[1:])), context
        assert tags == spans_to_tags(len(target), kept), context
        assert spans(tags) == kept, context
        # a merged entity shares its span with the earlier entity that kept its own outcome
        for e in ents:
            if e.outcome == "merged":
                assert any(h.outcome in ("projected", "repaired") and h.label == e.label
                           and (h.target_start, h.target_end) == (e.target_start, e.target_end)
                           and h.source_start < e.source_start for h in ents), context
        # processing is in source order whatever order the projections come in
        shuffled = [project_span(s, alignment, target) for s in spans(source_tags)]
        rng.shuffle(shuffled)
        resolved = sorted((e.to_dict() for e in resolve_overlaps(shuffled)), key=lambda d: d["source_start"])
        assert resolved == [e.to_dict() for e in ents], context
        collided += sum(e.outcome == "collided" for e in ents)
        merged += sum(e.outcome == "merged" for e in ents)
    assert collided > 30 and merged > 30  # the cases do exercise rule 3
