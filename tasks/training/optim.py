"""The update rule of every training loop here (the teacher's, the student's, adapt's)."""

from __future__ import annotations

import contextlib

import torch

# biases and normalisation weights are not decayed (BERT's recipe)
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")


def optimizer_and_schedule(model: torch.nn.Module, *, learning_rate: float, weight_decay: float,
                           warmup_ratio: float, total_steps: int, device: torch.device):
    """(AdamW, linear warm-up then decay over `total_steps`, the autocast context of a step):
    bf16 autocast on CUDA, none on a CPU."""
    from transformers import get_linear_schedule_with_warmup

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if not any(k in n for k in NO_DECAY)], "weight_decay": weight_decay},
              {"params": [p for n, p in params if any(k in n for k in NO_DECAY)], "weight_decay": 0.0}]
    # fused: one kernel for the whole update instead of several per parameter group (CUDA only;
    # on CPU the default implementation is kept, and with it the bytes of earlier runs)
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, fused=device.type == "cuda" or None)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)
    autocast: contextlib.AbstractContextManager = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False))
    return optimizer, scheduler, autocast
