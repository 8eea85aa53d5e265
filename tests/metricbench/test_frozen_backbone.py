"""A frozen timm backbone with its features cached on disk gives exactly the run that calls the frozen backbone on
every step; the cache is hit by later runs, invalidated when a photo changes, and its runs embed new images."""

import json

import numpy as np
import pytest
from photo_fixtures import write_cub_tree, write_jpeg

from metricbench.cli import main
from metricbench.data.image_loading import embed_images
from metricbench.run import load_run
from metricbench.run_dir import RunDir

pytestmark = pytest.mark.slow

FROZEN = ["--no-progress", "--epochs", "2", "--set", "data.image_size=[32, 32]", "--set", "train.batch_size=16",
          "--set", "eval.plots=false", "--set", "model.arch=timm:test_resnet.r160_in1k",
          "--set", "model.freeze_backbone=true", "--loss", "triplet-semihard"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _train(out, cub, *extra):
    assert main(["train", "--dataset", f"cub200:{cub}", "--out", str(out), *FROZEN, *extra]) == 0
    return json.loads(RunDir(out).metrics.read_text())


def _vectors(out):
    return np.loadtxt(RunDir(out).export / "vectors.tsv", delimiter="\t")


def _without_timing(metrics):
    return {k: v for k, v in metrics.items() if not k.startswith("train_seconds")}


def test_the_cached_run_equals_the_run_that_calls_the_frozen_backbone_every_step(tmp_path, cache, capsys):
    cub = write_cub_tree(tmp_path / "data", images_per_class=(2, 3))
    cached = _train(tmp_path / "cached", cub)
    assert "computed backbone features for 500 rows" in capsys.readouterr().err
    every_step = _train(tmp_path / "every-step", cub, "--set", "train.feature_cache=false")
    assert len(list(cache.glob("*.npy"))) == 1  # the uncached run neither reads nor writes the cache
    # Same batches, same head updates: the training losses and every test metric agree.
    np.testing.assert_allclose([h["train_loss"] for h in cached["history"]],
                               [h["train_loss"] for h in every_step["history"]], rtol=1e-5)
    for name, value in every_step["test"].items():
        if isinstance(value, float):
            assert cached["test"][name] == pytest.approx(value, abs=1e-5), name
    np.testing.assert_allclose(_vectors(tmp_path / "cached"), _vectors(tmp_path / "every-step"), atol=1e-5)


def test_later_runs_hit_the_cache_and_a_changed_photo_invalidates_it(tmp_path, cache, capsys):
    cub = write_cub_tree(tmp_path / "data", images_per_class=(2, 3))
    first = _train(tmp_path / "first", cub)
    capsys.readouterr()
    second = _train(tmp_path / "second", cub, "--seed", "0")  # another run, same trunk and files: a hit
    assert "backbone features from the cache" in capsys.readouterr().err
    assert _without_timing(second) == _without_timing(first)
    assert len(list(cache.glob("*.npy"))) == 1

    photo = sorted((cub / "images").rglob("*.jpg"))[-1]  # a test photo: the metrics must see the change
    write_jpeg(photo, seed=999)
    changed = _train(tmp_path / "changed", cub)
    assert "computed backbone features" in capsys.readouterr().err
    assert len(list(cache.glob("*.npy"))) == 2
    assert not np.array_equal(_vectors(tmp_path / "changed"), _vectors(tmp_path / "first"))
    assert changed["test"] != first["test"]


def test_a_frozen_run_embeds_new_images_with_its_checkpoint_alone(tmp_path, cache):
    cub = write_cub_tree(tmp_path / "data", images_per_class=(2, 3))
    _train(tmp_path / "run", cub)
    run = load_run(tmp_path / "run")  # reads the cached features of the dataset...
    rows = run.split.test
    np.testing.assert_allclose(run.embed(rows), _vectors(tmp_path / "run"), atol=1e-6)
    run.model.takes_features = False  # ...while the model itself still maps images (new ones) to embeddings
    direct = embed_images(run.model, run.data, rows, run.inputs.transform, device=run.device)
    np.testing.assert_allclose(direct.numpy(), _vectors(tmp_path / "run"), atol=1e-5)
