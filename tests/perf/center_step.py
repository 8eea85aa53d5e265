"""One center-loss training step, timed in a fresh process so its peak memory can be read.

Usage: python tests/perf/center_step.py IMPL NUM_CLASSES   (IMPL: paper | sgd | dense)
Prints JSON: median seconds per step, and the peak resident memory of the process before the first
step (interpreter, centers, inputs) and after the steps; the difference is what a step costs.
"""

import json
import sys
import time

import torch

from memory import peak_mb, reset_peak
from metricbench.losses import build_loss

B, D, STEPS = 512, 512, 15


class DenseCenterLoss(torch.nn.Module):
    """The popular formulation (KaiyangZhou/pytorch-center-loss): a B × C distance matrix, masked."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = torch.nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, x, labels):
        distmat = x.pow(2).sum(1, keepdim=True) + self.centers.pow(2).sum(1)[None, :] - 2 * x @ self.centers.T
        mask = labels[:, None] == torch.arange(self.centers.shape[0])[None, :]
        return (distmat * mask).clamp(min=1e-12, max=1e12).sum() / (2 * x.shape[0])


def main(impl: str, num_classes: int) -> None:
    torch.manual_seed(0)
    if impl == "dense":
        loss_fn = DenseCenterLoss(num_classes, D)
    else:
        loss_fn = build_loss("center-term", num_classes=num_classes, embedding_dim=D, update=impl)
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.5) if impl != "paper" else None
    x = torch.randn(B, D, requires_grad=True)
    labels = torch.randint(0, num_classes, (B,))

    def step():
        loss = loss_fn(x, labels)
        loss = loss.loss if hasattr(loss, "loss") else loss
        if optimizer:
            optimizer.zero_grad()
        x.grad = None
        loss.backward()
        if optimizer:
            optimizer.step()
        else:
            loss_fn.update_state(x.detach(), labels)

    before = reset_peak()
    step()  # warm-up: its allocations count toward the peak, not toward the time
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"seconds": times[len(times) // 2], "peak_mb_before": before, "peak_mb_after": peak_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
