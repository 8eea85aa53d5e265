"""Using a trained run: `embed`, `index`, `search` and `export-model`, through the CLI, against the library's own
search (`knn_search`, `retrieval_metrics_and_neighbors`) and model (`load_run`)."""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from photo_fixtures import write_cub_tree, write_jpeg
from timm_fixtures import TINY

from metricbench.checkpoint import load_checkpoint, save_checkpoint
from metricbench.cli import main
from metricbench.eval import knn_search, retrieval_metrics_and_neighbors
from metricbench.feature_cache import state_dict_digest
from metricbench.inference import (EmbeddedSet, Provenance, read_embedded, read_index_dir, search_index_dir,
                                   write_index_dir)
from metricbench.run import load_run
from metricbench.run_dir import RunDir

FAST = ["--no-progress", "--epochs", "1", "--set", "eval.plots=false", "--set", "train.batch_size=64"]


def _train(out, *extra):
    assert main(["train", "--out", str(out), *FAST, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("mlp") / "run", "--dataset", "digits", "--set", "model.arch='mlp'")


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("cnn") / "run", "--dataset", "digits", "--set", "model.arch='cnn'")


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A timm backbone trained frozen, its features from a cache of its own."""
    root = tmp_path_factory.mktemp("timm")
    cub = write_cub_tree(root / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METRICBENCH_CACHE_DIR", str(root / "cache"))
        _train(root / "run", "--dataset", f"cub200:{cub}", "--set", f"model.arch='timm:{TINY}'",
               "--set", "data.image_size=[32, 32]", "--set", "model.freeze_backbone=true",
               "--set", "train.num_workers=0", "--set", "train.batch_size=16", "--loss", "triplet-semihard")
    return root / "run"


def _cli(*args):
    return main([*map(str, args)])


def _embed(run, out, *extra):
    assert _cli("embed", run, "--out", out, "--no-progress", *extra) == 0
    return out


def _digest(run):
    return state_dict_digest(load_run(run, features=False).model)


def test_embed_writes_each_format_with_the_model_that_made_it(mlp_run, tmp_path, capsys):
    run = load_run(mlp_run)
    rows = run.split.test
    expected = run.embed(rows)
    npz = read_embedded(_embed(mlp_run, tmp_path / "test.npz", "--split", "test"))
    parquet = read_embedded(_embed(mlp_run, tmp_path / "test.parquet", "--split", "test", "--batch-size", "7"))
    bare = np.load(_embed(mlp_run, tmp_path / "test.npy", "--split", "test"))
    for embedded in (npz, parquet):
        np.testing.assert_allclose(embedded.embeddings, expected, atol=1e-6)
        np.testing.assert_array_equal(embedded.rows, rows)
        np.testing.assert_array_equal(embedded.labels, run.data.y[rows])
        assert embedded.class_names == run.data.class_names and embedded.paths is None
        assert embedded.provenance == Provenance(state_dict_digest(run.model), "l2", str(mlp_run.resolve()), "digits",
                                                 "test")
    np.testing.assert_array_equal(bare, npz.embeddings)
    # The Parquet file as pandas and pyarrow read it: one row per item, the vector one float32 list column.
    frame = pd.read_parquet(tmp_path / "test.parquet")
    assert list(frame.columns) == ["row", "label", "class_name", "embedding"]
    np.testing.assert_array_equal(np.stack(frame["embedding"]), parquet.embeddings)
    meta = json.loads(pq.read_schema(tmp_path / "test.parquet").metadata[b"metricbench"])
    assert meta["model_digest"] == npz.provenance.model_digest and meta["metric"] == "l2" and meta["dim"] == 64
    # `eval --embeddings` reads both, with the same numbers.
    scores = []
    for name in ("test.npz", "test.parquet"):
        capsys.readouterr()
        assert _cli("eval", "--embeddings", tmp_path / name, "--ks", "1") == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0]["map_at_r"] == pytest.approx(scores[1]["map_at_r"], abs=1e-6)
    # Another dataset: all of it by default, in the run's preprocessing.
    other = read_embedded(_embed(mlp_run, tmp_path / "all.npz", "--dataset", "digits"))
    assert len(other.rows) == len(run.data)
    np.testing.assert_allclose(other.embeddings[rows], expected, atol=1e-6)


def test_index_and_search_give_the_neighbours_of_evaluations_search(mlp_run, tmp_path, capsys):
    assert _cli("index", mlp_run, "--out", tmp_path / "gallery", "--split", "train", "--no-progress") == 0
    info = json.loads((tmp_path / "gallery" / "index.json").read_text())
    assert {k: info[k] for k in ("metric", "dim", "index", "split", "run")} == {
        "metric": "l2", "dim": 64, "index": "flat", "split": "train", "run": str(mlp_run.resolve())}
    gallery = read_embedded(_embed(mlp_run, tmp_path / "train.npz", "--split", "train"))
    queries = read_embedded(_embed(mlp_run, tmp_path / "test.npz", "--split", "test"))
    items = pd.read_parquet(tmp_path / "gallery" / "items.parquet")
    np.testing.assert_array_equal(items["id"], np.arange(len(gallery)))
    np.testing.assert_array_equal(items["row"], gallery.rows)
    assert info["count"] == len(gallery) and info["model_digest"] == gallery.provenance.model_digest

    k = 5
    assert _cli("search", tmp_path / "gallery", "--query", "digits", "--split", "test", "-k", k,
                "--out", tmp_path / "by_spec.csv", "--no-progress") == 0
    assert _cli("search", tmp_path / "gallery", "--query", tmp_path / "test.npz", "-k", k,
                "--out", tmp_path / "by_file.csv") == 0
    by_spec, by_file = (pd.read_csv(tmp_path / name) for name in ("by_spec.csv", "by_file.csv"))
    pd.testing.assert_frame_equal(by_spec, by_file)
    assert list(by_spec.columns) == ["query_id", "query_row", "query_label", "query_class", "rank", "neighbor_id",
                                     "neighbor_row", "neighbor_label", "neighbor_class", "distance"]
    distances, indices = knn_search(queries.embeddings, gallery.embeddings, k=k)
    np.testing.assert_array_equal(by_spec["neighbor_id"].to_numpy().reshape(-1, k), indices)
    np.testing.assert_allclose(by_spec["distance"].to_numpy().reshape(-1, k), distances, rtol=1e-6)  # squared L2
    _, neighbors = retrieval_metrics_and_neighbors(gallery.embeddings, gallery.labels, ks=(1,),
                                                   query_embeddings=queries.embeddings, query_labels=queries.labels,
                                                   clustering=False, nearest=k)
    np.testing.assert_array_equal(by_spec["neighbor_id"].to_numpy().reshape(-1, k), neighbors.indices)
    np.testing.assert_array_equal(by_spec["neighbor_row"], gallery.rows[indices.reshape(-1)])
    np.testing.assert_array_equal(by_spec["query_row"], np.repeat(queries.rows, k))

    # The gallery searched with its own items finds each item first, then its leave-one-out neighbours.
    assert _cli("search", tmp_path / "gallery", "--query", tmp_path / "train.npz", "-k", k + 1,
                "--out", tmp_path / "self.json") == 0
    found = pd.DataFrame(json.loads((tmp_path / "self.json").read_text()))
    ids = found.sort_values(["query_id", "rank"])["neighbor_id"].to_numpy().reshape(-1, k + 1)
    first_is_self = ids[:, 0] == np.arange(len(gallery))
    assert first_is_self.mean() > 0.99  # all but exact duplicates
    _, loo = knn_search(gallery.embeddings, k=k)
    agree = (ids[first_is_self, 1:] == loo[first_is_self]).all(axis=1)
    assert agree.mean() > 0.99  # all but ties


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_each_index_kind_searches_as_knn_search(tmp_path, metric, kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 2000)
    provenance = Provenance("d" * 64, metric, str(tmp_path), "npz:x", "all")
    gallery = EmbeddedSet(x[:1500], np.arange(1500), labels[:1500], tuple("abcde"), None, provenance)
    queries = EmbeddedSet(x[1500:], np.arange(1500, 2000), labels[1500:], tuple("abcde"), None, provenance)
    assert write_index_dir(gallery, tmp_path / "index", index=kind)["index"] == kind
    results = search_index_dir(read_index_dir(tmp_path / "index"), queries, k=4, threshold=0.5)
    values, indices = knn_search(queries.embeddings, gallery.embeddings, k=4, metric=metric, index=kind)
    np.testing.assert_array_equal(results["neighbor_id"].to_numpy().reshape(-1, 4), indices)
    expected = values if metric == "l2" else 1 - values.astype(np.float64)  # cosine: 1 - similarity
    np.testing.assert_allclose(results["distance"].to_numpy().reshape(-1, 4), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(results["same_class"], results["distance"] <= 0.5)


def test_same_class_column_from_the_runs_verification_threshold(mlp_run, tmp_path):
    run = shutil.copytree(mlp_run, tmp_path / "run")
    assert _cli("index", run, "--out", tmp_path / "gallery", "--split", "train", "--no-progress") == 0
    RunDir(run).verification.write_text(json.dumps({"metric": "l2", "threshold": 0.5}))
    assert _cli("search", tmp_path / "gallery", "--query", "digits", "--split", "test", "-k", 3,
                "--out", tmp_path / "hits.csv", "--no-progress") == 0
    hits = pd.read_csv(tmp_path / "hits.csv")
    np.testing.assert_array_equal(hits["same_class"], hits["distance"] <= 0.5)
    assert 0 < hits["same_class"].mean() < 1


def _onnx_and_torchscript_agree(run_dir, tmp_path):
    import onnxruntime

    model = load_run(run_dir, device="cpu", features=False).model
    shape = load_run(run_dir, device="cpu", features=False).inputs.input_shape
    assert _cli("export-model", run_dir, "--format", "onnx", "--out", tmp_path / "model.onnx") == 0
    assert _cli("export-model", run_dir, "--format", "torchscript", "--out", tmp_path / "model.pt") == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated
        scripted = torch.jit.load(tmp_path / "model.pt")
    torch.manual_seed(0)
    diffs = []
    for batch in (5, 3, 1):  # the batch axis is dynamic
        x = torch.rand(batch, *shape)
        with torch.no_grad():
            expected = model(x).numpy()
            diffs.append(np.abs(scripted(x).numpy() - expected).max())
        (onnx_out,) = session.run(None, {"x": x.numpy()})
        assert onnx_out.shape == expected.shape
        diffs.append(np.abs(onnx_out - expected).max())
    assert max(diffs) <= 1e-5, diffs
    contract = json.loads((tmp_path / "model.onnx.json").read_text())
    assert contract["input"]["shape"] == ["batch", *shape] and contract["input"]["dtype"] == "float32"
    assert contract["model_digest"] == state_dict_digest(model) and contract["metric"] == "l2"
    np.testing.assert_allclose(contract["standardization"]["mean"], model.mean.flatten().numpy())
    return contract


def test_export_mlp_and_cnn_runs(mlp_run, cnn_run, tmp_path):
    for name, run in (("mlp", mlp_run), ("cnn", cnn_run)):
        (tmp_path / name).mkdir()
        contract = _onnx_and_torchscript_agree(run, tmp_path / name)
        assert contract["input"]["kind"] == "images" and contract["input"]["value_range"] == [0.0, 1.0]


@pytest.mark.slow
def test_frozen_backbone_run_exports_and_embeds_new_photos_through_its_whole_model(frozen_run, tmp_path):
    contract = _onnx_and_torchscript_agree(frozen_run, tmp_path)
    assert contract["input"]["kind"] == "photos" and contract["input"]["image_size"] == [32, 32]
    assert contract["input"]["channels"] == 3
    # Its own test split, through the trunk: what its cached features and head gave at the end of training.
    own = read_embedded(_embed(frozen_run, tmp_path / "own.npz", "--split", "test"))
    exported = np.loadtxt(RunDir(frozen_run).export / "vectors.tsv", delimiter="\t")
    np.testing.assert_allclose(own.embeddings, exported, atol=1e-5)
    # New photos in a folder: decoded with the run's eval transform, embedded by the whole model.
    for k in range(4):
        write_jpeg(tmp_path / "new" / ("a" if k < 2 else "b") / f"{k}.jpg", (40, 30), seed=100 + k)
    new = read_embedded(_embed(frozen_run, tmp_path / "new.parquet", "--dataset", f"folder:{tmp_path / 'new'}"))
    assert new.embeddings.shape == (4, 64) and np.isfinite(new.embeddings).all()
    assert [p.rsplit("/", 2)[-2:] for p in new.paths] == [["a", "0.jpg"], ["a", "1.jpg"], ["b", "2.jpg"], ["b", "3.jpg"]]
    run = load_run(frozen_run, features=False)
    from metricbench.data import load_dataset
    from metricbench.data.image_loading import load_images

    images = next(load_images(load_dataset(f"folder:{tmp_path / 'new'}"), np.arange(4), run.inputs.transform))
    with torch.no_grad():
        np.testing.assert_allclose(new.embeddings, run.model(images).numpy(), atol=1e-5)


def _fails(capsys, args, message, *absent):
    capsys.readouterr()
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    for path in absent:
        assert not path.exists(), path


def test_bad_input_is_refused_with_one_line_and_nothing_written(mlp_run, cnn_run, tmp_path, capsys):
    out = tmp_path / "out.npz"
    # A run that has no checkpoint yet.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.toml", "split.npz"):
        shutil.copy(mlp_run / name, bare / name)
    _fails(capsys, ["embed", bare, "--out", out], "has no checkpoint.pt", out)
    # A dataset the model cannot take, a bad suffix.
    _fails(capsys, ["embed", mlp_run, "--dataset", "mnist5k", "--out", out],
           "has samples of shape (1, 28, 28), but the run's model takes (1, 8, 8)", out)
    _fails(capsys, ["embed", mlp_run, "--out", tmp_path / "out.txt"], "--out must end in .npy, .npz, .parquet")
    # An existing output: refused unless --overwrite.
    out.write_bytes(b"mine")
    _fails(capsys, ["embed", mlp_run, "--out", out], "already exists; pass --overwrite")
    assert out.read_bytes() == b"mine"
    assert _cli("embed", mlp_run, "--out", out, "--split", "test", "--overwrite", "--no-progress") == 0
    queries = read_embedded(out)

    index = tmp_path / "gallery"
    assert _cli("index", mlp_run, "--out", index, "--split", "train", "--no-progress") == 0
    _fails(capsys, ["index", mlp_run, "--out", index], "already exists; pass --overwrite")
    hits = tmp_path / "hits.csv"
    # Queries of the wrong shape, of another model, for another metric; a bare .npy; a missing index.
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**dict(np.load(out)), "embeddings": queries.embeddings[:, :32]})
    _fails(capsys, ["search", index, "--query", wrong, "--out", hits], "is a query of the wrong shape", hits)
    other = _embed(cnn_run, tmp_path / "cnn.npz", "--split", "test")
    _fails(capsys, ["search", index, "--query", other, "--out", hits], "embed the queries with the index's run", hits)
    cosine = tmp_path / "cosine.npz"
    np.savez(cosine, **{**dict(np.load(out)), "metric": np.array("cosine")})
    _fails(capsys, ["search", index, "--query", cosine, "--out", hits], "was embedded for metric 'cosine'", hits)
    _fails(capsys, ["search", index, "--query", _embed(mlp_run, tmp_path / "q.npy"), "--out", hits],
           "no record of the model", hits)
    _fails(capsys, ["search", tmp_path / "nowhere", "--query", out, "--out", hits], "does not exist", hits)
    _fails(capsys, ["search", index, "--query", out, "--split", "test", "--out", hits], "--split applies to a dataset",
           hits)
    _fails(capsys, ["search", index, "--query", out, "-k", 0, "--out", hits], "-k must be in [1, ", hits)
    # An index whose run has been retrained since: its model digest no longer matches.
    run = shutil.copytree(mlp_run, tmp_path / "run")
    assert _cli("index", run, "--out", tmp_path / "stale", "--split", "train", "--no-progress") == 0
    state = load_checkpoint(RunDir(run).checkpoint)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, RunDir(run).checkpoint)
    _fails(capsys, ["search", tmp_path / "stale", "--query", "digits", "--out", hits], "now holds model", hits)
    # Export: an existing file, or its .json, is refused.
    model = tmp_path / "m.onnx"
    model.with_name("m.onnx.json").write_text("{}")
    _fails(capsys, ["export-model", mlp_run, "--format", "onnx", "--out", model], "m.onnx.json' already exists", model)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file or folder left


def test_index_overwrite_replaces_the_directory_whole(mlp_run, tmp_path):
    index = tmp_path / "gallery"
    assert _cli("index", mlp_run, "--out", index, "--split", "val", "--no-progress") == 0
    (index / "stale.txt").write_text("old")
    assert _cli("index", mlp_run, "--out", index, "--split", "test", "--index", "hnsw", "--overwrite",
                "--no-progress") == 0
    assert sorted(p.name for p in index.iterdir()) == ["index.faiss", "index.json", "items.parquet"]
    assert json.loads((index / "index.json").read_text())["index"] == "hnsw"
    assert [p.name for p in tmp_path.iterdir()] == ["gallery"]
