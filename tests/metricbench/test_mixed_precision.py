"""Mixed precision: bf16 on the CPU stays close to fp32; embeddings reach the loss as float32; fp16 with its
gradient scaler survives degenerate batches without NaN."""

import json

import numpy as np
import pytest
import torch

from metricbench.cli import main
from metricbench.config import load_config
from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model
from metricbench.run_dir import RunDir
from metricbench.trainer import TensorRows, Trainer


def _model(precision, normalize=True):
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="cnn", embedding_dim=16, normalize=normalize), input_shape=(1, 28, 28),
                       mean=torch.zeros(1, 1, 1), std=torch.ones(1, 1, 1), precision=precision)


def test_bf16_embeddings_are_float32_and_close_to_fp32():
    x = torch.rand(64, 1, 28, 28)
    full, half = _model("fp32").eval(), _model("bf16").eval()
    with torch.no_grad():
        a, b = full(x), half(x)
    assert b.dtype == torch.float32  # cast before any loss: mining and margins are exact
    cosine = (a * b).sum(1)  # both L2-normalised
    assert cosine.min() > 0.99
    assert not torch.equal(a, b)  # bf16 did run: the values differ in the low bits


@pytest.mark.slow
def test_a_bf16_run_on_the_cpu_trains_like_fp32(tmp_path):
    results = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        args = ["train", "--dataset", "digits", "--out", str(out), "--epochs", "3", "--no-progress",
                "--set", "eval.plots=false", "--set", "eval.export=false", "--set", f"train.precision={precision}"]
        assert main(args) == 0
        results[precision] = json.loads(RunDir(out).metrics.read_text())
    fp32, bf16 = results["fp32"], results["bf16"]
    assert bf16["history"][-1]["train_loss"] == pytest.approx(fp32["history"][-1]["train_loss"], rel=0.05)
    assert bf16["test"]["precision_at_1"] == pytest.approx(fp32["test"]["precision_at_1"], abs=0.03)
    assert bf16["test"]["precision_at_1"] > 0.8


@pytest.mark.parametrize("loss_name", ["softmax", "triplet-semihard", "center"])
def test_fp16_survives_degenerate_batches(loss_name):
    """Identical inputs give identical, zero-distance embeddings: normalisation and the loss must stay finite,
    and the gradient scaler must keep the weights finite."""
    model = _model("fp16")
    loss_fn = build_loss(loss_name, num_classes=2, embedding_dim=16)
    config = load_config(None, ["train.precision=fp16", "train.batch_size=8", "train.epochs=1", "train.log_every=1",
                                "train.sampler=random"])
    labels = np.array([0, 1] * 8)
    trainer = Trainer(model, loss_fn, optim=config.optim, train=config.train, labels=labels, seed=0,
                      device=torch.device("cpu"))
    assert trainer.scaler.is_enabled()
    means = trainer.train_epoch(TensorRows(torch.zeros(16, 1, 28, 28), torch.from_numpy(labels)), progress=False)
    assert np.isfinite(means["loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "scaler" in trainer.state_dict()
