import pytest

from metricbench.config import ExperimentConfig, apply_override, load_config, save_config


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('seed = 3\n[train]\nepochs = 7\n[loss]\nname = "arcface"\n[loss.options]\nscale = 30\n')
    config = load_config(path, ["train.epochs=2", "optim.lr=3e-4", "model.hidden=[32]", "data.dataset=digits"])
    assert config.seed == 3 and config.train.epochs == 2 and config.optim.lr == 3e-4
    assert config.loss.name == "arcface" and config.loss.options == {"scale": 30}
    assert config.model.hidden == (32,) and config.data.dataset == "digits"
    assert config.train.batch_size == ExperimentConfig().train.batch_size


def test_saved_config_round_trips(tmp_path):
    config = load_config(overrides=["loss.options.terms=[{name = 'softmax'}]", "optim.loss_lr=0.1", "eval.ks=[1, 5]"])
    save_config(config, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == config


def test_int_accepted_for_float():
    assert load_config(overrides=["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize("override, error, message", [
    ("train.epochz=3", ValueError, r"unknown config key\(s\) train.epochz; valid: train.epochs"),
    ("train.epochs=three", TypeError, "train.epochs must be int, got 'three'"),
    ("train.epochs=0", ValueError, "train.epochs must be >= 1, got 0"),
    ("optim.name=lion", ValueError, "optim.name must be one of adam, adamw, sgd; got 'lion'"),
    ("model.arch=resnet", ValueError, "model.arch must be one of auto, mlp, cnn, lenetpp; got 'resnet'"),
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
