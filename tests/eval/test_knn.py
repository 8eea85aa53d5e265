"""knn_search against brute-force numpy distances, leave-one-out rules, chunking and errors."""

import doctest

import numpy as np
import pytest
import torch

import metricbench.eval.knn as knn_module
from metricbench.eval import knn_search


def _brute_force(queries, gallery, metric):
    """(Nq, Ng) float64 squared L2 distances, or cosine similarities."""
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return q @ g.T
    return ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)


def _check_against_brute_force(distances, indices, full, metric, k):
    """Returned values equal brute force at the returned indices and are the k best (robust to ties)."""
    rows = np.arange(full.shape[0])[:, None]
    np.testing.assert_allclose(distances, full[rows, indices], rtol=1e-4, atol=1e-4)
    best = np.sort(full, axis=1)[:, :k] if metric == "l2" else -np.sort(-full, axis=1)[:, :k]
    np.testing.assert_allclose(distances, best, rtol=1e-4, atol=1e-4)
    assert all(len(set(row)) == k for row in indices.tolist())


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_query_gallery_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    queries, gallery = rng.standard_normal((60, 12)), rng.standard_normal((150, 12))
    distances, indices = knn_search(queries, gallery, k=7, metric=metric)
    assert distances.shape == indices.shape == (60, 7)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    full = _brute_force(queries, gallery, metric)
    _check_against_brute_force(distances, indices, full, metric, 7)
    order = np.diff(distances, axis=1)
    assert (order >= 0).all() if metric == "l2" else (order <= 0).all()


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_leave_one_out_matches_brute_force_without_self(metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((120, 8)).astype(np.float32)
    distances, indices = knn_search(x, k=5, metric=metric)
    assert not (indices == np.arange(120)[:, None]).any()
    full = _brute_force(x, x, metric)
    np.fill_diagonal(full, np.inf if metric == "l2" else -np.inf)
    _check_against_brute_force(distances, indices, full, metric, 5)


def test_leave_one_out_keeps_exact_duplicates_as_neighbours():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((30, 4))
    x = np.concatenate([base, base])  # row i and row i + 30 are the same point
    distances, indices = knn_search(x, k=3)
    twin = (np.arange(60) + 30) % 60
    np.testing.assert_array_equal(indices[:, 0], twin)
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-5)
    assert not (indices == np.arange(60)[:, None]).any()


def test_leave_one_out_all_identical_points_drops_last_column_when_self_is_missing():
    # Every distance ties at 0, so FAISS need not return a query among its own k + 1 results.
    x = np.ones((10, 3), dtype=np.float32)
    distances, indices = knn_search(x, k=4)
    assert indices.shape == (10, 4)
    assert not (indices == np.arange(10)[:, None]).any()
    assert all(len(set(row)) == 4 for row in indices.tolist())
    np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_drop_self_falls_back_to_last_column():
    indices = np.array([[3, 0, 5], [7, 8, 9]])  # row 0 (query 0) holds itself; row 1 (query 1) does not
    distances = np.array([[0.0, 0.1, 0.2], [1.0, 2.0, 3.0]], dtype=np.float32)
    kept_distances, kept_indices = knn_module._drop_self(distances, indices, first_row=0)
    np.testing.assert_array_equal(kept_indices, [[3, 5], [7, 8]])
    np.testing.assert_array_equal(kept_distances, np.array([[0.0, 0.2], [1.0, 2.0]], dtype=np.float32))


@pytest.mark.parametrize("gallery_size", [None, 90])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_tiny_chunks_give_the_same_result_as_one_chunk(gallery_size, metric):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((70, 6)).astype(np.float32)
    gallery = None if gallery_size is None else rng.standard_normal((gallery_size, 6)).astype(np.float32)
    whole = knn_search(x, gallery, k=6, metric=metric, chunk_size=70)
    for chunk_size in (1, 3, 64):
        chunked = knn_search(x, gallery, k=6, metric=metric, chunk_size=chunk_size)
        np.testing.assert_array_equal(chunked[1], whole[1])
        np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-5, atol=1e-5)


