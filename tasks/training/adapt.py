"""Continued pretraining of the encoder on the target language (the `adapt` stage's core).

Three objectives share one masked-LM head and one step budget, drawn per example with weights:
- target MLM: masked-LM on target-language text (the unlabeled text and the translations);
- TLM: translation-LM (Conneau & Lample 2019): a source sentence and its translation as one
  pair input, masked across both, so a masked word can be read off the other language;
- source MLM: masked-LM on source sentences, so the source language is not forgotten.
Masking is transformers' `DataCollatorForLanguageModeling` (15 % of tokens by default, of which
80 % [MASK], 10 % random, 10 % kept). With `new_tokens`, the vocabulary first gains the target
words that save the most tokens on the target text (words the encoder cuts into several pieces),
each new embedding the mean of the encoder's own pieces of the same word.

Plain functions over texts and folders; the stage module (tasks/stages/adapt.py) handles artifacts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from concner.tasks.engine.errors import UserError
from concner.tasks.training.optim import optimizer_and_schedule
from concner.tasks.engine.progress import progress_bar


KINDS = ("target", "tlm", "source")


@dataclass
class AdaptSettings:
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    mask_rate: float = 0.15
    max_length: int = 128
    weights: dict[str, float] = field(default_factory=lambda: {"target": 0.5, "tlm": 0.3, "source": 0.2})
    seed: int = 13


@dataclass
class AdaptTexts:
    """What the objectives draw from: target sentences, (source, translation) pairs, source sentences."""

    target: list[str]
    pairs: list[tuple[str, str]]
    source: list[str]
    heldout: list[str]  # target sentences never trained on: the masked-LM loss before and after


@dataclass
class AdaptResult:
    steps: list[dict]
    heldout_before: float | None
    heldout_after: float | None
    drawn: dict[str, int]  # examples drawn per objective
    new_tokens: list[str]


# -- vocabulary ------------------------------------------------------------------------------------


def useful_new_pieces(tokenizer, texts: Sequence[str], n: int) -> list[str]:
    """The `n` target words that save the most tokens on `texts`, most useful first.

    Words as the encoder's own normaliser and pre-tokeniser see them; a word the encoder cuts into
    k > 1 pieces is worth (its occurrences) x (k - 1). Counted here rather than with a `tokenizers`
    WordPiece trainer: the trainer breaks ties in hash-map order, so two processes could add
    different pieces from the same text, and the adapt artifact must be the same bytes every time."""
    backend = tokenizer.backend_tokenizer
    if n <= 0:
        return []
    if type(backend.model).__name__ != "WordPiece":
        raise UserError(f"adapt.new_tokens needs a WordPiece tokenizer (BERT family); this encoder's is "
                        f"{type(backend.model).__name__}: set adapt.new_tokens: 0")
    old_vocab = tokenizer.get_vocab()
    words: Counter = Counter()
    for text in texts:
        normal = backend.normalizer.normalize_str(text) if backend.normalizer else text
        words.update(w for w, _ in backend.pre_tokenizer.pre_tokenize_str(normal))
    scores = {}
    for word, count in words.items():
        if word in old_vocab:
            continue
        saved = len(backend.model.tokenize(word)) - 1
        if saved > 0:
            scores[word] = count * saved
    return [p for p, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def add_pieces(tokenizer, model, pieces: Sequence[str], folder: Path):
    """The tokenizer with `pieces` appended to its WordPiece vocabulary (reloaded from `folder`),
    and the model's embeddings grown to match, each new row the mean of the old pieces' rows."""
    from transformers import AutoTokenizer

    if not pieces:
        return tokenizer
    old_ids = [tokenizer.backend_tokenizer.model.tokenize(p.removeprefix("##")) for p in pieces]
    tokenizer.save_pretrained(folder)
    spec_file = folder / "tokenizer.json"
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    # after every id in use: the vocabulary's, added tokens' and embedding rows' (some models pad it)
    start = max(max(vocab.values()) + 1, len(tokenizer), model.get_input_embeddings().num_embeddings)
    for i, piece in enumerate(pieces):
        vocab[piece] = start + i
    spec_file.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    vocab_txt = folder / "vocab.txt"
    if vocab_txt.exists():  # the slow tokenizer's copy (ids = line numbers): kept in step, or dropped
        lines = vocab_txt.read_text(encoding="utf-8").splitlines()
        if len(lines) == start:
            vocab_txt.write_text("\n".join(lines + list(pieces)) + "\n", encoding="utf-8")
        else:
            vocab_txt.unlink()
    new_tokenizer = AutoTokenizer.from_pretrained(folder)
    embeddings = model.get_input_embeddings().weight
    rows = [embeddings[[t.id for t in toks]].mean(0) if toks else embeddings.mean(0) for toks in old_ids]
    model.resize_token_embeddings(start + len(pieces), mean_resizing=False)
    with torch.no_grad():
        grown = model.get_input_embeddings().weight
        for i, row in enumerate(rows):
            grown[start + i] = row
    return new_tokenizer


# -- training --------------------------------------------------------------------------------------


class _Examples:
    """Every text tokenized once; `draw` picks a step's examples by objective weight."""

    def __init__(self, tokenizer, texts: AdaptTexts, settings: AdaptSettings):
        cut = dict(truncation=True, max_length=settings.max_length)
        self.pools: dict[str, list[list[int]]] = {
            "target": tokenizer(texts.target, **cut)["input_ids"] if texts.target else [],
            "tlm": (tokenizer([s for s, _ in texts.pairs], [t for _, t in texts.pairs], **cut)["input_ids"]
                    if texts.pairs else []),
            "source": tokenizer(texts.source, **cut)["input_ids"] if texts.source else [],
        }
        kinds = [k for k in KINDS if settings.weights.get(k, 0) > 0 and self.pools[k]]
        if not kinds:
            raise UserError("adapt: no objective has text to train on (adapt.target_weight, tlm_weight and "
                            "source_weight are 0, or the run has no target text, translations or source sentences)")
        total = sum(settings.weights[k] for k in kinds)
        self.kinds = kinds
        self.p = torch.tensor([settings.weights[k] / total for k in kinds])

    def draw(self, n: int, generator: torch.Generator) -> tuple[list[list[int]], list[str]]:
        kinds = torch.multinomial(self.p, n, replacement=True, generator=generator).tolist()
        out, names = [], []
        for k in kinds:
            pool = self.pools[self.kinds[k]]
            out.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
            names.append(self.kinds[k])
        return out, names


