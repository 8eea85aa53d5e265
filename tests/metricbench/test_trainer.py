import numpy as np
import torch

from metricbench.config import OptimConfig, TrainConfig
from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model
from metricbench.trainer import TensorRows, Trainer


def make_trainer(loss="softmax", optim=OptimConfig(), train=TrainConfig(epochs=3, batch_size=16, log_every=1), **options):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", embedding_dim=4, hidden=(8,)), input_shape=(6,),
                        mean=torch.zeros(6), std=torch.ones(6))
    loss_fn = build_loss(loss, num_classes=3, embedding_dim=4, **options)
    labels = np.arange(60) % 3
    return Trainer(model, loss_fn, optim=optim, train=train, labels=labels, seed=0, device=torch.device("cpu")), labels


def test_one_optimizer_holds_model_and_loss_parameters_once():
    trainer, _ = make_trainer(optim=OptimConfig(lr=1e-3, loss_lr=0.5))
    groups = trainer.optimizer.param_groups
    assert [g["name"] for g in groups] == ["model", "loss"]
    assert groups[1]["initial_lr"] == 0.5 and groups[0]["initial_lr"] == 1e-3
    params = [id(p) for g in groups for p in g["params"]]
    expected = {id(p) for p in trainer.model.parameters()} | {id(p) for p in trainer.loss_fn.parameters()}
    assert len(params) == len(set(params)) and set(params) == expected


def test_training_lowers_the_loss_and_logs_every_step():
    trainer, labels = make_trainer()
    g = torch.Generator().manual_seed(0)
    y = torch.from_numpy(labels)
    x = torch.randn(60, 6, generator=g) + 3 * torch.nn.functional.one_hot(y, 6).float()
    logged = []
    first = trainer.train_epoch(TensorRows(x, y), log=lambda step, values: logged.append((step, values)),
                                progress=False)
    for _ in range(2):
        last = trainer.train_epoch(TensorRows(x, y), progress=False)
    assert last["loss"] < first["loss"]
    assert [s for s, _ in logged] == list(range(1, trainer.steps_per_epoch + 1))
    assert {"train/loss", "train/ce", "train/lr"} <= set(logged[0][1])
    assert trainer.scheduler.get_last_lr()[0] < 1e-3 * 0.5  # cosine decayed


def test_pair_losses_get_m_per_class_batches_by_default():
    trainer, labels = make_trainer(loss="pml:ContrastiveLoss")
    assert trainer.sampler == "m-per-class"
    for batch in trainer.batches(0):
        assert np.bincount(labels[batch]).max() >= 2
    assert make_trainer()[0].sampler == "random"


def test_warns_once_when_batches_keep_arriving_without_positive_pairs():
    import warnings

    import pytest

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", embedding_dim=4, hidden=(8,)), input_shape=(6,),
                        mean=torch.zeros(6), std=torch.ones(6))
    labels = np.arange(64)  # every sample its own class: no batch can hold a positive pair
    trainer = Trainer(model, build_loss("triplet-semihard", num_classes=64, embedding_dim=4), optim=OptimConfig(),
                      train=TrainConfig(epochs=2, batch_size=8, sampler="random", log_every=1), labels=labels, seed=0,
                      device=torch.device("cpu"))
    x, y = torch.randn(64, 6), torch.from_numpy(labels)
    with pytest.warns(RuntimeWarning, match=r"no positive pair .* --set train.sampler='m-per-class'") as record:
        trainer.train_epoch(TensorRows(x, y), progress=False)
        trainer.train_epoch(TensorRows(x, y), progress=False)
    assert len([w for w in record if "positive pair" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # m-per-class batches: no warning
        ok, ok_labels = make_trainer(loss="triplet-semihard")
        ok.train_epoch(TensorRows(torch.randn(60, 6), torch.from_numpy(ok_labels)), progress=False)
