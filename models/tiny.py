"""Tiny random-weight models built locally, for the demo and the tests.

No weights can be downloaded here, so the pipeline's model-shaped stages (alignment, translation,
NER training) run on tiny models built from the corpus text itself: a cased WordPiece BERT encoder
and a SentencePiece Marian translator. Their outputs are meaningless, their interfaces are real:
each folder loads with the `Auto*.from_pretrained` classes exactly like a hub model would.

Builds are deterministic (same texts and parameters give byte-identical weights and the same
vocabulary) and cached: a folder records the hash of everything that determined it in
`concner_tiny_build.json`, written last, so a complete build for the same hash is reused.

Subword vocabularies are learned with SentencePiece rather than the `tokenizers` trainers because
`tokenizers`' WordPiece/BPE trainers break count ties in hash-map order, so two runs on the same text
can yield different vocabularies (huggingface/tokenizers#1794); SentencePiece is deterministic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
import tokenizers
import torch
import transformers
from tokenizers import pre_tokenizers
from transformers import BertConfig, BertModel, BertTokenizerFast, MarianConfig, MarianMTModel, MarianTokenizer

from concner.tasks.engine.errors import UserError

MARKER = "concner_tiny_build.json"
BUILD_VERSION = 1  # bump when a builder's output changes for the same inputs

# Letters the encoder must never map to [UNK] even when the training texts lack them: the demo
# corpus is small and real Spanish/Portuguese/French/German text brings accents it may not contain.
# The combining marks cover decomposed (NFD) input, which the BERT normalizer does not compose.
_EXTRA_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "áéíóúüñçàèìòùâêîôûäëïöãõœæßÁÉÍÓÚÜÑÇÀÈÌÒÙÂÊÎÔÛÄËÏÖÃÕŒÆ"
    "¿¡«»“”‘’\"'.,;:!?()[]{}-–—/\\%&$€£@#*+=<>_~^`|"
    "\u0300\u0301\u0302\u0303\u0308\u0327"
)
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# --------------------------------------------------------------------------- caching


def _build_hash(kind: str, params: dict, text_groups: Sequence[Sequence[str]]) -> str:
    """Hash of everything that determines a build: builder, parameters, texts and library versions."""
    h = hashlib.sha256()
    header = {
        "kind": kind,
        "version": BUILD_VERSION,
        "params": params,
        "libs": [torch.__version__, transformers.__version__, tokenizers.__version__, spm.__version__],
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    for group in text_groups:
        h.update(b"\x00group")
        for text in group:
            h.update(text.encode("utf-8"))
            h.update(b"\n")
    return h.hexdigest()


def is_complete_build(out_dir: str | Path, build_hash: str | None = None) -> bool:
    """True when out_dir holds a finished tiny build (for build_hash, when given)."""
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if build_hash is not None and info.get("hash") != build_hash:
        return False
    return all((Path(out_dir) / name).is_file() for name in info.get("files", []))


def _publish(out_dir: Path, kind: str, build_hash: str, params: dict, write: Callable[[Path], None]) -> Path:
    """Build into a sibling temp folder and move it into place, so a crash never leaves half a model."""
    if is_complete_build(out_dir, build_hash):
        return out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; a tiny model needs a folder there")
    if out_dir.exists() and not (out_dir / MARKER).exists() and any(out_dir.iterdir()):
        # Never delete a folder we did not make: it may be the user's own model.
        raise UserError(f"{out_dir} exists and is not a tiny-model build; choose an empty or new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write(tmp)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        marker = {"kind": kind, "hash": build_hash, "params": params, "files": files}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)  # a stale build of ours (checked above), or an empty folder
        try:
            os.replace(tmp, out_dir)
        except OSError:
            # Another process published first; its build is as good as ours if the hash matches.
            if not is_complete_build(out_dir, build_hash):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------- subword training


def _train_sentencepiece(texts: Iterable[str], vocab_size: int, model_type: str, normalization: str) -> bytes:
    """Train a SentencePiece model in memory; single-threaded, no sampling, so the result is deterministic."""
    lines = [t for t in (text.strip() for text in texts) if t]
    if not lines:
        raise UserError("cannot build a tiny model: no non-empty training texts")
    # SentencePiece refuses a vocabulary smaller than the character set plus its own specials.
    n_chars = len({c for line in lines for c in line if not c.isspace()})
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=max(vocab_size, n_chars + 3),
        model_type=model_type,
        hard_vocab_limit=False,  # small corpora cannot fill vocab_size; take what they give
        character_coverage=1.0,  # keep every character, accents included
        normalization_rule_name=normalization,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        bos_id=-1,
        minloglevel=2,
    )
    return buf.getvalue()


def _wordpiece_vocab(texts: Iterable[str], vocab_size: int) -> dict[str, int]:
    """A cased WordPiece vocabulary: SentencePiece BPE pieces on BERT pre-tokenized words, recast as WordPiece.

    A piece that starts a word ('▁piece') becomes 'piece', any other becomes '##piece'. Every single
    character of the texts and of _EXTRA_ALPHABET is added in both forms so that no word of those
    characters falls back to [UNK] (WordPiece gives [UNK] for a whole word when one piece is missing).
    """
    pre = pre_tokenizers.BertPreTokenizer()
    words_per_line = [[w for w, _ in pre.pre_tokenize_str(text)] for text in texts]
    chars = sorted({c for words in words_per_line for w in words for c in w} | set(_EXTRA_ALPHABET))
    proto = _train_sentencepiece((" ".join(ws) for ws in words_per_line), vocab_size, "bpe", "identity")
    sp = spm.SentencePieceProcessor(model_proto=proto)

    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        if token and token not in vocab:
            vocab[token] = len(vocab)

    for token in _BERT_SPECIALS:
        add(token)
    for c in chars:
        add(c)
        add("##" + c)
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):
            continue
        if len(vocab) >= vocab_size:
            break  # BPE pieces come in merge order, so the cut drops the rarest merges
        piece = sp.id_to_piece(i)
        if piece.startswith("▁"):
            add(piece[1:])
        else:
            add("##" + piece)
    return vocab


# --------------------------------------------------------------------------- encoder


def build_tiny_encoder(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 2000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Build a tiny cased BERT (WordPiece tokenizer + random BertModel) into out_dir and return it.

    The folder loads with AutoTokenizer, AutoModel, AutoModelForTokenClassification and works as a
    simalign model path (pass simalign a layer <= num_layers). Nothing is lowercased or stripped of
    accents. vocab_size is an upper bound (a small corpus gives fewer pieces), except that the
    specials and every character, word-initial and '##' forms, are always in.
    """
    texts = list(texts)
    out_dir = Path(out_dir)
    params = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "max_position_embeddings": max_position_embeddings,
        "seed": seed,
    }
    build_hash = _build_hash("encoder", params, [texts])

    def write(folder: Path) -> None:
        vocab = _wordpiece_vocab(texts, vocab_size)
        tokenizer = BertTokenizerFast(
            vocab=vocab,
            do_lower_case=False,
            strip_accents=False,
            model_max_length=max_position_embeddings,  # lets truncation=True actually truncate
        )
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=4 * hidden_size,
            max_position_embeddings=max_position_embeddings,
            pad_token_id=vocab["[PAD]"],
        )
        model = _seeded(seed, lambda: BertModel(config))
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)

    return _publish(out_dir, "encoder", build_hash, params, write)


