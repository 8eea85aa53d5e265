"""timm backbones: training through the CLI, local weights files, pretrained weights from a Hugging Face cache
the test fills (offline), frozen BatchNorm, the backbone's own learning rate, and the pretrained input config."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from photo_fixtures import write_cub_tree
from safetensors.torch import save_file
from timm_fixtures import TINY, fill_hf_cache, tiny_source_model

from metricbench.cli import main
from metricbench.config import load_config
from metricbench.losses import build_loss
from metricbench.models import ModelConfig, build_model
from metricbench.run import load_run
from metricbench.run_dir import RunDir
from metricbench.trainer import build_optimizer

SMALL = ["--no-progress", "--epochs", "1", "--set", "data.image_size=[32, 32]", "--set", "train.batch_size=16",
         "--set", "eval.plots=false", "--set", f"model.arch=timm:{TINY}"]


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return write_cub_tree(tmp_path_factory.mktemp("data"), images_per_class=(2, 3))


def _pooled(model, x):
    """The source model's embedding-to-be: pooled features before its classifier."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _trunk(**options):
    config = ModelConfig(arch=f"timm:{TINY}", embedding_dim=8, **options)
    return build_model(config, input_shape=(3, 32, 32), mean=torch.zeros(3, 1, 1), std=torch.ones(3, 1, 1))


@pytest.mark.slow
def test_a_timm_backbone_trains_through_the_cli_and_its_checkpoint_embeds_alone(tmp_path, cub):
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"cub200:{cub}", "--out", str(out), *SMALL]) == 0
    metrics = json.loads(RunDir(out).metrics.read_text())
    assert np.isfinite(metrics["history"][0]["train_loss"])
    run = load_run(out)  # built without weights (none downloaded, none re-read): the checkpoint holds them all
    assert type(run.model.backbone.trunk).__name__ == "ResNet"
    exported = np.loadtxt(RunDir(out).export / "vectors.tsv", delimiter="\t")
    np.testing.assert_allclose(run.embed(run.split.test), exported, atol=1e-5)


def test_pretrained_input_size_and_normalisation_are_the_data_defaults(tmp_path, cub):
    from metricbench.run_inputs import load_inputs

    config = load_config(None, [f"data.dataset='cub200:{cub}'", f"model.arch='timm:{TINY}'"])
    inputs = load_inputs(config).with_statistics(config, np.arange(3))
    assert inputs.transform.size == (160, 160)  # test_resnet's pretrained config; ResNet-50's would be 224
    np.testing.assert_allclose(inputs.mean.flatten(), [0.5, 0.5, 0.5])  # its mean/std, not ImageNet's
    config = load_config(None, [f"data.dataset='cub200:{cub}'", f"model.arch='timm:{TINY}'", "data.image_size=[48, 40]",
                                "data.mean=[0.1]", "data.std=[0.2]"])
    inputs = load_inputs(config).with_statistics(config, np.arange(3))
    assert inputs.transform.size == (48, 40) and float(inputs.mean.flatten()[0]) == pytest.approx(0.1)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_gives_the_source_models_embeddings(tmp_path, suffix):
    source = tiny_source_model(seed=3)
    path = tmp_path / f"source{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": source.state_dict()}, path)  # the common training-script wrapper
    else:
        save_file(source.state_dict(), path)
    with pytest.warns(RuntimeWarning, match=r"ignoring the classifier .*fc\.bias, fc\.weight"):
        model = _trunk(weights=str(path)).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(model.features(x).numpy(), _pooled(source, x).numpy())
    # A model built without the file differs, so the equality above is the file's doing.
    with torch.no_grad():
        assert not torch.equal(_trunk().eval().features(x), _pooled(source, x))


def test_weights_that_do_not_fit_are_refused_with_every_kind_of_mismatch(tmp_path):
    state = tiny_source_model().state_dict()
    state.pop("conv1.0.weight")  # missing
    state["extra.weight"] = torch.zeros(1)  # unexpected
    state["bn1.weight"] = torch.zeros(7)  # misshapen
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        _trunk(weights=str(tmp_path / "bad.pth"))
    message = str(err.value)
    assert "1 keys missing: conv1.0.weight" in message
    assert "1 keys unexpected: extra.weight" in message
    assert "bn1.weight (7,) vs (" in message
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt.safetensors' is not a readable"):
        _trunk(weights=str(tmp_path / "corrupt.safetensors"))
    with pytest.raises(FileNotFoundError, match="model.weights .*nothing.pth' does not exist"):
        _trunk(weights=str(tmp_path / "nothing.pth"))


