"""knn_search against brute-force numpy distances, leave-one-out rules, chunking, indexes and errors."""

import concurrent.futures
import doctest

import faiss
import numpy as np
import pytest
import torch

import metricbench.eval.candidate_lists as candidate_lists
import metricbench.eval.exact_knn as exact_knn
import metricbench.eval.indexes as indexes
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


# --- The exact CPU search's machinery: sampled limits, symmetric tiles, compactions, retries ---------------


def _clustered(n, dim, seed, classes=8):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 2
    return (centers[rng.integers(0, classes, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def _exact_reference(queries, gallery, k, metric):
    """(distances, indices) by brute force: float64 scores, self excluded when gallery is None, stable order."""
    full = _brute_force(queries, queries if gallery is None else gallery, metric)
    if gallery is None:
        np.fill_diagonal(full, np.inf if metric == "l2" else -np.inf)
    order = np.argsort(full if metric == "l2" else -full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, order, axis=1), order


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 16 rows and a gallery sample even for small sets, so tests cross every code path."""
    monkeypatch.setattr(exact_knn, "_TILE", 16)
    monkeypatch.setattr(exact_knn, "_SAMPLE_MAX_FRACTION", 0.5)
    monkeypatch.setattr(exact_knn, "_SAMPLE_HITS", 16)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("leave_one_out", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 7, 40])
def test_tiled_symmetric_search_matches_brute_force(small_tiles, metric, leave_one_out, chunk_size):
    x = _clustered(150, 6, seed=10)
    gallery = None if leave_one_out else _clustered(130, 6, seed=11)
    distances, indices = knn_search(x, gallery, k=12, metric=metric, chunk_size=chunk_size)
    expected_distances, expected_indices = _exact_reference(x, gallery, 12, metric)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-4)


def test_limits_are_set_from_the_sample_and_bound_the_kth_distance(small_tiles):
    x = _clustered(400, 5, seed=12)
    left, right = exact_knn._operands(x, "l2")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        limits = exact_knn._sample_limits(left, right, 20, True, 0, exact_knn._Workers(pool, 2))
    kth = _exact_reference(x, None, 20, "l2")[0][:, -1]
    assert np.isfinite(limits).all()
    assert np.mean(limits > kth) > 0.9  # an estimate: almost always above the k-th distance


@pytest.mark.parametrize("leave_one_out", [True, False])
def test_rows_whose_sampled_limit_is_too_tight_are_searched_again(small_tiles, monkeypatch, leave_one_out):
    monkeypatch.setattr(exact_knn, "_SAMPLE_SIGMAS", -3.0)  # limits far below the k-th distance
    x = _clustered(200, 5, seed=13)
    gallery = None if leave_one_out else _clustered(180, 5, seed=14)
    _, indices = knn_search(x, gallery, k=15)
    np.testing.assert_array_equal(indices, _exact_reference(x, gallery, 15, "l2")[1])


def test_full_candidate_lists_compact_to_the_k_smallest(small_tiles, monkeypatch):
    monkeypatch.setattr(candidate_lists, "capacity", lambda k: k + 16)  # compact after every strip
    monkeypatch.setattr(exact_knn, "capacity", lambda k: k + 16)
    x = _clustered(300, 4, seed=15)
    for gallery in (None, _clustered(250, 4, seed=16)):
        _, indices = knn_search(x, gallery, k=25)
        np.testing.assert_array_equal(indices, _exact_reference(x, gallery, 25, "l2")[1])


def test_candidate_lists_keep_the_k_smallest_sorted():
    rng = np.random.default_rng(17)
    tile = rng.standard_normal((40, 300)).astype(np.float32)
    lists = candidate_lists.CandidateLists(np.full(80, np.inf, dtype=np.float32), k=9)
    lists.offer_rows(tile[:, :150], row0=0, col0=0)
    lists.offer_rows(tile[:, 150:], row0=0, col0=150)
    lists.offer_columns(np.ascontiguousarray(tile.T), row0=40, col0=0)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        values, ids = lists.finish(pool, 2)
    expected = np.argsort(tile, axis=1, kind="stable")[:, :9]
    np.testing.assert_array_equal(ids[:40], expected)
    np.testing.assert_array_equal(ids[40:], expected)
    np.testing.assert_array_equal(values[:40], np.take_along_axis(tile, expected, axis=1))
    # With exact ties at the k-th distance any of the tied items may be kept.
    ties = rng.integers(0, 6, size=(40, 300)).astype(np.float32)
    lists = candidate_lists.CandidateLists(np.full(40, np.inf, dtype=np.float32), k=9)
    lists.offer_rows(ties, row0=0, col0=0)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        values, ids = lists.finish(pool, 2)
    np.testing.assert_array_equal(values, np.sort(ties, axis=1)[:, :9])
    np.testing.assert_array_equal(values, np.take_along_axis(ties, ids, axis=1))
    assert all(len(set(row)) == 9 for row in ids.tolist())


def test_candidate_lists_report_missing_neighbours():
    lists = candidate_lists.CandidateLists(np.array([0.5, np.inf], dtype=np.float32), k=3)
    lists.offer_rows(np.array([[0.1, 0.9, 0.2, 0.7], [0.3, np.nan, np.inf, 0.4]], dtype=np.float32), 0, 0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        values, ids = lists.finish(pool, 1)
    np.testing.assert_array_equal(ids, [[0, 2, -1], [0, 3, -1]])
    np.testing.assert_array_equal(values[:, -1], [np.inf, np.inf])


def test_symmetric_rounds_cover_each_tile_once_with_disjoint_blocks():
    for blocks in range(1, 9):
        rounds = exact_knn._symmetric_rounds(blocks)
        tiles = [tile for round_ in rounds for tile in round_]
        assert sorted(tiles) == [(i, j) for i in range(blocks) for j in range(i, blocks)]
        for round_ in rounds:
            used = [block for tile in round_ for block in set(tile)]
            assert len(used) == len(set(used))


# --- Approximate indexes, "auto", GPUs -------------------------------------------------------------------


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_approximate_indexes_find_most_exact_neighbours_and_never_the_query_itself(index, metric):
    x = _clustered(3000, 16, seed=18, classes=20)
    distances, indices = knn_search(x, k=10, metric=metric, index=index)
    assert indices.shape == distances.shape == (3000, 10)
    assert not (indices == np.arange(3000)[:, None]).any()
    _, exact = knn_search(x, k=10, metric=metric)
    overlap = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(indices, exact)])
    assert overlap > 0.9
    found = indices >= 0
    order = np.diff(np.where(found, distances, distances[:, :1]), axis=1)
    assert (order >= -1e-5).all() if metric == "l2" else (order <= 1e-5).all()


def test_ivf_parameters_follow_the_gallery_size():
    assert indexes.ivf_nlist(1_000_000) == 4000
    assert indexes.ivf_nlist(1000) == 1000 // 39  # at least 39 training points per list
    assert indexes.ivf_nprobe(4000, 1_000_000, k=10) == 500
    assert indexes.ivf_nprobe(4000, 1_000_000, k=10_000) == 32 * 10_000 // 250  # enough lists for ~32·k items
    assert indexes.ivf_nprobe(100, 1_000_000, k=1_000_000) == 100
    index = indexes.build_index(_clustered(2000, 8, seed=19), "l2", "ivf", k=5)
    assert index.nlist == indexes.ivf_nlist(2000) and index.nprobe == indexes.ivf_nprobe(index.nlist, 2000, 5)
    hnsw = indexes.build_index(_clustered(500, 8, seed=19), "cosine", "hnsw", k=100)
    assert hnsw.hnsw.efSearch >= 100 and hnsw.metric_type == faiss.METRIC_INNER_PRODUCT


def test_approximate_index_pads_missing_neighbours_with_minus_one(monkeypatch):
    monkeypatch.setattr(indexes, "ivf_nprobe", lambda nlist, size, k: 1)  # one list may hold < k items
    x = _clustered(400, 4, seed=20)
    distances, indices = knn_search(x[:50], x, k=200, index="ivf")
    missing = indices < 0
    assert missing.any()
    assert np.isinf(distances[missing]).all() and np.isfinite(distances[~missing]).all()


def test_auto_is_exact_up_to_the_documented_gallery_size(monkeypatch):
    assert indexes.resolve_index("auto", indexes.AUTO_EXACT_MAX_GALLERY) == "flat"
    assert indexes.resolve_index("auto", indexes.AUTO_EXACT_MAX_GALLERY + 1) == "ivf"
    assert indexes.resolve_index("hnsw", 10) == "hnsw"
    built = []
    monkeypatch.setattr(indexes, "AUTO_EXACT_MAX_GALLERY", 100)
    original = knn_module.build_index
    monkeypatch.setattr(knn_module, "build_index", lambda *a, **kw: built.append(a[2]) or original(*a, **kw))
    x = _clustered(2000, 4, seed=21)
    knn_search(x[:100], k=3, index="auto")
    knn_search(x, k=3, index="auto")
    assert built == ["ivf"]


def test_gpu_path_is_taken_when_faiss_reports_gpus(monkeypatch):
    cloned = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", lambda index: cloned.append(index) or index, raising=False)
    x = _clustered(300, 4, seed=22)
    distances, indices = knn_search(x, k=5)  # exact on the "GPU": a FAISS flat index
    assert len(cloned) == 1 and isinstance(cloned[0], faiss.IndexFlat)
    np.testing.assert_array_equal(indices, _exact_reference(x, None, 5, "l2")[1])
    knn_search(x, k=5, index="ivf")
    assert isinstance(cloned[1], faiss.IndexIVFFlat)
    knn_search(x, k=5, index="hnsw")  # FAISS has no GPU HNSW
    assert len(cloned) == 2
    _, big_k = knn_search(x[:3], np.tile(x, (8, 1)), k=indexes.GPU_MAX_K + 1)  # beyond the GPU's k: CPU
    assert len(cloned) == 2 and big_k.shape == (3, indexes.GPU_MAX_K + 1)


def test_faiss_without_gpu_support_counts_no_gpus(monkeypatch):
    monkeypatch.delattr(faiss, "get_num_gpus", raising=False)
    assert indexes.gpu_count() == 0
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    assert indexes.gpu_count() == 0


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"index": "annoy"}, ValueError, "index must be one of"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_index_and_seed_errors_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        knn_search(np.zeros((5, 2)), k=1, **kwargs)


def test_module_doctests():
    for module in (exact_knn, indexes, candidate_lists):
        result = doctest.testmod(module)
        assert result.failed == 0
