import os

import pytest

from metricbench.config import DataConfig, ExperimentConfig, apply_override, load_config, save_config
from metricbench.errors import InputTypeError


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('seed = 3\n[train]\nepochs = 7\n[loss]\nname = "arcface"\n[loss.options]\nscale = 30\n')
    config = load_config(path, ["train.epochs=2", "optim.lr=3e-4", "model.hidden=[32]", "data.dataset=digits"])
    assert config.seed == 3 and config.train.epochs == 2 and config.optim.lr == 3e-4
    assert config.loss.name == "arcface" and config.loss.options == {"scale": 30}
    assert config.model.hidden == (32,) and config.data.dataset == "digits"
    assert config.train.batch_size == ExperimentConfig().train.batch_size


def test_saved_config_round_trips(tmp_path):
    config = load_config(overrides=["loss.name=weighted-sum", "loss.options.terms=[{name = 'softmax'}]",
                                    "optim.loss_lr=0.1", "eval.ks=[1, 5]"])
    save_config(config, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == config


def test_int_accepted_for_float():
    assert load_config(overrides=["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize("override, error, message", [
    ("train.epochz=3", ValueError, r"unknown config key\(s\) train.epochz; valid: train.epochs"),
    ("train.epochs=three", InputTypeError, "train.epochs must be int, got 'three'"),
    ("eval.ks=[1, 'a']", InputTypeError, r"eval.ks\[1\] must be int, got 'a'"),
    ("train=3", InputTypeError, "train must be a table, got 3"),
    ("train.epochs=0", ValueError, "train.epochs must be >= 1, got 0"),
    ("optim.name=lion", ValueError, "optim.name must be one of adam, adamw, sgd, rmsprop; got 'lion'"),
    ("model.arch=resnet", ValueError, "model.arch must be one of auto, mlp, cnn, lenetpp or timm:<name>; got 'resnet'"),
    ("eval.metric=l1", ValueError, "eval.metric must be l2 or cosine"),
    ("nonsense", ValueError, "--set expects KEY=VALUE"),
])
def test_bad_values_name_the_key(override, error, message):
    with pytest.raises(error, match=message):
        load_config(overrides=[override])


def test_override_values_are_literals_never_code():
    data = {}
    apply_override(data, "loss.name=__import__('os').system('false')")
    assert data == {"loss": {"name": "__import__('os').system('false')"}}


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 1")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(bad)


def test_loss_options_are_typed_like_every_other_key():
    base = ["loss.name=triplet-semihard"]
    with pytest.raises(InputTypeError, match=r"^loss.options.margin must be float, got 'abc'$"):
        load_config(overrides=[*base, "loss.options.margin=abc"])
    with pytest.raises(InputTypeError, match="loss.options.distance must be str, got 3"):
        load_config(overrides=[*base, "loss.options.distance=3"])
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'margn' for loss 'triplet-semihard'; valid options: m"):
        load_config(overrides=[*base, "loss.options.margn=0.2"])
    with pytest.raises(ValueError, match="margin must be >= 0, got -1"):  # ranges are checked when the config is built
        load_config(overrides=[*base, "loss.options.margin=-1"])
    with pytest.raises(ValueError, match="unknown loss 'tripet'"):
        load_config(overrides=["loss.name=tripet"])
    config = load_config(overrides=[*base, "loss.options.margin=1"])  # an int is a float, as elsewhere
    assert config.loss.options == {"margin": 1}
    pml = load_config(overrides=["loss.name=pml:TripletMarginLoss", "loss.options.anything='goes'"])
    assert pml.loss.options == {"anything": "goes"}  # PML's own keyword arguments, checked when built


def test_dataset_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for fmt in ("npz", "csv", "parquet", "idx", "folder"):
        assert DataConfig(dataset=f"{fmt}:rel/x").dataset == f"{fmt}:{tmp_path / 'rel' / 'x'}"
    assert DataConfig(dataset="npz:~/x.npz").dataset == f"npz:{os.path.expanduser('~')}/x.npz"
    assert DataConfig(dataset="npz:/abs/../x.npz").dataset == "npz:/x.npz"
    assert DataConfig(dataset="mnist5k").dataset == "mnist5k" and DataConfig(dataset="npz:").dataset == "npz:"
    config = load_config(overrides=["data.dataset=npz:data/x.npz"])
    save_config(config, tmp_path / "config.toml")
    monkeypatch.chdir(tmp_path / "..")
    assert load_config(tmp_path / "config.toml") == config  # the same files from any working directory


def test_config_path_that_is_a_directory(tmp_path):
    with pytest.raises(ValueError, match=r"^--config '.*' is a directory; expected a TOML file$"):
        load_config(tmp_path, what="--config")