@pytest.mark.slow
def test_pretrained_weights_load_offline_from_the_hugging_face_cache(tmp_path, cub):
    source = tiny_source_model(seed=5)
    fill_hf_cache(tmp_path / "hf", source.state_dict())
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "metricbench", "train", "--dataset", f"cub200:{cub}", *SMALL,
           "--set", "model.pretrained=true", "--set", "optim.lr=1e-9", "--set", "model.freeze_bn=true"]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    trunk = load_run(tmp_path / "run").model.backbone.trunk
    start = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    for key, value in trunk.state_dict().items():  # lr 1e-9, frozen BatchNorm: nothing moves visibly
        if value.is_floating_point():
            torch.testing.assert_close(value, start[key], atol=1e-6, rtol=0, msg=key)

    empty = {**env, "HF_HOME": str(tmp_path / "empty")}
    done = subprocess.run([*cmd, "--out", str(tmp_path / "run2")], env=empty, capture_output=True, text=True)
    assert done.returncode == 2
    assert f"the weights of timm:{TINY} are not in the Hugging Face cache" in done.stderr
    assert f"hf download timm/{TINY}" in done.stderr
    assert not (tmp_path / "run2").exists()


def test_freeze_bn_keeps_running_statistics_and_trains_the_rest():
    model = _trunk(freeze_bn=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_fn = build_loss("softmax", num_classes=3, embedding_dim=8)
    optimizer = build_optimizer(model, loss_fn, load_config(None).optim)
    model.train()
    loss = loss_fn(model(torch.rand(6, 3, 32, 32)), torch.tensor([0, 0, 1, 1, 2, 2])).loss
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    stats = [k for k in before if "running_" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(before["backbone.trunk.bn1.weight"], after["backbone.trunk.bn1.weight"])  # affine trains
    assert not torch.equal(before["backbone.trunk.conv1.0.weight"], after["backbone.trunk.conv1.0.weight"])


def test_freeze_backbone_trains_the_head_only():
    model = _trunk(freeze_backbone=True).train()
    assert not model.backbone.trunk.training  # eval mode even inside a training model
    loss_fn = build_loss("softmax", num_classes=3, embedding_dim=8)
    optimizer = build_optimizer(model, loss_fn, load_config(None).optim)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained.isdisjoint(id(p) for p in model.backbone.trunk.parameters())
    assert all(id(p) in trained for p in model.backbone.head.parameters())


def test_backbone_lr_is_the_trunks_own_group():
    model = _trunk()
    loss_fn = build_loss("softmax", num_classes=3, embedding_dim=8)
    optim = load_config(None, ["model.arch='timm:test_resnet.r160_in1k'", "optim.backbone_lr=1e-5",
                               "optim.name=rmsprop"]).optim
    groups = {g["name"]: g for g in build_optimizer(model, loss_fn, optim).param_groups if "name" in g}
    assert groups["backbone"]["lr"] == 1e-5 and groups["model"]["lr"] == 1e-3
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in model.backbone.trunk.parameters()}
    assert {id(p) for p in groups["model"]["params"]} == {id(p) for p in model.backbone.head.parameters()}


@pytest.mark.parametrize("overrides, message", [
    (["model.arch='timm:no_such_net'"], "timm has no model 'no_such_net'"),
    (["model.freeze_bn=true"], "model.freeze_bn applies to timm backbones"),
    (["model.arch='timm:test_resnet.r160_in1k'", "model.pretrained=true", "model.weights='x.pth'"],
     "model.pretrained and model.weights both"),
    (["optim.backbone_lr=1e-4"], "optim.backbone_lr applies to timm backbones"),
    (["model.arch='timm:test_resnet.r160_in1k'", "model.freeze_backbone=true", "optim.backbone_lr=1e-4"],
     "nothing to train"),
    (["train.precision=fp8"], "train.precision must be one of fp32, bf16, fp16"),
])
def test_bad_backbone_options_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)
