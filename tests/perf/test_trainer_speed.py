"""Training throughput of the built-in models: one full step (forward, loss, backward, Adam step)."""

import torch

from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model

from .conftest import best_of

CASES = [("cnn", (1, 28, 28)), ("lenetpp", (1, 28, 28)), ("mlp", (784,))]
BATCH, STEPS = 128, 10


def test_training_step_throughput(record):
    rows = []
    for arch, shape in CASES:
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch=arch), input_shape=shape, mean=torch.zeros(()), std=torch.ones(()))
        loss_fn = build_loss("softmax", num_classes=10, embedding_dim=64)
        optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()])
        x, y = torch.rand(BATCH, *shape), torch.arange(BATCH) % 10

        def steps():
            for _ in range(STEPS):
                optimizer.zero_grad()
                loss_fn(model(x), y).loss.backward()
                optimizer.step()

        steps()  # warm-up
        seconds = best_of(steps) / STEPS
        rows.append({"model": arch, "input": "x".join(map(str, shape)), "batch": BATCH,
                     "ms_per_step": round(seconds * 1e3, 1), "images_per_s": round(BATCH / seconds)})
    record("trainer_throughput", rows, "One training step (forward, softmax loss, backward, Adam), best of 5 × 10 steps.")
    assert all(r["images_per_s"] > 0 for r in rows)
