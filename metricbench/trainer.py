"""The common embedding trainer: any registered loss plugs in through `EmbeddingLoss`.

One step reads top to bottom: forward → loss → backward → clip → step → schedule → loss hook.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from metricbench.losses import EmbeddingLoss

from .config import OptimConfig, TrainConfig
from .sampling import epoch_batches

__all__ = ["Trainer", "build_optimizer", "embed", "resolve_device"]

_NO_POSITIVES_PATIENCE = 3


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def build_optimizer(model: nn.Module, loss_fn: EmbeddingLoss, config: OptimConfig) -> torch.optim.Optimizer:
    """One optimizer: the model's group plus the loss's own groups (heads, centers).

    A loss group keeps its own `lr` when the loss sets one; otherwise it gets `optim.loss_lr`, else `optim.lr`.
    """
    groups: list[dict[str, Any]] = [{"name": "model", "params": [p for p in model.parameters() if p.requires_grad]}]
    for group in loss_fn.param_groups():
        groups.append({"lr": config.loss_lr or config.lr, **group})
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
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


class Trainer:
    """Owns the model, the loss, one optimizer and its schedule.

    Args:
        model: inputs → (B, D) embeddings.
        loss_fn: any `EmbeddingLoss`.
        optim: optimizer/schedule options.
        train: loop options.
        labels: (N,) training labels (they fix the batches of every epoch).
        seed: with the epoch number, fixes the batch order.
        device: where to train.
    """

    def __init__(self, model: nn.Module, loss_fn: EmbeddingLoss, *, optim: OptimConfig, train: TrainConfig,
                 labels: np.ndarray, seed: int, device: torch.device) -> None:
        self.model = model.to(device)
        self.loss_fn = loss_fn.to(device)
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
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_factor(optim, train.epochs * self.steps_per_epoch, self.steps_per_epoch)
        )
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self._logs_without_positives = 0  # consecutive logged batches with no positive pair

    def batches(self, epoch: int) -> list[np.ndarray]:
        cfg = self.train_config
        return epoch_batches(self.labels, batch_size=cfg.batch_size, sampler=self.sampler, seed=self.seed,
                             epoch=epoch, m_per_class=cfg.m_per_class)

    def train_epoch(self, x: Tensor, y: Tensor, log: Callable[[int, dict[str, float]], None] | None = None,
                    progress: bool = True) -> dict[str, float]:
        """One pass over the training rows `x`, `y` (CPU tensors); returns the epoch's mean loss and parts."""
        cfg = self.train_config
        self.model.train()
        sums: dict[str, Tensor] = {}
        batches = self.batches(self.epoch)
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False, disable=not progress, unit="batch")
        for idx in bar:
            xb = x[idx].to(self.device, non_blocking=True)
            yb = y[idx].to(self.device, non_blocking=True)
            embeddings = self.model(xb)
            out = self.loss_fn(embeddings, yb)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if self.optim_config.clip_grad_norm:
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.optim_config.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            # Non-gradient state (moving centers) follows the step, from this batch's embeddings.
            self.loss_fn.update_state(embeddings.detach(), yb)
            self.step += 1

            scalars = {"loss": out.loss.detach(), **out.parts}
            for name, value in scalars.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            if self.step % cfg.log_every == 0:  # .item() syncs the device: only at the log interval
                values = {f"train/{k}": float(v) for k, v in scalars.items()}
                self._check_finite(values["train/loss"])
                values["train/lr"] = self.scheduler.get_last_lr()[0]
                self._watch_positive_pairs(values.get("train/positive_pairs"))
                bar.set_postfix(loss=f"{values['train/loss']:.4f}")
                if log is not None:
                    log(self.step, values)
        self.epoch += 1
        means = {k: float(v) / len(batches) for k, v in sums.items()}
        self._check_finite(means["loss"])
        return means

    def _watch_positive_pairs(self, positive_pairs: float | None) -> None:
        """Warn once when pair-based losses keep getting batches without two samples of one class."""
        if positive_pairs is None:
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
            "epoch": self.epoch,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