def test_chunks_cover_consecutive_rows_and_validate_before_searching():
    x = np.random.default_rng(8).standard_normal((25, 3))
    num_queries, chunks = knn_module.knn_search_chunks(x, k=2, chunk_size=10)
    pieces = list(chunks)
    assert num_queries == 25 and [start for start, _, _ in pieces] == [0, 10, 20]
    assert [len(indices) for _, _, indices in pieces] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([i for _, _, i in pieces]), knn_search(x, k=2)[1])
    with pytest.raises(ValueError, match="k must be in"):
        knn_module.knn_search_chunks(x, k=25)  # raised on the call, not on first iteration


def test_default_chunk_size_bounds_memory():
    assert knn_module._chunk_size(10) > 1000
    per_query_bytes = knn_module._CHUNK_BUDGET_BYTES / knn_module._chunk_size(100_000)
    assert per_query_bytes >= 100_000 * 12  # at least one (k) row of float32 + int64 per query
    assert knn_module._chunk_size(10**9) == 1


def test_torch_input_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    from_numpy = knn_search(x, k=3)
    from_torch = knn_search(torch.from_numpy(x).requires_grad_(True), k=3)
    np.testing.assert_array_equal(from_torch[1], from_numpy[1])
    np.testing.assert_array_equal(from_torch[0], from_numpy[0])
    half = knn_search(torch.from_numpy(x).to(torch.bfloat16), torch.from_numpy(x).double(), k=1)
    assert half[1].shape == (40, 1)


def test_k_equal_to_available_neighbours_is_allowed():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    _, indices = knn_search(x, k=5)
    assert sorted(indices[2].tolist()) == [0, 1, 3, 4, 5]
    _, indices = knn_search(x[:2], x, k=6)
    assert sorted(indices[0].tolist()) == list(range(6))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x: knn_search(x, k=10), ValueError, "k must be in [1, 9]"),
        (lambda x: knn_search(x, x[:4], k=5), ValueError, "k must be in [1, 4]"),
        (lambda x: knn_search(x, k=0), ValueError, "k must be in"),
        (lambda x: knn_search(x, k=2.0), TypeError, "k must be an int"),
        (lambda x: knn_search(x, np.zeros((5, 3)), k=1), ValueError, "same dim"),
        (lambda x: knn_search(x[0], k=1), ValueError, "queries must have shape"),
        (lambda x: knn_search(x, k=1, metric="dot"), ValueError, "metric must be one of"),
        (lambda x: knn_search(x, k=1, chunk_size=0), ValueError, "chunk_size must be >= 1"),
        (lambda x: knn_search(x.astype(str), k=1), TypeError, "queries must hold real numbers"),
        (lambda x: knn_search(x, x * 1e39, k=1), ValueError, "gallery must be finite"),
    ],
)
def test_errors_name_the_argument(call, error, words):
    x = np.random.default_rng(5).standard_normal((10, 2))
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        call(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_rejected_with_their_row(bad):
    x = np.zeros((6, 3))
    x[4, 1] = bad
    with pytest.raises(ValueError, match="queries must be finite.*row 4"):
        knn_search(x, k=1)
    with pytest.raises(ValueError, match="gallery must be finite.*row 4"):
        knn_search(np.zeros((2, 3)), x, k=1)


def test_cosine_is_scale_free_even_near_float32_limits():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    reference = knn_search(x, k=3, metric="cosine")
    for scale in (1e-30, 1e30):
        scaled = knn_search(x * np.float32(scale), k=3, metric="cosine")
        np.testing.assert_array_equal(scaled[1], reference[1])
        np.testing.assert_allclose(scaled[0], reference[0], atol=1e-6)


def test_zero_vector_has_cosine_similarity_zero():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    distances, indices = knn_search(x[:1], x[1:], k=2, metric="cosine")
    np.testing.assert_array_equal(distances, [[0.0, 0.0]])


def test_squared_distance_overflow_is_an_error_not_garbage():
    x = np.random.default_rng(7).standard_normal((8, 3)) * 1e20  # finite in float32, squares are not
    with pytest.raises(ValueError, match="overflow float32"):
        knn_search(x, k=2)


def test_doctests():
    result = doctest.testmod(knn_module)
    assert result.attempted > 0 and result.failed == 0
