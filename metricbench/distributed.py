"""Training on several processes (and machines) with torch.distributed, launched by `torchrun`.

Every rank runs the same program on its own contiguous share of each global batch. What is exact
across ranks, and how:

- Parameters: one `DistributedDataParallel` over the model and the loss averages their gradients.
- Losses that mine inside a batch (triplets, PML pair losses) see the global batch: `gather_batch`
  gathers embeddings with gradients flowing back to the rank that owns them.
- Per-sample means (cross-entropy, the center term) stay local; the trainer weights each rank's loss
  by its share of the global batch, so the averaged gradient is the global-batch gradient.
- Center updates and BatchNorm statistics are computed from every rank's rows.

Without torchrun (no `WORLD_SIZE` in the environment) nothing here starts a process group, and every
helper is the identity: single-process code runs exactly as it did.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from .parent_death import exit_with_parent

__all__ = [
    "DistributedContext",
    "all_gather_rows",
    "all_reduce_with_grad",
    "current_context",
    "gather_batch",
    "gather_with_grad",
    "is_distributed",
    "launched_by_torchrun",
    "mean_across_ranks",
    "process_group",
    "run_on_main",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the ranks of a run.

    Attributes:
        rank: 0 … world_size − 1 (0 in a single process).
        world_size: number of processes (1 in a single process).
        local_rank: rank among the processes of this machine (it picks the GPU).
        distributed: a process group is initialized (true under torchrun, even with one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and the run directory."""
        return self.rank == 0


def is_distributed() -> bool:
    """True inside an initialized process group (losses then mine and update over all ranks)."""
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True when torchrun (or any launcher that sets the same variables) started this process."""
    return all(name in os.environ for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def current_context() -> DistributedContext:
    """The context of the initialized process group, or the single-process one."""
    if not is_distributed():
        return DistributedContext()
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=int(os.environ.get("LOCAL_RANK", 0)), distributed=True)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[DistributedContext, torch.device]]:
    """Join the torchrun job for the duration of a `with` block; yield the context and this rank's device.

    The backend follows the device: NCCL for CUDA (each process takes GPU `LOCAL_RANK`), gloo for
    the CPU. The group is destroyed on leaving the block, also on errors, so a failing rank never
    leaves its peers' sockets half open. Outside torchrun this yields the single-process context and
    `device` unchanged; a group that the caller already initialized is used and left to the caller.

    Args:
        device: the training device (`cpu`, or `cuda` for whichever GPU this rank owns).
    """
    if is_distributed():
        yield current_context(), _rank_device(device)
        return
    if not launched_by_torchrun():
        yield DistributedContext(), device
        return
    exit_with_parent(os.getppid())  # a rank must not outlive its torchrun agent (e.g. one killed by `bench`'s runner)
    device = _rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield current_context(), device
    finally:
        # A finished Trainer sits in reference cycles (torch's optimizers refer to themselves), so only the
        # cyclic garbage collector frees it, and with it DistributedDataParallel's reducer, which holds the
        # group. A reducer that outlived the group until interpreter exit made gloo processes abort there in
        # about 1 run of 8 ("terminate called without an active exception"); collected here, 0 of 60.
        gc.collect()
        dist.destroy_process_group()


def _rank_device(device: torch.device) -> torch.device:
    if device.type != "cuda":
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {local_rank} needs GPU {local_rank}, but this machine has "
                         f"{torch.cuda.device_count()}; start at most that many processes per machine")
    return torch.device("cuda", local_rank)


def _row_counts(x: Tensor) -> list[int]:
    """Rows of `x` on every rank, in rank order (the random sampler's last batch splits unevenly)."""
    local = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, local)
    return [int(c) for c in counts]


def _all_gather_padded(x: Tensor, counts: list[int]) -> Tensor:
    # all_gather needs one shape on every rank: pad to the longest share, gather, cut the padding off.
    longest = max(counts)
    padded = x if x.shape[0] == longest else torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])])
    chunks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(chunks, padded.contiguous())
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, counts)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather rows; the backward pass sums the gradient over ranks and returns this rank's rows.

    Why the sum gives exactly the single-process gradient: every rank r holds a copy G of the gathered
    global batch and backpropagates its own loss ℓ_r(G). The rows x_r of rank r enter every copy, so
    ∂(Σ_r' ℓ_r')/∂x_r = Σ_r' (∂ℓ_r'/∂G)[rows of r] — an all-reduce (sum) of the incoming gradient,
    sliced. The trainer arranges Σ_r ℓ_r = W·L (W ranks, L the global-batch loss; e.g. every rank
    computes L itself), so each rank's parameters receive W·(their rows' part of ∂L/∂θ), and
    DistributedDataParallel's average over W ranks of these parts is ∂L/∂θ.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, counts: list[int]) -> Tensor:  # type: ignore[override]
        rank = dist.get_rank()
        ctx.start, ctx.stop = sum(counts[:rank]), sum(counts[: rank + 1])
        return _all_gather_padded(x, counts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def gather_with_grad(x: Tensor) -> Tensor:
    """(n_r, ...) rows of every rank → (Σ n_r, ...) in rank order, differentiable (see `_GatherWithGrad`).

    Every rank must call it. Outside a process group it returns `x` itself.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, _row_counts(x))


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks; the backward pass sums the incoming gradient over ranks (the adjoint of a sum
    that every rank holds a copy of, by the same argument as `_GatherWithGrad`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        total = x.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(x: Tensor) -> Tensor:
    """Σ over ranks of `x`, differentiable (for statistics of the global batch, e.g. BatchNorm's).

    `torch.distributed.nn.functional.all_reduce` does the same but is deprecated in torch 2.13.
    Every rank must call it. Outside a process group it returns `x` itself.
    """
    if not is_distributed():
        return x
    return _AllReduceWithGrad.apply(x)


def all_gather_rows(x: Tensor) -> Tensor:
    """(n_r, ...) rows of every rank → (Σ n_r, ...) in rank order, without gradients (labels, evaluation).

    Every rank must call it. Outside a process group it returns `x` itself.
    """
    if not is_distributed():
        return x
    return _all_gather_padded(x.detach(), _row_counts(x))


def gather_batch(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The global batch from every rank's share: (B, D) embeddings (gradients flow back to their
    owners) and (B,) labels, in rank order, which is the order of the single-process batch.

    Every rank must call it. Outside a process group it returns its arguments.
    """
    if not is_distributed():
        return embeddings, labels
    counts = _row_counts(embeddings)
    return _GatherWithGrad.apply(embeddings, counts), _all_gather_padded(labels, counts)


def mean_across_ranks(values: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Average 0-dim tensors over ranks in one all-reduce (same keys on every rank); identity in one process."""
    if not is_distributed() or not values:
        return dict(values)
    # Some parts live on the CPU (counts made on the host); NCCL needs them all on the GPU.
    device = next((v.device for v in values.values() if v.device.type != "cpu"), torch.device("cpu"))
    stacked = torch.stack([v.detach().float().to(device) for v in values.values()])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked /= dist.get_world_size()
    return dict(zip(values, stacked.unbind()))


def run_on_main(fn: Callable[[], T]) -> T:
    """Call `fn` on rank 0 only and hand its result to every rank; if it raises, every rank raises it.

    For steps that touch the run directory (which exists on rank 0's machine): the other ranks wait
    for them and fail with the same error instead of hanging in the next collective.
    """
    if not is_distributed():
        return fn()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = (True, fn())
        except Exception as err:  # handed to every rank, then raised on each
            box[0] = (False, err)
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value
