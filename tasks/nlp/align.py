"""Batched SimAlign: the word alignments of `simalign.SentenceAligner.get_word_aligns`, many pairs per pass.

Stock simalign encodes one sentence pair per forward pass and solves "mwmf" with networkx's pure-Python
blossom algorithm; on CPU the latter costs ~80% of its time. `BatchAligner` keeps simalign's model
loading (`EmbeddingLoader`), its per-word subword tokenization, its layer choice and its matching
functions, and changes only how the work is scheduled:

* sentences are encoded many at a time, sorted by subword length, right-padded with an attention mask;
  a sentence's hidden states then equal its stock ones up to float noise (stock itself pads the source
  and target of a pair to each other, so its own vectors carry the same kind of noise);
* "mwmf" is solved with scipy's assignment solver and checked: the solution is used only when it is the
  unique optimum by a margin (see `max_weight_match`), otherwise simalign's networkx routine runs;
* subword matches are mapped back to words with numpy instead of a Python triple loop;
* encoder layers above the chosen one are dropped (hidden_states[layer] does not depend on them).

All of these give the same numbers as stock up to the float noise of the first point.

Over-long sentences are truncated exactly like stock simalign does (the tokenizer cuts at the model's
limit, words past it get no alignment) and counted in `AlignStats.truncated`; unlike stock, a model whose
tokenizer limit exceeds its position table is cut at the table size instead of crashing.
Pairs with an empty side (no words, or no subwords) get empty alignments and are counted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy.optimize import linear_sum_assignment
from simalign import SentenceAligner
from simalign.simalign import EmbeddingLoader
from threadpoolctl import threadpool_limits  # ships with scikit-learn, which simalign needs

from concner.tasks.engine.errors import UserError

# simalign gives its logger a handler of its own, and the run's logging (Prefect) prints the same
# record again through the root logger: one copy is enough
for _handler in list(logging.getLogger("simalign.simalign").handlers):
    logging.getLogger("simalign.simalign").removeHandler(_handler)


LOG = logging.getLogger(__name__)

# The letters and names of SentenceAligner.__init__ (a local dict there, so it cannot be imported).
METHOD_NAMES = {"a": "inter", "m": "mwmf", "i": "itermax", "f": "fwd", "r": "rev"}
MODEL_ALIASES = {"bert": "bert-base-multilingual-cased", "xlmr": "xlm-roberta-base"}
# RoBERTa-style models offset positions by padding_idx + 1, so their table holds 2 more rows than tokens.
_OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl"}
# Encoders whose hidden_states[i] is just layer i's output, so later layers can be dropped.
_PRUNABLE_MODELS = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}
# Margin by which the scipy matching must beat every other maximum-cardinality matching. Float64 sums of
# <= 512 similarities in [0, 1] carry rounding errors near 1e-13, so 1e-8 leaves a wide safety gap.
MWMF_MARGIN = 1e-8
# Batches of sentences encoded before their pairs are matched: bounds the hidden states held in memory
# (16 x 32 sentences of mBERT: ~60 MB) while leaving enough sentences to sort by length.
_CHUNK_BATCHES = 16

Pair = tuple[list[str], list[str]]
Alignment = dict[str, list[tuple[int, int]]]


@dataclass
class AlignStats:
    """What the last `align` call met; a caller can log or store it in a manifest."""

    pairs: int = 0
    empty: int = 0  # a side had no words or no subwords: empty alignments returned
    truncated: int = 0  # a side exceeded the model's length: words past the limit left unaligned
    mwmf_fallbacks: int = 0  # scipy's matching was not provably unique: networkx (stock) was called


@dataclass
class _Side:
    """One sentence as stock simalign sees it."""

    word_tokens: list[list[str]]  # tokenizer.tokenize(word) per word, as in get_word_aligns
    b2w: np.ndarray  # subword index -> word index
    input_ids: list[int]  # model input incl. special tokens, truncated
    extra: dict[str, list[int]]  # other tokenizer outputs (token_type_ids), same length
    n_vectors: int  # subword vectors available after truncation


def max_weight_match(sim: np.ndarray, margin: float = MWMF_MARGIN) -> tuple[np.ndarray, bool]:
    """`SentenceAligner.get_max_weight_match(sim)`, computed with scipy when that is provably the same.

    networkx's `max_weight_matching(maxcardinality=True)` on the complete bipartite graph of `sim`
    returns a matching of size min(m, n) with maximal weight; `linear_sum_assignment(maximize=True)`
    solves that same problem. The two can differ only if the optimum is not unique, so the scipy answer
    M is used only when every other matching is worse by more than `margin`: any other maximum-
    cardinality matching lacks some edge e of M, so the best of them is max over e in M of the optimum
    with e forbidden. Otherwise (or when a zero/non-finite similarity would make networkx drop an edge)
    simalign's own function runs. Returns (matrix, fell_back).
    """
    if not np.isfinite(sim).all() or sim.min() <= 0.0:
        return SentenceAligner.get_max_weight_match(sim), True
    weights = sim.astype(np.float64)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    best = weights[rows, cols].sum()
    for r, c in zip(rows, cols):
        saved = weights[r, c]
        weights[r, c] = -np.inf  # forbidden edge
        try:
            r2, c2 = linear_sum_assignment(weights, maximize=True)
            runner_up = weights[r2, c2].sum()
        except ValueError:  # no full matching without this edge (1 x 1 matrix): nothing to tie with
            runner_up = -np.inf
        weights[r, c] = saved
        if best - runner_up <= margin:
            return SentenceAligner.get_max_weight_match(sim), True
    result = np.zeros_like(sim)
    result[rows, cols] = 1
    return result, False


def _to_word_pairs(matrix: np.ndarray, src_map: np.ndarray, tgt_map: np.ndarray) -> list[tuple[int, int]]:
    """Stock's loop `if mat[i, j] > 0: add((b2w1[i], b2w2[j]))`, then sorted, done with numpy."""
    rows, cols = np.nonzero(matrix > 0)
    return sorted(set(zip(src_map[rows].tolist(), tgt_map[cols].tolist())))