def _seeded(seed: int, make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Create a module under a fixed seed without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make()
    return module.eval()


# --------------------------------------------------------------------------- translator


def _marian_vocab(source_proto: bytes, target_proto: bytes) -> dict[str, int]:
    """Joint Marian vocabulary, laid out like opus-mt's: '</s>' 0, '<unk>' 1, pieces, '<pad>' last."""
    vocab: dict[str, int] = {"</s>": 0, "<unk>": 1}
    for proto in (source_proto, target_proto):
        sp = spm.SentencePieceProcessor(model_proto=proto)
        for i in range(sp.get_piece_size()):
            if sp.is_control(i) or sp.is_unknown(i):
                continue
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    return vocab


def build_tiny_marian(
    src_texts: Iterable[str],
    tgt_texts: Iterable[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 1000,
    d_model: int = 64,
    layers: int = 1,
    heads: int = 2,
    max_position_embeddings: int = 256,
    init_std: float = 1.0,
    seed: int = 0,
) -> Path:
    """Build a tiny Marian translator (source.spm, target.spm, vocab.json, random MarianMTModel).

    The folder loads with AutoTokenizer and AutoModelForSeq2SeqLM. Like opus-mt models, decoding
    starts from the pad token and generating pad is forbidden. vocab_size bounds each side's
    SentencePiece vocabulary; the joint vocabulary is their union.

    init_std is far above Marian's 0.02 on purpose: with tiny weights every input decodes to the same
    string, which would make order and batching bugs invisible; at 1.0 outputs depend on the input.
    """
    src_texts, tgt_texts = list(src_texts), list(tgt_texts)
    out_dir = Path(out_dir)
    params = {
        "vocab_size": vocab_size,
        "d_model": d_model,
        "layers": layers,
        "heads": heads,
        "max_position_embeddings": max_position_embeddings,
        "init_std": init_std,
        "seed": seed,
    }
    build_hash = _build_hash("marian", params, [src_texts, tgt_texts])

    def write(folder: Path) -> None:
        # nmt_nfkc is what opus-mt's SentencePiece models use: it composes accents, keeps case.
        source = _train_sentencepiece(src_texts, vocab_size, "unigram", "nmt_nfkc")
        target = _train_sentencepiece(tgt_texts, vocab_size, "unigram", "nmt_nfkc")
        vocab = _marian_vocab(source, target)
        with tempfile.TemporaryDirectory() as raw:
            raw_dir = Path(raw)
            (raw_dir / "source.spm").write_bytes(source)
            (raw_dir / "target.spm").write_bytes(target)
            (raw_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
            tokenizer = MarianTokenizer(
                source_spm=str(raw_dir / "source.spm"),
                target_spm=str(raw_dir / "target.spm"),
                vocab=str(raw_dir / "vocab.json"),
                model_max_length=max_position_embeddings,
            )
            tokenizer.save_pretrained(folder)
        pad = vocab["<pad>"]
        config = MarianConfig(
            vocab_size=len(vocab),
            d_model=d_model,
            encoder_layers=layers,
            decoder_layers=layers,
            encoder_attention_heads=heads,
            decoder_attention_heads=heads,
            encoder_ffn_dim=4 * d_model,
            decoder_ffn_dim=4 * d_model,
            max_position_embeddings=max_position_embeddings,
            init_std=init_std,
            pad_token_id=pad,
            decoder_start_token_id=pad,
            eos_token_id=vocab["</s>"],
            forced_eos_token_id=vocab["</s>"],
        )
        model = _seeded(seed, lambda: MarianMTModel(config))
        gen = model.generation_config
        gen.decoder_start_token_id = pad
        gen.pad_token_id = pad
        gen.eos_token_id = vocab["</s>"]
        gen.bad_words_ids = [[pad]]
        gen.num_beams = 1
        model.save_pretrained(folder)

    return _publish(out_dir, "marian", build_hash, params, write)


# --------------------------------------------------------------------------- cache


def ensure_tiny_models(
    texts_src: Sequence[str],
    texts_tgt: Sequence[str],
    cache_dir: str | Path,
    *,
    seed: int = 0,
) -> dict[str, Path]:
    """Tiny encoder, forward and backward translators for these texts, built once per distinct input.

    Returns {'encoder', 'translator' (src->tgt), 'back_translator' (tgt->src)} folders under
    cache_dir, each named by a hash of its inputs so different corpora never share a build.
    """
    cache = Path(cache_dir)
    texts_src, texts_tgt = list(texts_src), list(texts_tgt)
    key_enc = _build_hash("encoder-cache", {"seed": seed}, [texts_src, texts_tgt])[:16]
    key_fwd = _build_hash("marian-cache", {"seed": seed}, [texts_src, texts_tgt])[:16]
    key_bwd = _build_hash("marian-cache", {"seed": seed}, [texts_tgt, texts_src])[:16]
    return {
        "encoder": build_tiny_encoder(texts_src + texts_tgt, cache / f"encoder-{key_enc}", seed=seed),
        "translator": build_tiny_marian(texts_src, texts_tgt, cache / f"marian-{key_fwd}", seed=seed),
        "back_translator": build_tiny_marian(texts_tgt, texts_src, cache / f"marian-{key_bwd}", seed=seed),
    }


# --------------------------------------------------------------------------- stand-in teacher


def peaked_teacher_probs(sentences: Sequence, labels: Sequence[str], confidence: float) -> list[np.ndarray]:
    """A stand-in teacher's word distributions for tagged sentences: `confidence` on each word's
    gold tag, the rest spread evenly over the other labels ([n_words, len(labels)] float32 each)."""
    out = []
    for s in sentences:
        probs = np.full((len(s.tokens), len(labels)), (1 - confidence) / (len(labels) - 1), dtype=np.float32)
        probs[np.arange(len(s.tokens)), [labels.index(t) for t in s.tags]] = confidence
        out.append(probs)
    return out
