"""Training throughput of the built-in models through `metricbench.trainer.Trainer`: whole epochs of
the real loop (batches, forward, loss, backward, Adam step, schedule, loss hook), softmax loss."""

import numpy as np
import torch

from metricbench.config import OptimConfig, TrainConfig
from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model
from metricbench.trainer import TensorRows, Trainer

from .conftest import best_of

CASES = [("cnn", (1, 28, 28)), ("lenetpp", (1, 28, 28)), ("mlp", (784,))]
BATCH, STEPS, REPEATS, CLASSES = 128, 10, 5, 10  # an epoch is STEPS full batches; best of REPEATS timed epochs


def test_training_epoch_throughput(record):
    rows = []
    for arch, shape in CASES:
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch=arch), input_shape=shape, mean=torch.zeros(()), std=torch.ones(()))
        loss_fn = build_loss("softmax", num_classes=CLASSES, embedding_dim=ModelConfig().embedding_dim)
        labels = np.arange(BATCH * STEPS) % CLASSES
        # A learnable task (a noisy prototype per class), so that the timed steps are real training steps.
        y = torch.from_numpy(labels)
        x = torch.rand(CLASSES, *shape)[y] + 0.5 * torch.rand(len(y), *shape)
        # Warm-up plus timed epochs make up the schedule, so the cosine decay never stalls the timed ones at lr 0.
        trainer = Trainer(model, loss_fn, optim=OptimConfig(),
                          train=TrainConfig(epochs=1 + REPEATS, batch_size=BATCH, sampler="random", device="cpu"),
                          labels=labels, seed=0, device=torch.device("cpu"))
        assert trainer.steps_per_epoch == STEPS
        seen = []
        model.register_forward_pre_hook(lambda module, inputs: seen.append(len(inputs[0])))

        data = TensorRows(x, y)
        first = trainer.train_epoch(data, progress=False)["loss"]  # warm-up
        losses = []
        seconds = best_of(lambda: losses.append(trainer.train_epoch(data, progress=False)["loss"]), REPEATS) / STEPS

        assert trainer.step == (1 + REPEATS) * STEPS
        assert sum(seen) == trainer.step * BATCH  # every timed step trained on a full batch
        assert losses[-1] < first, f"{arch}: the loss did not fall over the timed epochs ({first:.4f} → {losses[-1]:.4f})"
        rows.append({"model": arch, "input": "x".join(map(str, shape)), "batch": BATCH, "steps": STEPS * REPEATS,
                     "ms_per_step": round(seconds * 1e3, 1), "images_per_s": round(BATCH / seconds),
                     "loss_first_epoch": round(first, 4), "loss_last_epoch": round(losses[-1], 4)})
    record("trainer_throughput", rows, f"`Trainer.train_epoch` of {STEPS} steps (batch, forward, softmax loss, backward, "
           f"Adam, cosine schedule), best of {REPEATS} epochs after one warm-up epoch; per step.")
