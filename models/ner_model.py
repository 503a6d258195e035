"""The ConCNER NER model: a standard HF token classifier plus a sentence head for TCL.

    input_ids ─> encoder ─> h [B,T,H] (last hidden layer) ─┬─> dropout ─> linear ─> logits [B,T,C]
                                                           ├─> Linear-ReLU-Linear ─> token emb [B,T,P] (for LCL)
                                                           └─> masked mean-pool ─> Linear-ReLU-Linear ─> sentence emb [B,P] (for TCL)

Both contrastive losses act on projections of h, not on h itself, as in SimCLR / SupCon: the
encoder still receives their gradient, but the space the losses reshape is the heads' output,
not the features the classifier reads. On real en->es data, LCL applied to h directly collapsed
the transfer F1 (README, "Earlier ablations"; `train.lcl_features: hidden` keeps that variant).

The token classifier is an unmodified AutoModelForTokenClassification, so the folder `save`
writes is an ordinary HF model folder that transformers.pipeline("token-classification")
loads; the two contrastive heads are saved beside it (sentence_head.pt + sentence_head.json) and
are only needed to continue contrastive training.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import NamedTuple

import torch
from huggingface_hub.errors import HFValidationError
from torch import Tensor, nn
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from concner.tasks.engine.errors import UserError

DEFAULT_ENCODER = "bert-base-multilingual-cased"
HEAD_WEIGHTS = "sentence_head.pt"
HEAD_CONFIG = "sentence_head.json"


class NerOutput(NamedTuple):
    logits: Tensor  # [B, T, C]
    token_features: Tensor  # [B, T, H], last hidden layer (before the classifier's dropout)
    token_emb: Tensor  # [B, T, P], token head's projection of token_features (for LCL)
    sentence_emb: Tensor  # [B, P], projected mean-pool of the sentence's own subwords (for TCL)


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """mean_t hidden[b,t] over positions with mask[b,t] = 1:  sum_t m_bt h_bt / max(1, sum_t m_bt).
    A row with no position gives the zero vector."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def _load_pretrained(name_or_path: str | Path, what: str, load):
    """Run a from_pretrained call, turning 'not local and not downloadable' into a UserError."""
    try:
        return load(str(name_or_path))
    # OSError: what transformers raises for a missing folder or an unreachable hub;
    # HFValidationError: a path-like name that is neither a folder nor a valid hub id
    except (OSError, HFValidationError) as e:
        local = Path(name_or_path).exists()
        hint = (
            "the folder exists but does not hold a usable model"
            if local
            else "it is not a local folder and could not be downloaded (offline, or no such model on the hub)"
        )
        raise UserError(f"cannot load {what} {str(name_or_path)!r}: {hint}. ({e})") from e


