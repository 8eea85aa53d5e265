"""A few training steps of each loss, on one process or on every rank of a torchrun job.

`test_distributed.py` runs `run_case` in its own process and launches this file with torchrun on 2 CPU
processes (`python -m torch.distributed.run --nproc_per_node=2 distributed_cases.py OUT_DIR [cpu|cuda]`);
each rank saves what it saw to `OUT_DIR/rank<r>.pt`, and the test compares the two.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from metricbench.config import OptimConfig, TrainConfig
from metricbench.data import load_dataset
from metricbench.distributed import gather_batch, process_group, run_on_main
from metricbench.global_batchnorm import convert_batchnorm
from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model
from metricbench.trainer import TensorRows, Trainer

# 99 rows in global batches of 32: the random sampler's last batch has 3 rows, which 2 ranks share
# unevenly (2 + 1); m-per-class (8 classes × 4) makes 3 full batches.
ROWS, BATCH = 99, 32
CASES: dict[str, dict[str, Any]] = {
    "softmax": {"loss": "softmax", "sampler": "random"},
    **{f"center-{rule}": {"loss": "center", "options": {"update": rule, "center_weight": 0.5}, "sampler": "random"}
       for rule in ("paper", "ema", "cumulative", "sgd")},
    "triplet-semihard": {"loss": "triplet-semihard", "sampler": "m-per-class"},
    "triplet-hard": {"loss": "triplet-hard", "sampler": "m-per-class"},
    "pml-contrastive": {"loss": "pml:ContrastiveLoss", "sampler": "m-per-class"},
    # A gathered loss plus a local one, on the uneven last batch: the share weighting must hold for both.
    "triplet-semihard+softmax": {"loss": "weighted-sum", "sampler": "random", "options": {
        "terms": [{"name": "triplet-semihard"}, {"name": "softmax", "weight": 0.5}]}},
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits")
    rows = np.random.default_rng(0).choice(len(data), ROWS, replace=False)
    return torch.from_numpy(data.x[rows]), torch.from_numpy(data.y[rows])


def run_case(name: str, device: torch.device = torch.device("cpu"), batch_size: int = BATCH) -> dict[str, Any]:
    """One epoch (3–4 SGD steps) of case `name` on the digits MLP, in this process or on this rank.

    SGD, not Adam: Adam divides by the gradient's magnitude, which turns float noise in gradients
    that are 0 in exact arithmetic (biases before BatchNorm) into visible parameter changes.
    """
    case = CASES[name]
    x, y = _data()
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", embedding_dim=8, hidden=(32, 32)), input_shape=tuple(x.shape[1:]),
                        mean=x.mean(0), std=x.std(0))
    loss_fn = build_loss(case["loss"], num_classes=10, embedding_dim=8, **case.get("options", {}))
    trainer = Trainer(model, loss_fn, optim=OptimConfig(name="sgd", lr=0.05, momentum=0.9, schedule="constant"),
                      train=TrainConfig(epochs=1, batch_size=batch_size, sampler=case["sampler"], m_per_class=4,
                                        log_every=1),
                      labels=y.numpy(), seed=0, device=device)
    logged: list[dict[str, float]] = []
    means = trainer.train_epoch(TensorRows(x, y), log=lambda step, values: logged.append(values), progress=False)
    named = [*(("model." + n, p) for n, p in model.named_parameters()),
             *(("loss." + n, p) for n, p in loss_fn.named_parameters())]
    return {
        "logged": logged,
        "means": means,
        "batch_sizes": [len(b) for b in trainer.batches(0)],
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "loss": {k: v.detach().cpu().clone() for k, v in loss_fn.state_dict().items()},
        "grads": {n: p.grad.cpu().clone() for n, p in named if p.grad is not None},
    }


def gather_and_batchnorm_checks() -> dict[str, Any]:
    """On uneven shares (4 + 3 rows of one global batch of 7): `gather_batch`'s gradient and
    `GlobalBatchNorm`'s forward, backward and running statistics. Returns this rank's values; the test
    rebuilds them from one process."""
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(7, 5, generator=g), torch.arange(7) % 3
    weights = torch.randn(7, 5, generator=g)
    share = torch.tensor_split(torch.arange(7), world)[rank]

    local = x[share].clone().requires_grad_(True)
    gathered, gathered_labels = gather_batch(local, labels[share])
    (gathered.pow(2) * weights * (gathered_labels[:, None] + 1)).sum().backward()

    torch.manual_seed(0)
    bn = convert_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(5)), torch.device("cpu"))
    with torch.no_grad():
        bn[0].weight.copy_(torch.linspace(0.5, 1.5, 5))
        bn[0].bias.copy_(torch.linspace(-1, 1, 5))
    bn_input = x[share].clone().requires_grad_(True)
    bn_out = bn(bn_input)
    (bn_out * weights[share]).sum().backward()
    affine_grads = torch.cat([bn[0].weight.grad, bn[0].bias.grad])
    dist.all_reduce(affine_grads)  # what DDP would do with the parameters' gradients (before dividing by W)
    return {"share": share, "gathered": gathered.detach(), "gathered_labels": gathered_labels, "grad": local.grad,
            "bn_class": type(bn[0]).__name__, "bn_out": bn_out.detach(), "bn_input_grad": bn_input.grad,
            "bn_affine_grads": affine_grads, "running_mean": bn[0].running_mean.clone(),
            "running_var": bn[0].running_var.clone(), "num_batches_tracked": bn[0].num_batches_tracked.clone()}


def error_checks() -> dict[str, str]:
    """What each rank raises when rank 0 alone fails (as on an existing --out), and for a global batch
    that 2 ranks cannot share equally."""
    def fail_on_main() -> None:
        raise FileExistsError(f"--out exists (raised on rank {dist.get_rank()})")

    errors = {}
    try:
        run_on_main(fail_on_main)
    except FileExistsError as err:
        errors["run_on_main"] = str(err)
    try:
        run_case("softmax", batch_size=BATCH + 1)
    except ValueError as err:
        errors["batch_size"] = str(err)
    return errors


def main(out_dir: str, device_name: str = "cpu") -> None:
    with process_group(torch.device(device_name)) as (ranks, device):
        results: dict[str, Any] = {"world_size": ranks.world_size}
        if device.type == "cpu":
            results["checks"] = gather_and_batchnorm_checks()
            results["errors"] = error_checks()
        results["cases"] = {name: run_case(name, device) for name in CASES}
        torch.save(results, Path(out_dir) / f"rank{ranks.rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
