"""Photo benchmarks end to end through the CLI, on fixture trees in the official layouts: the standard split,
streamed training, query/gallery evaluation, repeatable crops, unreadable images."""

import json
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
from photo_fixtures import write_cars_tree, write_cub_tree, write_image_table, write_inshop_tree, write_sop_tree
from PIL import Image

from metricbench.cli import main
from metricbench.data import load_dataset, load_split
from metricbench.eval import retrieval_metrics
from metricbench.run_dir import RunDir

pytestmark = pytest.mark.slow

SMALL = ["--no-progress", "--epochs", "1", "--set", "data.image_size=[32, 32]", "--set", "train.batch_size=16",
         "--set", "eval.plots=false"]
TREES = {"cub200": write_cub_tree, "cars196": write_cars_tree, "sop": write_sop_tree, "inshop": write_inshop_tree}


def _train(out, dataset, *extra):
    return main(["train", "--dataset", dataset, "--out", str(out), *SMALL, *extra])


def _vectors(run_dir):
    return np.loadtxt(RunDir(run_dir).export / "vectors.tsv", delimiter="\t", ndmin=2)


@pytest.mark.parametrize("name", list(TREES))
def test_one_epoch_on_each_benchmark_uses_its_own_split(tmp_path, name):
    top = TREES[name](tmp_path / "data")
    spec = f"{name}:{top.parent}"  # the parent of the dataset's own folder is accepted too
    out = tmp_path / "run"
    data = load_dataset(spec)
    gallery = len(data.parts["gallery"]) if "gallery" in data.parts else len(data.parts["test"]) - 1
    usual = {"cub200": (1, 2, 4, 8), "cars196": (1, 2, 4, 8), "sop": (1, 10, 100, 1000),
             "inshop": (1, 10, 20, 30, 40, 50)}[name]
    reported = [k for k in usual if k <= gallery]  # the dataset's usual Recall@K that the small gallery allows
    with pytest.warns(RuntimeWarning, match="leaves out") if reported != list(usual) else nullcontext():
        assert _train(out, spec) == 0
    split = load_split(RunDir(out).split)
    assert split.protocol == "standard"
    official_test = data.parts["test"] if "test" in data.parts else np.union1d(data.parts["query"],
                                                                               data.parts["gallery"])
    np.testing.assert_array_equal(split.test, official_test)
    np.testing.assert_array_equal(np.union1d(split.train, split.val), data.parts["train"])
    train_classes, val_classes = set(data.y[split.train]), set(data.y[split.val])
    assert not train_classes & val_classes  # validation on held-out training classes
    assert len(val_classes) == int(len(set(data.y[data.parts["train"]])) * 0.25 + 0.5)  # halves round up
    metrics = json.loads(RunDir(out).metrics.read_text())
    assert [k for k in metrics["test"] if k.startswith("recall_at_")] == [f"recall_at_{k}" for k in reported]
    assert name != "sop" or reported == [1, 10, 100]
    assert metrics["split_sizes"]["test"] == len(official_test)


def test_inshop_evaluates_queries_against_the_gallery(tmp_path, capsys):
    top = write_inshop_tree(tmp_path / "data", layout="flat", test_items=30)  # a gallery of 60: Recall@50 fits
    out = tmp_path / "run"
    assert _train(out, f"inshop:{top}") == 0
    data = load_dataset(f"inshop:{top}")
    split = load_split(RunDir(out).split)
    np.testing.assert_array_equal(split.queries, data.parts["query"])
    vectors = _vectors(out)  # the test rows' embeddings, in split.test order
    is_query = np.isin(split.test, split.queries)
    labels = data.y[split.test]
    expected = retrieval_metrics(vectors[~is_query], labels[~is_query], query_embeddings=vectors[is_query],
                                 query_labels=labels[is_query], ks=(1, 10, 20, 30, 40, 50))
    metrics = json.loads(RunDir(out).metrics.read_text())["test"]
    for key in ("recall_at_1", "recall_at_10", "map_at_r", "r_precision"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6)
    leave_one_out = retrieval_metrics(vectors, labels, ks=(1,))
    assert (metrics["map_at_r"], metrics["recall_at_1"]) != (leave_one_out["map_at_r"], leave_one_out["recall_at_1"])
    capsys.readouterr()
    assert main(["eval", str(out), "--no-plots"]) == 0  # `metricbench eval` scores a run the same way
    assert json.loads(capsys.readouterr().out)["map_at_r"] == pytest.approx(metrics["map_at_r"], abs=1e-6)


