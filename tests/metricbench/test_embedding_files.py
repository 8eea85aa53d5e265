"""Tests for load_embeddings (`metricbench eval --embeddings`): errors name --embeddings and --labels."""

import numpy as np
import pandas as pd
import pytest

from metricbench.embedding_files import load_embeddings

X = np.arange(12, dtype=np.float32).reshape(6, 2)
Y = np.array([0, 1, 2, 0, 1, 2])


def test_npy_npz_and_table_read_the_same(tmp_path):
    np.save(tmp_path / "e.npy", X)
    np.save(tmp_path / "l.npy", Y)
    np.savez(tmp_path / "e.npz", x=X, y=Y)
    pd.DataFrame(X, columns=["a", "b"]).assign(label=Y).to_csv(tmp_path / "e.csv", index=False)
    for data in (load_embeddings(tmp_path / "e.npy", tmp_path / "l.npy"), load_embeddings(tmp_path / "e.npz"),
                 load_embeddings(tmp_path / "e.csv")):
        np.testing.assert_array_equal(data.x, X)
        np.testing.assert_array_equal(data.y, Y)


@pytest.mark.parametrize("which", ["--embeddings", "--labels"])
def test_empty_npy(tmp_path, which):
    np.save(tmp_path / "e.npy", X)
    np.save(tmp_path / "l.npy", Y)
    (tmp_path / ("e.npy" if which == "--embeddings" else "l.npy")).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^{which} '.*' is empty \(0 bytes\); expected a .npy array"):
        load_embeddings(tmp_path / "e.npy", tmp_path / "l.npy")


def test_nan_embeddings_and_short_labels_name_the_argument(tmp_path):
    x = X.copy()
    x[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    np.save(tmp_path / "e.npy", X)
    np.save(tmp_path / "l.npy", Y)
    np.save(tmp_path / "short.npy", Y[:5])
    with pytest.raises(ValueError, match=r"^--embeddings must be finite, got 1 NaN/Inf .*first in row 4"):
        load_embeddings(tmp_path / "nan.npy", tmp_path / "l.npy")
    with pytest.raises(ValueError, match=r"^--embeddings and --labels must have the same number of rows, .*"
                                         r"--labels \(5,\)"):
        load_embeddings(tmp_path / "e.npy", tmp_path / "short.npy")
    np.savez(tmp_path / "nan.npz", embeddings=x, labels=Y)
    with pytest.raises(ValueError, match="^--embeddings array 'embeddings' must be finite"):
        load_embeddings(tmp_path / "nan.npz")


def test_argument_errors(tmp_path):
    np.savez(tmp_path / "e.npz", x=X, y=Y)
    np.savez(tmp_path / "wrong.npz", emb=X, y=Y)
    with pytest.raises(ValueError, match="--labels applies only to a .npy --embeddings file"):
        load_embeddings(tmp_path / "e.npz", tmp_path / "l.npy")
    with pytest.raises(ValueError, match=r"wrong.npz' is missing arrays .*\(or x, y\); found: emb, y"):
        load_embeddings(tmp_path / "wrong.npz")
    with pytest.raises(FileNotFoundError, match="^--embeddings '.*nope.csv' does not exist"):
        load_embeddings(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="--embeddings must be .npy, .npz, .parquet or .csv"):
        load_embeddings(tmp_path / "e.txt")