class _NoTensorParallelReport(logging.Filter):
    """transformers 5 lists every layer as "not sharded" on each load when no tensor-parallel plan
    applies, which is always the case here: that list tells a concner user nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "were not sharded" not in record.getMessage() and "TP rules were not applied" not in record.getMessage()


logging.getLogger("transformers.distributed.tensor_parallel").addFilter(_NoTensorParallelReport())


@contextlib.contextmanager
def quiet_load_report():
    report_logger = logging.getLogger("transformers.modeling_utils")  # where from_pretrained reports
    level = report_logger.level
    report_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        report_logger.setLevel(level)


class ConcNerModel(nn.Module):
    """HF token classifier + two projection heads, used only by the contrastive losses: a sentence
    head (TCL) and a token head (LCL)."""

    def __init__(self, token_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, proj_dim: int = 128):
        super().__init__()
        self.token_model = token_model
        self.tokenizer = tokenizer  # not a module: kept so `save` writes a complete pipeline folder
        hidden = token_model.config.hidden_size
        self.proj_dim = proj_dim
        self.sentence_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))
        self.token_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))
        # [CLS]/[SEP]/<s>/</s>/padding are left out of the sentence mean-pool: they sit in every
        # sentence, so pooling them would add a component shared by all sentences and blunt
        # the in-batch contrast of TCL. [UNK] is content and stays in.
        pool_excluded = {
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
            tokenizer.pad_token_id,
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
        } - {None}
        self.register_buffer("pool_excluded_ids", torch.tensor(sorted(pool_excluded), dtype=torch.long), persistent=False)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_encoder(
        cls,
        name_or_path: str | Path = DEFAULT_ENCODER,
        labels: list[str] | None = None,
        *,
        proj_dim: int = 128,
        dropout: float | None = None,
    ) -> "ConcNerModel":
        """A fresh model: pretrained encoder (hub name or local folder), new classifier for `labels`
        (index = label id; concner puts "O" first), new sentence head. `dropout`, when given,
        sets the encoder's hidden dropout and the classifier dropout."""
        if not labels:
            raise ValueError("labels must name at least one label")
        extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "classifier_dropout": dropout}
        # A fresh classifier on a pretrained encoder always reports the new classifier weights
        # as MISSING (and a pooler as UNEXPECTED): expected, so that report is not shown.
        with quiet_load_report():
            token_model = _load_pretrained(
                name_or_path,
                "encoder",
                lambda p: AutoModelForTokenClassification.from_pretrained(
                    p,
                    num_labels=len(labels),
                    id2label=dict(enumerate(labels)),
                    label2id={label: i for i, label in enumerate(labels)},
                    dtype=torch.float32,  # v5 loads the checkpoint's dtype by default; training wants fp32
                    **extra,
                ),
            )
        tokenizer = _load_pretrained(name_or_path, "tokenizer", AutoTokenizer.from_pretrained)
        return cls(token_model, tokenizer, proj_dim)

    @classmethod
    def load(cls, model_dir: str | Path) -> "ConcNerModel":
        """Load a folder written by `save` (classifier, tokenizer and sentence head)."""
        model_dir = Path(model_dir)
        config_file = model_dir / HEAD_CONFIG
        if not config_file.is_file():
            raise UserError(f"{model_dir} is not a saved ConcNerModel folder: {HEAD_CONFIG} is missing")
        head_config = json.loads(config_file.read_text())
        token_model = _load_pretrained(
            model_dir, "model", lambda p: AutoModelForTokenClassification.from_pretrained(p, dtype=torch.float32)
        )
        tokenizer = _load_pretrained(model_dir, "tokenizer", AutoTokenizer.from_pretrained)
        model = cls(token_model, tokenizer, head_config["proj_dim"])
        state = torch.load(model_dir / HEAD_WEIGHTS, map_location="cpu", weights_only=True)
        model.sentence_head.load_state_dict(state["sentence_head"])
        model.token_head.load_state_dict(state["token_head"])
        return model

    def save(self, out_dir: str | Path) -> Path:
        """Write an HF model folder (loadable by transformers.pipeline) plus the contrastive heads."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.token_model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        heads = {"sentence_head": self.sentence_head.state_dict(), "token_head": self.token_head.state_dict()}
        torch.save(heads, out_dir / HEAD_WEIGHTS)
        head_config = {"hidden_size": self.token_model.config.hidden_size, "proj_dim": self.proj_dim}
        (out_dir / HEAD_CONFIG).write_text(json.dumps(head_config, indent=2) + "\n")
        return out_dir

    @property
    def labels(self) -> list[str]:
        """Label names in id order."""
        id2label = self.token_model.config.id2label
        return [id2label[i] for i in range(len(id2label))]

    # -- forward -------------------------------------------------------------------------------

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> NerOutput:
        out = self.token_model(input_ids=input_ids, attention_mask=self._encoder_mask(attention_mask),
                               output_hidden_states=True)
        hidden = out.hidden_states[-1]  # [B, T, H]: what the classifier sees (before its dropout)
        pool_mask = attention_mask.bool() & ~torch.isin(input_ids, self.pool_excluded_ids)
        sentence_emb = self.sentence_head(masked_mean(hidden, pool_mask))
        return NerOutput(logits=out.logits, token_features=hidden, token_emb=self.token_head(hidden),
                         sentence_emb=sentence_emb)

    def _encoder_mask(self, attention_mask: Tensor) -> Tensor:
        """On a GPU with SDPA attention, the [B, 1, T, T] boolean mask that transformers would build
        from the [B, T] one (True: attend), handed over ready-made: building it, transformers first
        asks whether the batch has any padding (`mask.all()`), which makes the host wait for the
        GPU once per forward pass and so keeps it from queueing the next step's work."""
        if (attention_mask.device.type != "cuda" or torch.compiler.is_compiling()
                or getattr(self.token_model.config, "_attn_implementation", None) != "sdpa"):
            return attention_mask
        batch, width = attention_mask.shape
        return attention_mask.bool()[:, None, None, :].expand(batch, 1, width, width)