def test_streamed_runs_repeat_exactly_across_workers_and_resume(tmp_path):
    table = write_image_table(tmp_path / "data", split="train/test", num_classes=8, images_per_class=6)
    spec = f"files:{table}"
    extra = ["--epochs", "2", "--set", "eval.export=false"]
    assert _train(tmp_path / "two_workers", spec, *extra, "--set", "train.num_workers=2") == 0
    assert _train(tmp_path / "in_process", spec, *extra, "--set", "train.num_workers=0") == 0
    resumed = tmp_path / "resumed"
    assert main(["train", "--dataset", spec, "--out", str(resumed), *SMALL, *extra, "--stop-after-epochs", "1"]) == 0
    assert not RunDir(resumed).metrics.exists()
    assert main(["train", "--resume", "--out", str(resumed), "--no-progress"]) == 0
    results = [json.loads(RunDir(tmp_path / run).metrics.read_text())
               for run in ("two_workers", "in_process", "resumed")]
    assert results[0]["test"] == results[1]["test"] == results[2]["test"]
    assert results[0]["history"] == results[1]["history"] == results[2]["history"]


def test_an_unreadable_photo_stops_training_with_its_path_unless_skipped(tmp_path, capsys):
    table = write_image_table(tmp_path / "data", split="train/test", num_classes=8, images_per_class=4)
    broken = tmp_path / "data" / "images" / "class_00" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated JPEG
    out = tmp_path / "run"
    capsys.readouterr()
    assert _train(out, f"files:{table}", "--set", "train.num_workers=0") == 2
    error = capsys.readouterr().err
    assert str(broken) in error and "skip_bad_images" in error and error.count("\n") == 1
    with pytest.warns(RuntimeWarning, match="skipping an unreadable image"):
        assert _train(out, f"files:{table}", "--overwrite", "--set", "data.skip_bad_images=true") == 0
    history = json.loads(RunDir(out).metrics.read_text())["history"]
    assert history[0]["train_skipped_images"] == 1


def test_photo_options_are_refused_for_in_memory_data(tmp_path, capsys):
    capsys.readouterr()
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), "--set", "data.crop_boxes=true"]) == 2
    assert "data.crop_boxes applies only to photos" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), "--set", "data.mean=[0.5, 0.5]",
                 "--set", "data.std=[1.0, 1.0]"]) == 2
    assert "data.mean and data.std must have 1 value, got 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bench_compares_losses_on_a_query_gallery_dataset(tmp_path):
    table = write_image_table(tmp_path / "data", split="train/query/gallery", num_classes=12, images_per_class=4)
    spec = tmp_path / "photos.toml"
    spec.write_text(f"""
name = "photos"
datasets = ["files:{table}"]
protocols = ["standard"]
seeds = [0]
workers = 1
[base]
train.epochs = 1
train.batch_size = 8
train.num_workers = 0
data.image_size = [32, 32]
eval.plots = false
eval.export = false
[[losses]]
name = "softmax"
[[losses]]
name = "triplet-semihard"
""")
    assert main(["bench", str(spec), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert sorted(runs["loss"]) == ["softmax", "triplet-semihard"] and set(runs["protocol"]) == {"standard"}
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "standard" in summary and "triplet-semihard" in summary


def test_projector_metadata_names_each_photo_and_sop_super_class(tmp_path):
    top = write_sop_tree(tmp_path / "data", train_classes=12, test_classes=12)
    out = tmp_path / "run"
    assert _train(out, f"sop:{top}", "--set", "eval.ks=[1, 10]") == 0
    metadata = pd.read_csv(RunDir(out).export / "metadata.tsv", sep="\t")
    data = load_dataset(f"sop:{top}")
    test = load_split(RunDir(out).split).test
    assert metadata["path"].tolist() == [data.paths[row] for row in test]
    assert metadata["super_class"].tolist() == [path.split("_final/")[0] for path in metadata["path"]]


def test_the_retrieval_gallery_decodes_only_the_photos_it_shows(tmp_path, monkeypatch):
    from metricbench.run_inputs import RunInputs

    table = write_image_table(tmp_path / "data", split="train/test", num_classes=8, images_per_class=6)
    decoded = []
    original = RunInputs.thumbnails
    monkeypatch.setattr(RunInputs, "thumbnails", lambda self, rows: decoded.append((rows, original(self, rows)))
                        or decoded[-1][1])
    out = tmp_path / "run"
    assert _train(out, f"files:{table}", "--set", "eval.plots=true", "--set", "eval.export=false",
                  "--set", "train.num_workers=0") == 0
    records = json.loads((RunDir(out).plots / "retrievals.json").read_text())
    shown = {q["row"] for q in records["queries"]} | {n["row"] for q in records["queries"] for n in q["neighbors"]}
    assert len(decoded) == 1  # one call, for the rows shown only (no sprite without the export)
    rows, images = decoded[0]
    assert sorted(rows.tolist()) == sorted(shown) and set(shown) <= set(load_split(RunDir(out).split).test)
    assert images.dtype == np.uint8 and images.shape == (len(shown), 3, 64, 64) and images.std() > 0
    with Image.open(RunDir(out).plots / "retrievals.png") as png:
        assert png.size[1] > 600
