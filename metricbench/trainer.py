"""The common embedding trainer: any registered loss plugs in through `EmbeddingLoss`.

One step reads top to bottom: forward → loss → backward → clip → step → schedule → loss hook.
Under torchrun the same loop runs on every rank, each on its share of the global batch (see
`metricbench.distributed` for what makes the result equal to one process's).
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from metricbench.losses import EmbeddingLoss

from .config import OptimConfig, TrainConfig
from .distributed import current_context, mean_across_ranks
from .global_batchnorm import convert_batchnorm
from .sampling import epoch_batches, rank_share, rows_per_rank

__all__ = ["BatchSource", "TensorRows", "Trainer", "build_optimizer", "embed", "resolve_device"]

_DDP_OPTIONS = inspect.signature(DistributedDataParallel).parameters

_NO_POSITIVES_PATIENCE = 3


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def build_optimizer(model: nn.Module, loss_fn: EmbeddingLoss, config: OptimConfig) -> torch.optim.Optimizer:
    """One optimizer: the model's group (a timm trunk in its own group when `optim.backbone_lr` is set) plus
    the loss's own groups (heads, centers).

    A loss group keeps its own `lr` when the loss sets one; otherwise it gets `optim.loss_lr`, else `optim.lr`.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    in_trunk = (lambda name: name.startswith("backbone.trunk.")) if config.backbone_lr else (lambda name: False)
    groups: list[dict[str, Any]] = [{"name": "model", "params": [p for n, p in trainable if not in_trunk(n)]}]
    if config.backbone_lr:
        groups.append({"name": "backbone", "lr": config.backbone_lr, "params": [p for n, p in trainable if in_trunk(n)]})
    for group in loss_fn.param_groups():
        groups.append({"lr": config.loss_lr or config.lr, **group})
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    optimizer_cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return optimizer_cls(groups, lr=config.lr, weight_decay=config.weight_decay)


