"""Words <-> subwords: tokenize pre-split sentences for a token classifier and map predictions back.

Convention (HF run_ner.py): a word's label sits on its FIRST subword; its other subwords, the
special tokens ([CLS], [SEP], <s>, ...) and padding get -100, which every loss here ignores.
Predictions are read back from the same first subwords.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

from concner.tasks.engine.errors import UserError

IGNORE_INDEX = -100


def encode_words(
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[Sequence[str]],
    labels: Sequence[Sequence[int]] | None,
    max_length: int,
) -> dict[str, list]:
    """Tokenize pre-split sentences; one unpadded entry per sentence under each key.

    Returns
      input_ids, attention_mask: list[list[int]]  (truncated to max_length subwords, specials included)
      word_ids:  list[list[int | None]]           subword -> word index, None for specials
      n_words:   list[int]                        words in the input sentence
      truncated: list[bool]                       True when words past max_length were cut off
      labels:    list[list[int]]                  only when `labels` is given: the word's label on
                                                  its first subword, -100 elsewhere

    A word the tokenizer turns into no subword at all (e.g. a lone zero-width space) gets no
    position either; word_predictions reports such words, like truncated ones, as not covered.
    """
    if not getattr(tokenizer, "is_fast", False):
        # word_ids() and overflow information exist only on fast (Rust) tokenizers
        raise UserError(f"{type(tokenizer).__name__} is not a fast tokenizer; word alignment needs one")
    if labels is not None and len(labels) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(labels)} label sequences")
    if not sentences:  # the tokenizer reads an empty batch as one empty input
        return {"input_ids": [], "attention_mask": [], "word_ids": [], "n_words": [], "truncated": [],
                **({"labels": []} if labels is not None else {})}
    enc = tokenizer(
        [list(words) for words in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    out: dict[str, list] = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "word_ids": [enc.word_ids(i) for i in range(len(sentences))],
        "n_words": [len(words) for words in sentences],
        # the Rust encoding keeps what truncation cut off, even without return_overflowing_tokens
        "truncated": [len(enc.encodings[i].overflowing) > 0 for i in range(len(sentences))],
    }
    if labels is not None:
        out["labels"] = [
            _first_subword_labels(word_ids, word_labels, n)
            for word_ids, word_labels, n in zip(out["word_ids"], labels, out["n_words"])
        ]
    return out


def _first_subword_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], n_words: int) -> list[int]:
    if len(word_labels) != n_words:
        raise ValueError(f"{n_words} words but {len(word_labels)} labels")
    out: list[int] = []
    prev: int | None = None
    for w in word_ids:
        out.append(IGNORE_INDEX if w is None or w == prev else int(word_labels[w]))
        prev = w
    return out


def collate(tokenizer: PreTrainedTokenizerBase, encoded: dict[str, list], indices: Sequence[int]) -> dict[str, Tensor]:
    """Pad the sentences `indices` of an encode_words result into a batch of tensors
    (input_ids, attention_mask, and labels padded with -100 when present)."""
    keys = [k for k in ("input_ids", "attention_mask", "labels") if k in encoded]
    features = [{k: encoded[k][i] for k in keys} for i in indices]
    collator = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    return dict(collator(features))


def word_predictions(
    scores: Tensor,
    word_ids: Sequence[int | None],
    n_words: int,
    *,
    o_index: int = 0,
) -> tuple[Tensor, Tensor]:
    """Map one sentence's subword scores [T, C] (logits or probabilities) to words: [n_words, C].

    Word w takes the row of its first subword. Words with no subword (cut by truncation, or
    tokenized to nothing) are not covered; their row is the one-hot vector on `o_index` (the
    label "O", index 0 in concner's label lists), i.e. a confident "O": a valid probability
    vector, and argmax gives O for logits too. Returns (word_scores, covered: bool [n_words]).
    T may exceed len(word_ids) (padding); those rows are ignored.
    """
    if scores.dim() != 2 or scores.shape[0] < len(word_ids):
        raise ValueError(f"expected scores [T >= {len(word_ids)}, C], got {tuple(scores.shape)}")
    word_scores = torch.zeros(n_words, scores.shape[1], dtype=scores.dtype, device=scores.device)
    word_scores[:, o_index] = 1
    covered = torch.zeros(n_words, dtype=torch.bool, device=scores.device)
    positions: list[int] = []
    words: list[int] = []
    prev: int | None = None
    for pos, w in enumerate(word_ids):
        if w is not None and w != prev:
            positions.append(pos)
            words.append(w)
        prev = w
    if words:
        word_scores[words] = scores[positions]
        covered[words] = True
    return word_scores, covered


class EncodedTable:
    """Sentences tokenized once and padded to one width (`collate` over all of them).

    A training batch is then a few rows of it cut to the batch's longest sentence: the tensors
    `collate` would give for those rows alone, without tokenizing or padding again every step
    (on a GPU that host work, not the model, used to bound the loop).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, encoded: dict[str, list]):
        self.lengths: list[int] = [len(ids) for ids in encoded["input_ids"]]
        self.pad_values = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        self.tensors = {}
        if self.lengths:
            # Rows are right-padded whatever the tokenizer's default: the encoders here count
            # positions from the left, so a left-padded row would move every token to another
            # position embedding (its predictions would depend on its batch), and every word
            # position taken from the unpadded encoding would point into the padding.
            side = getattr(tokenizer, "padding_side", "right")
            tokenizer.padding_side = "right"
            try:
                self.tensors = collate(tokenizer, encoded, range(len(self.lengths)))
            finally:
                tokenizer.padding_side = side

    def width(self, rows: Sequence[int]) -> int:
        return max((self.lengths[i] for i in rows), default=0)

    def rows(self, rows: Sequence[int], width: int) -> dict[str, Tensor]:
        """input_ids, attention_mask (and labels) of `rows`, `width` columns wide (host tensors;
        wider than this table's longest sentence when a batch mixes it with another table)."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        full = next(iter(self.tensors.values())).shape[1]
        cut = min(width, full)
        return {k: torch.nn.functional.pad(v[index, :cut], (0, width - cut), value=self.pad_values[k]) if width > cut
                else v[index, :cut] for k, v in self.tensors.items()}


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """A host tensor on `device`; to a GPU through pinned memory without blocking, so the host can
    prepare the next batch while the GPU still works on this one."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
