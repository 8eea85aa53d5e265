"""A gallery's FAISS index saved to disk and searched later gives `knn_search`'s neighbours and distances."""

import numpy as np
import pytest

from metricbench.eval import (build_saved_index, index_from_bytes, index_kind, index_to_bytes, knn_search,
                              knn_search_index)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3000, 16)).astype(np.float32), rng.normal(size=(200, 16))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_saved_index_searches_as_knn_search(data, metric, kind):
    gallery, queries = data
    saved = build_saved_index(gallery, metric=metric, index=kind)
    index = index_from_bytes(index_to_bytes(saved))
    assert index_kind(index) == kind and index.ntotal == 3000 and index.d == 16
    for k in (1, 10, 100):  # the approximate indexes are tuned for each k, as when knn_search builds them
        distances, indices = knn_search_index(index, queries, k=k, metric=metric)
        expected_distances, expected_indices = knn_search(queries, gallery, k=k, metric=metric, index=kind)
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_array_equal(distances, expected_distances)


def test_auto_is_evaluations_choice(data):
    assert index_kind(build_saved_index(data[0], metric="l2")) == "flat"  # exact up to AUTO_EXACT_MAX_GALLERY


def test_bad_input(data):
    gallery, queries = data
    index = build_saved_index(gallery, metric="l2", index="flat")
    with pytest.raises(ValueError, match=r"queries must have dim 16 like the index, got shape \(200, 8\)"):
        knn_search_index(index, queries[:, :8], k=1, metric="l2")
    with pytest.raises(ValueError, match="metric must be the index's, 'l2', got 'cosine'"):
        knn_search_index(index, queries, k=1, metric="cosine")
    with pytest.raises(ValueError, match=r"k must be in \[1, 3000\], got 3001"):
        knn_search_index(index, queries, k=3001, metric="l2")
    with pytest.raises(ValueError, match="saved.faiss is not a readable FAISS index"):
        index_from_bytes(b"not an index at all", what="saved.faiss")
    with pytest.raises(ValueError, match="index must be one of"):
        build_saved_index(gallery, metric="l2", index="lsh")
