"""Training steps replayed as CUDA graphs: one launch for a forward and backward pass instead of
hundreds.

On a GPU the student's loop was bound by the host: at batch 16, Python launched the forward and
backward kernels of a 12-layer encoder one by one, several times slower than the GPU ran them
(README, "Speed"). A CUDA graph records those kernels once for given input shapes and replays
them as one launch. It needs fixed shapes, so the loss side provides a step module over
fixed-shape batches (`DistillLoss.graph_step` with `DistillBatches.static_batch`: rows padded to
the batch size, width to a multiple of `WIDTH_MULTIPLE`), and a run meets a handful of shapes,
each captured once.

What is captured is the whole forward and backward pass, gradients included: each graph first
zeroes the parameters' `.grad` buffers, which are allocated once and shared by every graph, then
accumulates into them. (`torch.cuda.make_graphed_callables` graphs forward and backward as one
autograd node instead; then autograd still accumulates every parameter's gradient from Python
at each step, and torch 2.11 warned that those accumulations ran on another stream than the
graph's.) The optimizer step, gradient clipping and the learning-rate schedule stay outside: the
fused AdamW and the foreach clip are a few launches each, and the schedule keeps its plain float
learning rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

WIDTH_MULTIPLE = 32  # max_length 128 gives at most 4 shapes (32, 64, 96, 128 subwords)
WARMUP_PASSES = 2  # uncaptured passes per shape first: cuBLAS and others allocate lazily


def graph_width(width: int, multiple: int, max_width: int) -> int:
    """A batch's width rounded up to `multiple` (never past max_width, never below width), so that
    a run meets a few shapes, each captured once."""
    return max(width, min(-(-width // multiple) * multiple, max_width))


class GraphedSteps:
    """Per input shape, one CUDA graph of the step module's forward and backward pass.

    `graphs(batch)` copies the batch into the graph's own input tensors, replays it, and returns
    the loss terms (names from the module's `names`); the gradients are then in the parameters'
    `.grad`, replacing what was there, as after `zero_grad()` and `loss.backward()`. The terms
    are the graph's output tensors, overwritten by the next replay: copy what you keep."""

    def __init__(self, make_step: Callable[[], torch.nn.Module], log: logging.Logger | None = None):
        self.make_step = make_step
        self.log = log
        self.module: torch.nn.Module | None = None
        self.params: list[torch.nn.Parameter] = []
        self.grads: list[torch.Tensor] = []
        self.pool = torch.cuda.graph_pool_handle()  # one pool: the graphs never run at the same time
        self.steps: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        shape = tuple(tuple(t.shape) for t in batch)
        if shape not in self.steps:
            self.steps[shape] = self._capture(batch)
        graph, inputs, outputs = self.steps[shape]
        for static, new in zip(inputs, batch):
            static.copy_(new, non_blocking=True)
        graph.replay()
        return dict(zip(self.module.names, outputs))

    def _capture(self, batch: tuple[torch.Tensor, ...]):
        if self.module is None:
            self.module = self.make_step()
            self.params = [p for p in self.module.parameters() if p.requires_grad]
            for p in self.params:
                p.grad = torch.zeros_like(p)
            self.grads = [p.grad for p in self.params]
        inputs = tuple(t.clone() for t in batch)
        # autocast's weight cache would keep casts made while capturing; without it every replay
        # casts the weights the optimizer has just changed
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)  # noqa: E731
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_PASSES):
                with autocast():
                    loss = self.module(*inputs)[0]
                loss.backward()
            del loss  # its autograd graph would tie the parameters' gradient nodes to this stream
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a CUDA call from another thread (a progress bar, a Prefect worker) while
        # capturing is that thread's business, not an error of this capture
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            torch._foreach_zero_(self.grads)
            with autocast():
                outputs = self.module(*inputs)
            outputs[0].backward()
        if any(p.grad is not g for p, g in zip(self.params, self.grads)):
            raise RuntimeError("a backward pass replaced the gradient buffers instead of adding to them")
        if self.log:
            self.log.info("captured a CUDA graph for batches of shape %s", "x".join(map(str, batch[0].shape)))
        return graph, inputs, tuple(o.detach() for o in outputs)