def _collator(tokenizer, mask_rate: float):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mask_rate, return_tensors="pt")


def _masked_batch(collator, ids: list[list[int]], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Masked inputs and labels for `ids`; the draws come from `generator` (forked into torch's
    global RNG, which the collator uses), so masks are the same on every machine."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return collator([{"input_ids": x} for x in ids])


def heldout_loss(model, tokenizer, texts: Sequence[str], settings: AdaptSettings, batch_size: int = 64) -> float | None:
    """Mean masked-LM loss per masked token on `texts`, with masks fixed by the settings' seed
    (so the loss before and after adaptation is measured on the same masked tokens)."""
    if not texts:
        return None
    collator = _collator(tokenizer, settings.mask_rate)
    generator = torch.Generator().manual_seed(settings.seed + 7)
    ids = tokenizer(list(texts), truncation=True, max_length=settings.max_length)["input_ids"]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = _masked_batch(collator, ids[start : start + batch_size], generator)
            batch = {k: v.to(device) for k, v in batch.items()}
            total += float(mlm_loss(model, batch, reduction="sum"))
            count += int((batch["labels"] != -100).sum())
    return total / max(count, 1)


def mlm_loss(model, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the masked-LM head at the masked positions only.

    The head's vocabulary projection is most of a small encoder's cost when it runs at every
    position (30k words x every token); BERT's `cls` and RoBERTa/XLM-R's `lm_head` take the
    masked rows alone. Other architectures run whole, as their `forward` does."""
    labels = batch["labels"]
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if head is None or base is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                                 reduction=reduction)
    hidden = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    masked = labels != -100
    logits = head(hidden[masked])
    return torch.nn.functional.cross_entropy(logits.float(), labels[masked], reduction=reduction)


STATUS_EVERY = 50  # steps between reads of the loss values (one host-GPU wait each)


def adapt_encoder(encoder: str, texts: AdaptTexts, settings: AdaptSettings, out: Path, *,
                  new_tokens: int = 0, log=None, progress: str | None = None) -> AdaptResult:
    """Continue pretraining `encoder` (a hub name or folder) on `texts`; write the adapted
    encoder and its tokenizer to `out` (an ordinary transformers folder) and return the curve."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from concner.tasks.training.evaluate import pick_device

    from concner.models.ner_model import quiet_load_report

    torch.manual_seed(settings.seed)  # the masked-LM head, when the checkpoint has none, is a random draw
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    # an encoder saved without its masked-LM head (sentence-transformers folders, the tiny builder)
    # gets a new one: expected, so the MISSING report is not shown
    with quiet_load_report():
        model = AutoModelForMaskedLM.from_pretrained(encoder, dtype=torch.float32)
    pieces = useful_new_pieces(tokenizer, texts.target, new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = add_pieces(tokenizer, model, pieces, out)
    device = pick_device()
    model.to(device)
    before = heldout_loss(model, tokenizer, texts.heldout, settings)

    examples = _Examples(tokenizer, texts, settings)
    collator = _collator(tokenizer, settings.mask_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer, scheduler, autocast = optimizer_and_schedule(
        model, learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
        warmup_ratio=settings.warmup_ratio, total_steps=settings.steps, device=device)
    drawn: Counter = Counter()
    rows: list[dict] = []
    pending: list[tuple[int, float, torch.Tensor]] = []
    model.train()
    with progress_bar(progress, settings.steps) as advance:
        for step in range(1, settings.steps + 1):
            ids, kinds = examples.draw(settings.batch_size, generator)
            drawn.update(kinds)
            batch = {k: v.to(device, non_blocking=True) for k, v in _masked_batch(collator, ids, generator).items()}
            with autocast:
                loss = mlm_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            # loss values stay on the device until read in groups: one host-GPU wait per group
            pending.append((step, scheduler.get_last_lr()[0], loss.detach().float()))
            advance(1)
            if len(pending) >= STATUS_EVERY or step == settings.steps:
                values = torch.stack([v for _, _, v in pending]).cpu().tolist()
                rows += [{"step": s, "lr": lr, "loss": v} for (s, lr, _), v in zip(pending, values)]
                pending = []
                advance(0, status=f"mlm {rows[-1]['loss']:.3f}")
    if any(not math.isfinite(r["loss"]) for r in rows):
        raise UserError("adapt: the masked-LM loss became NaN or infinite; lower adapt.learning_rate")
    after = heldout_loss(model, tokenizer, texts.heldout, settings)
    if log:
        log.info("adapt: held-out target masked-LM loss %s -> %s over %d steps",
                 f"{before:.3f}" if before is not None else "n/a", f"{after:.3f}" if after is not None else "n/a",
                 settings.steps)
    model.to("cpu").save_pretrained(out)
    tokenizer.save_pretrained(out)
    return AdaptResult(rows, before, after, {k: drawn[k] for k in KINDS}, list(pieces))


def split_heldout(texts: Sequence[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """(training texts, up to `n` held-out texts, at most a tenth of them), chosen by `seed`."""
    n = min(n, len(texts) // 10)
    order = np.random.default_rng(seed).permutation(len(texts))
    held = set(order[:n].tolist())
    return [t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)]
