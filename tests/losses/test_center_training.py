"""A short real training run: the larger λ, the tighter the classes relative to their separation."""

import pytest
import torch

from metricbench.config import OptimConfig, TrainConfig
from metricbench.data import load_dataset
from metricbench.eval import class_distance_stats
from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model
from metricbench.trainer import TensorRows, Trainer, embed

EPOCHS = 15


def spread_ratio(update: str, weight: float) -> float:
    data = load_dataset("digits")
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", embedding_dim=8, hidden=(64,)), input_shape=data.x.shape[1:],
                        mean=x.mean(), std=x.std())
    loss_fn = build_loss("center", num_classes=10, embedding_dim=8, update=update, center_weight=weight)
    trainer = Trainer(model, loss_fn, optim=OptimConfig(lr=3e-3), train=TrainConfig(epochs=EPOCHS, batch_size=64),
                      labels=data.y, seed=0, device=torch.device("cpu"))
    for _ in range(EPOCHS):
        trainer.train_epoch(TensorRows(x, y), progress=False)
    summary, _ = class_distance_stats(embed(model, x, device=torch.device("cpu")), data.y)
    return summary["intra_inter_ratio"]


@pytest.mark.parametrize("update", ["paper", "sgd"])
def test_spread_shrinks_as_lambda_grows(update):
    ratios = [spread_ratio(update, weight) for weight in (0.0, 0.1, 1.0)]
    assert ratios[0] > ratios[1] > ratios[2], ratios
    assert ratios[2] < 0.9 * ratios[0], ratios