def _lr_factor(config: OptimConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = round(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def embed(model: nn.Module, x: Tensor, *, device: torch.device, batch_size: int = 1024) -> Tensor:
    """(N, ...) inputs → (N, D) float32 embeddings on the CPU, in eval mode."""
    was_training = model.training
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out)


class BatchSource(Protocol):
    """Where the training rows come from: in memory (`TensorRows`) or decoded from disk
    (`metricbench.data.image_loading.StreamedImages`)."""

    def epoch(self, batches: list[np.ndarray], epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (inputs, labels) for each batch of training-row indices, in order."""
        ...


class TensorRows:
    """Training rows held in memory as CPU tensors: a batch is an index into them."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def epoch(self, batches: list[np.ndarray], epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        return ((self.x[idx], self.y[idx]) for idx in batches)


class _ModelAndLoss(nn.Module):
    """The model and the loss as one module, so that one DistributedDataParallel averages the gradients
    of both (the model's weights and the loss's heads or centers)."""

    def __init__(self, model: nn.Module, loss_fn: EmbeddingLoss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Any]:
        embeddings = self.model(x)
        return embeddings, self.loss_fn(embeddings, labels)


def _data_parallel(network: nn.Module, device: torch.device) -> nn.Module:
    network = convert_batchnorm(network, device)
    device_ids = [device.index] if device.type == "cuda" else None
    # Buffers are synced from rank 0 once, at wrapping, but not before every forward: global-batch
    # BatchNorm and the center updates keep them identical on every rank from every rank's rows.
    # torch 2.13 renamed the switch (`broadcast_buffers` warns there); older versions know only the old name.
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_OPTIONS
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(network, device_ids=device_ids, **no_buffer_sync)


class Trainer:
    """Owns the model, the loss, one optimizer and its schedule.

    Inside a process group (torchrun) every rank trains on its contiguous share of each global batch:
    BatchNorm layers become global-batch BatchNorm, model and loss are wrapped in one
    DistributedDataParallel, and logged values are those of the global batch. `train.batch_size` is
    the global batch size and must be a multiple of the number of processes.

    Args:
        model: inputs → (B, D) embeddings.
        loss_fn: any `EmbeddingLoss`.
        optim: optimizer/schedule options.
        train: loop options.
        labels: (N,) training labels (they fix the batches of every epoch).
        seed: with the epoch number, fixes the batch order.
        device: where to train (under torchrun, this rank's device).
    """

    def __init__(self, model: nn.Module, loss_fn: EmbeddingLoss, *, optim: OptimConfig, train: TrainConfig,
                 labels: np.ndarray, seed: int, device: torch.device) -> None:
        self.ranks = current_context()
        rows_per_rank(train.batch_size, self.ranks.world_size)  # refuses unequal shares before any work
        self.model = model.to(device)
        if device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            self.model.to(memory_format=torch.channels_last)  # tensor-core friendly layout for convnets
        self.loss_fn = loss_fn.to(device)
        self.network = _ModelAndLoss(self.model, self.loss_fn)
        if self.ranks.distributed:
            self.network = _data_parallel(self.network, device)
        self.train_config = train
        self.optim_config = optim
        self.labels = labels
        self.seed = seed
        self.device = device
        self.sampler = train.sampler
        if self.sampler == "auto":
            self.sampler = "m-per-class" if loss_fn.needs_positive_pairs else "random"
        self.steps_per_epoch = len(self.batches(0))
        self.optimizer = build_optimizer(model, loss_fn, optim)
        # fp16 gradients underflow without scaling; the scaler skips steps whose gradients overflowed.
        self.scaler = torch.amp.GradScaler(device.type, enabled=train.precision == "fp16")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_factor(optim, train.epochs * self.steps_per_epoch, self.steps_per_epoch)
        )
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self._logs_without_positives = 0  # consecutive logged batches with no positive pair

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of one epoch (row indices), the same on every rank."""
        cfg = self.train_config
        batches = epoch_batches(self.labels, batch_size=cfg.batch_size, sampler=self.sampler, seed=self.seed,
                                epoch=epoch, m_per_class=cfg.m_per_class)
        # A last random batch with fewer rows than processes would leave a rank without rows; it is dropped
        # (with 2 processes it never happens: the sampler already drops one-row batches).
        return [b for b in batches if len(b) >= self.ranks.world_size]

    def train_epoch(self, rows: BatchSource, log: Callable[[int, dict[str, float]], None] | None = None,
                    progress: bool = True) -> dict[str, float]:
        """One pass over the training rows (`TensorRows(x, y)` for CPU tensors); returns the epoch's mean
        loss and parts (of the global batches, on every rank)."""
        cfg = self.train_config
        ranks = self.ranks
        self.network.train()
        sums: dict[str, Tensor] = {}
        batches = self.batches(self.epoch)
        shares = [rank_share(b, rank=ranks.rank, world_size=ranks.world_size) for b in batches]  # one process: b
        bar = tqdm(zip(batches, rows.epoch(shares, self.epoch)), total=len(batches),
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and ranks.is_main),
                   unit="batch")
        for batch, (xb, yb) in bar:
            xb = xb.to(self.device, non_blocking=True)
            if xb.ndim == 4 and self.device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = yb.to(self.device, non_blocking=True)
            embeddings, out = self.network(xb, yb)
            # Weight this rank's loss by W·b_r/B (1 in one process, and whenever shares are equal): a local
            # per-sample mean then contributes b_r/B of the global mean after DDP's average over W ranks, and
            # a loss every rank computes on the gathered batch still sums to W·L over ranks (Σ_r b_r = B).
            share = ranks.world_size * len(yb) / len(batch)
            loss = out.loss if share == 1 else out.loss * share
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.optim_config.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.optim_config.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            # Non-gradient state (moving centers) follows the step, from this batch's embeddings (a loss
            # gathers every rank's rows itself when it needs the global batch).
            self.loss_fn.update_state(embeddings.detach(), yb)
            self.step += 1

            # Weighted by the share, the average over ranks is the global batch's value (see `share`).
            scalars = {name: value.detach().float() for name, value in {"loss": out.loss, **out.parts}.items()}
            if share != 1:
                scalars = {name: share * value for name, value in scalars.items()}
            for name, value in scalars.items():
                sums[name] = sums.get(name, 0.0) + value
            if self.step % cfg.log_every == 0:  # .item() syncs the device: only at the log interval
                values = {f"train/{k}": float(v) for k, v in mean_across_ranks(scalars).items()}
                self._check_finite(values["train/loss"])
                values["train/lr"] = self.scheduler.get_last_lr()[0]
                self._watch_positive_pairs(values.get("train/positive_pairs"))
                bar.set_postfix(loss=f"{values['train/loss']:.4f}")
                if log is not None:
                    log(self.step, values)
        self.epoch += 1
        means = {k: float(v) / len(batches) for k, v in mean_across_ranks(sums).items()}
        self._check_finite(means["loss"])
        return means

    def _watch_positive_pairs(self, positive_pairs: float | None) -> None:
        """Warn once when pair-based losses keep getting batches without two samples of one class."""
        if positive_pairs is None or not self.ranks.is_main:
            return
        self._logs_without_positives = self._logs_without_positives + 1 if positive_pairs == 0 else 0
        if self._logs_without_positives == _NO_POSITIVES_PATIENCE:
            warnings.warn(
                f"the last {_NO_POSITIVES_PATIENCE} logged batches had no positive pair (two samples of one class), "
                "so the loss was 0 and nothing was learned from them; sample m per class with "
                "--set train.sampler='m-per-class' (and optionally train.m_per_class=4)",
                RuntimeWarning,
                stacklevel=2,
            )

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss} at epoch {self.epoch + 1}, step {self.step}; "
                "lower optim.lr or set optim.clip_grad_norm (the last checkpoint is kept)"
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:  # checkpoints from before mixed precision have none
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
