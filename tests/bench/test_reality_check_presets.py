"""The Reality-Check presets: their settings, and every one of them end to end on a fixture tree with timm's tiny
test model (pretrained weights from a Hugging Face cache the test fills, offline). The frozen grid computes the
backbone's features once for all its cells and seeds."""

import pandas as pd
import pytest
from photo_fixtures import write_cars_tree, write_cub_tree, write_inshop_tree, write_sop_tree
from timm_fixtures import TINY, fill_hf_cache, tiny_source_model

from metricbench.bench import load_spec, preset_names
from metricbench.cli import main

DATASETS = {"cub200": write_cub_tree, "cars196": write_cars_tree, "sop": write_sop_tree, "inshop": write_inshop_tree}
PRESETS = [*DATASETS, *(f"{name}-frozen" for name in DATASETS)]
TINY_RUN = [f"base.model.arch='timm:{TINY}'", "base.data.image_size=[32, 32]", "base.eval.plots=false",
            "base.eval.export=false", "base.train.num_workers=0"]


def test_every_dataset_has_a_preset_and_a_frozen_variant():
    assert set(PRESETS) <= set(preset_names())
    assert not any(name.startswith("_") for name in preset_names())  # shared parts are not runnable presets


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_follow_the_reality_check(preset):
    spec = load_spec(preset)
    dataset = preset.removesuffix("-frozen")
    assert spec.name == preset and spec.datasets == (f"{dataset}:data",) and spec.protocols == ("standard",)
    assert [e.label for e in spec.losses] == ["softmax", "normsoftmax", "arcface", "center", "triplet-semihard"]
    config = spec.experiment(spec.datasets[0], "standard", spec.losses[0], 0)
    assert config.model.arch == "timm:resnet50.tv_in1k" and config.model.pretrained and config.model.freeze_bn
    assert config.model.embedding_dim == 128
    assert (config.train.batch_size, config.train.sampler, config.train.m_per_class) == (32, "m-per-class", 4)
    assert config.optim.name == "rmsprop" and config.train.select_by == "map_at_r"
    frozen = preset.endswith("-frozen")
    assert config.model.freeze_backbone == frozen
    assert config.optim.lr == (1e-4 if frozen else 1e-6)


@pytest.fixture(scope="module")
def offline_weights(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf")
    fill_hf_cache(home, tiny_source_model(seed=1).state_dict())
    return home


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_runs_end_to_end_on_a_fixture_tree(tmp_path, monkeypatch, offline_weights, preset):
    monkeypatch.setenv("HF_HOME", str(offline_weights))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("METRICBENCH_CACHE_DIR", str(tmp_path / "cache"))
    dataset = preset.removesuffix("-frozen")
    tree = DATASETS[dataset](tmp_path / "data")
    # The CUB grid runs whole (5 losses × 2 seeds); the others one loss, one seed, to keep `make test` short.
    whole = dataset == "cub200"
    grid = ["--seeds", "0", "1"] if whole else ["--seeds", "0", "--set", "losses=[{name = 'center'}]"]
    args = ["bench", preset, "--datasets", f"{dataset}:{tree}", "--epochs", "2", *grid, "--workers", "2",
            "--threads", "1", "--no-tune", "--no-progress", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    assert main([*args, *(a for o in TINY_RUN for a in ("--set", o))]) == 0
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == (10 if whole else 1)
    assert runs["map_at_r"].notna().all()
    logs = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*.log"))
    if preset.endswith("-frozen"):
        assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
        assert logs.count("computed backbone features") == 1  # once for the whole grid
        assert logs.count("backbone features from the cache") == len(runs) - 1
    else:
        assert not (tmp_path / "cache").exists()