def _position_limit(config) -> int | None:
    """Tokens the model's position table can take, or None when it has no absolute positions."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1  # padding_idx + 1
    return int(positions)


def _drop_layers_above(model, layer: int) -> None:
    """Remove the encoder layers after `layer`: hidden_states[layer] never depends on them.

    Only for architectures whose hidden_states[i] is the plain output of layer i (no final norm
    applied to the last entry); saves e.g. 1/3 of mBERT's compute at simalign's default layer 8.
    """
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if model.config.model_type in _PRUNABLE_MODELS and isinstance(layers, torch.nn.ModuleList) and layer < len(layers):
        # Keep one layer at least: hidden_states[0] (embeddings) is captured as the first layer's input.
        encoder.layer = layers[: max(layer, 1)]


class BatchAligner:
    """simalign's SentenceAligner with batched encoding; `align` returns what get_word_aligns would."""

    def __init__(
        self,
        model_name_or_path: str = "bert-base-multilingual-cased",
        layer: int = 8,
        methods: str = "mai",
        token_type: str = "bpe",
        device: str | None = None,
        batch_size: int = 32,
        distortion: float = 0.0,
        exact_mwmf: bool = False,
        threads: int | None = None,
    ):
        """Load the model the way simalign does.

        methods: simalign's `matching_methods` letters (m=mwmf, a=inter, i=itermax, f=fwd, r=rev).
        exact_mwmf: always call networkx for "mwmf" like stock (slow); the default uses the checked
        scipy solver of `max_weight_match`, which gives the same matrix.
        threads: torch CPU threads while aligning (None: torch's setting). On a small box shared with other
        busy processes use 1: with 2 threads on 2 busy cores every op waits for a descheduled peer thread
        (measured here: 65 instead of 22 ms a pair).
        """
        unknown = sorted(set(methods) - set(METHOD_NAMES))
        if unknown or not methods:
            raise UserError(f"alignment methods {methods!r}: use letters from {''.join(METHOD_NAMES)} (e.g. 'mai')")
        if token_type not in ("bpe", "word"):
            raise UserError(f"token_type {token_type!r}: use 'bpe' or 'word'")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = MODEL_ALIASES.get(model_name_or_path, model_name_or_path)
        self.layer = layer
        self.methods = [METHOD_NAMES[m] for m in methods]
        self.token_type = token_type
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.distortion = distortion
        self.exact_mwmf = exact_mwmf
        self.threads = threads
        self.last_stats = AlignStats()
        self._word_cache: dict[str, list[str]] = {}

        try:
            loader = EmbeddingLoader(model=self.model_name, device=self.device, layer=layer)
        except (OSError, ValueError) as err:
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
            reason = " ".join(str(err).split()).rstrip(".")  # one line: the CLI prints it as is
            raise UserError(
                f"cannot load alignment model {self.model_name!r}{offline}: {reason}. "
                "Pass a local path to a folder holding the model's config, weights and tokenizer files."
            ) from None
        self.model = loader.emb_model
        self.tokenizer = loader.tokenizer
        layers = self.model.config.num_hidden_layers
        if not 0 <= layer <= layers:
            raise UserError(f"alignment layer {layer}: model {self.model_name!r} has hidden states 0..{layers}")
        _drop_layers_above(self.model, layer)
        # Stock truncates at the tokenizer's model_max_length; cap it by the position table so a
        # tokenizer without a sane limit truncates instead of crashing the model.
        limits = [n for n in (self.tokenizer.model_max_length, _position_limit(self.model.config)) if n]
        self.max_length = min(limits)

    def _tokenize_word(self, word: str) -> list[str]:
        """tokenizer.tokenize(word), cached: sentences repeat most words and the result depends on the word only."""
        tokens = self._word_cache.get(word)
        if tokens is None:
            tokens = self._word_cache[word] = self.tokenizer.tokenize(word)
        return tokens

    def _prepare(self, sentences: list[list[str]]) -> list[_Side]:
        """Per-word subwords (for the word maps) and the model input, both as stock builds them."""
        encoded = self.tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=self.max_length)
        sides = []
        for k, words in enumerate(sentences):
            word_tokens = [self._tokenize_word(w) for w in words]
            b2w = np.array([i for i, toks in enumerate(word_tokens) for _ in toks], dtype=np.int64)
            ids = encoded["input_ids"][k]
            extra = {key: encoded[key][k] for key in encoded.keys() if key not in ("input_ids", "attention_mask")}
            # Stock takes hidden[1:-1][:n_subwords]: the ids minus [CLS] and [SEP].
            sides.append(_Side(word_tokens, b2w, ids, extra, min(len(b2w), len(ids) - 2)))
        return sides

    @torch.inference_mode()
    def _encode(self, sides: list[_Side]) -> list[np.ndarray]:
        """Chosen-layer vectors of each side's subwords, encoded in length-sorted padded batches."""
        vectors: list[np.ndarray] = [np.empty(0)] * len(sides)
        order = sorted(range(len(sides)), key=lambda k: len(sides[k].input_ids))
        pad_id = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch = [sides[k] for k in order[start : start + self.batch_size]]
            width = max(len(s.input_ids) for s in batch)
            # Right padding keeps every real token at its stock position id; the mask hides the pads.
            inputs = {
                "input_ids": [s.input_ids + [pad_id] * (width - len(s.input_ids)) for s in batch],
                "attention_mask": [[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in batch],
            }
            for key in batch[0].extra:
                inputs[key] = [s.extra[key] + [0] * (width - len(s.extra[key])) for s in batch]
            tensors = {key: torch.tensor(value, device=self.device) for key, value in inputs.items()}
            hidden = self.model(**tensors, output_hidden_states=True)["hidden_states"][self.layer]
            hidden = hidden.float().cpu().numpy()
            for row, k in enumerate(order[start : start + self.batch_size]):
                vectors[k] = hidden[row, 1 : 1 + sides[k].n_vectors]
        return vectors

    def _match(self, src: _Side, tgt: _Side, src_vec: np.ndarray, tgt_vec: np.ndarray) -> Alignment:
        """get_word_aligns' matching part: simalign's functions on the pair's similarity matrix."""
        if self.token_type == "word":
            # Words cut off by truncation are dropped, a partly cut word keeps its available subwords, and
            # a word without subwords is left out (its mean would be NaN, on which stock crashes).
            src_words, tgt_words = _cut(src.word_tokens, src.n_vectors), _cut(tgt.word_tokens, tgt.n_vectors)
            src_keep = [i for i, toks in enumerate(src_words) if toks]
            tgt_keep = [i for i, toks in enumerate(tgt_words) if toks]
            src_vec, tgt_vec = SentenceAligner.average_embeds_over_words(
                [src_vec, tgt_vec], [[src_words[i] for i in src_keep], [tgt_words[i] for i in tgt_keep]]
            )
            src_map, tgt_map = np.array(src_keep), np.array(tgt_keep)
        else:
            src_map, tgt_map = src.b2w, tgt.b2w
        sim = SentenceAligner.get_similarity(src_vec, tgt_vec)
        sim = SentenceAligner.apply_distortion(sim, self.distortion)
        mats: dict[str, np.ndarray] = {}
        if {"fwd", "rev", "inter"} & set(self.methods):
            mats["fwd"], mats["rev"] = SentenceAligner.get_alignment_matrix(sim)
            mats["inter"] = mats["fwd"] * mats["rev"]
        if "mwmf" in self.methods:
            if self.exact_mwmf:
                mats["mwmf"] = SentenceAligner.get_max_weight_match(sim)
            else:
                mats["mwmf"], fell_back = max_weight_match(sim)
                self.last_stats.mwmf_fallbacks += fell_back
        if "itermax" in self.methods:
            mats["itermax"] = SentenceAligner.iter_max(sim)
        return {name: _to_word_pairs(mats[name], src_map, tgt_map) for name in self.methods}

    def _chunks(self, pairs: Sequence[Pair]) -> Iterator[range]:
        step = self.batch_size * _CHUNK_BATCHES // 2  # two sentences per pair
        for start in range(0, len(pairs), max(step, 1)):
            yield range(start, min(start + step, len(pairs)))

    def align(self, pairs: Sequence[Pair], progress: bool = False) -> list[Alignment]:
        """Word alignments per (source words, target words) pair, keyed like get_word_aligns' result.

        Stats of the call (empty and truncated pairs, mwmf fallbacks) are left in `self.last_stats`.
        """
        threads_before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._align(pairs, progress)
        finally:
            torch.set_num_threads(threads_before)

    def _align(self, pairs: Sequence[Pair], progress: bool) -> list[Alignment]:
        self.last_stats = stats = AlignStats(pairs=len(pairs))
        results: list[Alignment] = [{}] * len(pairs)
        columns = (TextColumn("aligning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task(self.model_name, total=len(pairs))
            for chunk in self._chunks(pairs):
                todo = []
                for k in chunk:
                    src, tgt = pairs[k]
                    if src and tgt:
                        todo.append(k)
                    else:
                        results[k] = {name: [] for name in self.methods}
                        stats.empty += 1
                sides = self._prepare([list(s) for k in todo for s in pairs[k]]) if todo else []
                # A side whose words all tokenize to nothing has no vectors to compare: empty too.
                live = []
                for i, k in enumerate(todo):
                    if sides[2 * i].n_vectors and sides[2 * i + 1].n_vectors:
                        live.append((k, i))
                    else:
                        results[k] = {name: [] for name in self.methods}
                        stats.empty += 1
                vectors = self._encode([sides[j] for _, i in live for j in (2 * i, 2 * i + 1)])
                # The similarity products are tiny: numpy's threaded BLAS only adds sync cost there, and
                # on a busy 2-core box its waiting threads made one 40x40 product take 11 ms. BLAS splits
                # a product by output blocks, never along the summed axis, so the values do not change.
                with threadpool_limits(limits=1, user_api="blas"):
                    for n, (k, i) in enumerate(live):
                        src, tgt = sides[2 * i], sides[2 * i + 1]
                        stats.truncated += src.n_vectors < len(src.b2w) or tgt.n_vectors < len(tgt.b2w)
                        results[k] = self._match(src, tgt, vectors[2 * n], vectors[2 * n + 1])
                bar.advance(task, len(chunk))
        if stats.empty or stats.truncated:
            LOG.warning(
                "alignment: %d of %d pairs had an empty side (left unaligned), %d had a side over %d subwords "
                "(truncated like stock simalign: words past the limit are unaligned)",
                stats.empty, stats.pairs, stats.truncated, self.max_length - 2,
            )
        return results


def _cut(word_tokens: list[list[str]], n_subwords: int) -> list[list[str]]:
    """The words' subword lists limited to the first n_subwords subwords (for truncated sentences)."""
    out, left = [], n_subwords
    for toks in word_tokens:
        if left <= 0:
            break
        out.append(toks[:left])
        left -= len(toks)
    return out


def align_pairs(
    pairs: Sequence[Pair],
    model: str = "bert-base-multilingual-cased",
    layer: int = 8,
    methods: str = "mai",
    token_type: str = "bpe",
    device: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
    threads: int | None = None,
) -> list[Alignment]:
    """One-shot `BatchAligner(...).align(pairs)`; build a BatchAligner yourself to reuse the loaded model."""
    aligner = BatchAligner(
        model, layer=layer, methods=methods, token_type=token_type, device=device, batch_size=batch_size, threads=threads
    )
    return aligner.align(pairs, progress=progress)
