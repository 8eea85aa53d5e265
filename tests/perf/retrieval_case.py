"""One retrieval-evaluation case in a fresh process (for its peak memory), printing JSON.

Usage: python tests/perf/retrieval_case.py IMPL N [QUERIES]
  IMPL: ours (retrieval_metrics' default suite) | pml (AccuracyCalculator's default suite, k="max_bin_count")
        | faiss (bare IndexFlatL2 search for the k that PML's suite uses)
  N: points (leave-one-out), or gallery rows when QUERIES is given (a separate query set).
Data: 100 Gaussian classes in D = 128 that overlap (P@1 ~0.8, MAP@R ~0.17), seeded.
Prints {"seconds", "peak_mb_before", "peak_mb_after", ...}; "search_seconds" for ours (time spent
inside the neighbour search); {"error": ...} when the process exceeds its address-space limit.
"""

import json
import resource
import sys
import time

import numpy as np

from memory import peak_mb, reset_peak

D, CLASSES, SEED = 128, 100, 0
LIMIT = 14 * 2**30  # address space; the machine has 24 GiB and other work may be running


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(SEED).standard_normal((CLASSES, D)).astype(np.float32)
    labels = rng.integers(0, CLASSES, n)
    x = centers[labels] * 0.5 + rng.standard_normal((n, D), dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), labels


def run_ours(x, y, q, qy) -> dict:
    import metricbench.eval.retrieval_suite as suite

    searched = {"seconds": 0.0}
    search = getattr(suite.knn_search_chunks, "untimed", suite.knn_search_chunks)

    def timed_search(*args, **kwargs):  # time spent producing neighbours, apart from reducing them
        start = time.perf_counter()
        count, chunks = search(*args, **kwargs)
        searched["seconds"] += time.perf_counter() - start

        def timed():
            while True:
                start = time.perf_counter()
                chunk = next(chunks, None)
                searched["seconds"] += time.perf_counter() - start
                if chunk is None:
                    return
                yield chunk

        return count, timed()

    timed_search.untimed = search
    suite.knn_search_chunks = timed_search
    start = time.perf_counter()
    metrics = suite.retrieval_metrics(x, y, query_embeddings=q, query_labels=qy)
    return {"seconds": time.perf_counter() - start, "search_seconds": searched["seconds"], "metrics": metrics}


def run_pml(x, y, q, qy) -> dict:
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calculator = AccuracyCalculator(k="max_bin_count", device=torch.device("cpu"))
    start = time.perf_counter()
    if q is None:
        metrics = calculator.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
    else:
        metrics = calculator.get_accuracy(
            torch.from_numpy(q), torch.from_numpy(qy), torch.from_numpy(x), torch.from_numpy(y), False
        )
    return {"seconds": time.perf_counter() - start, "metrics": metrics}


def run_faiss(x, y, q, qy) -> dict:
    import faiss

    k = int(np.bincount(y).max())  # PML's search: max_bin_count - 1 neighbours, + 1 for the query itself
    start = time.perf_counter()
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    index.search(x if q is None else q, k)
    return {"seconds": time.perf_counter() - start, "k": k}


def main(impl: str, n: int, queries: int | None) -> None:
    x, y = data(n, SEED)
    q, qy = data(queries, SEED + 1) if queries else (None, None)
    run = {"ours": run_ours, "pml": run_pml, "faiss": run_faiss}[impl]
    if impl in ("ours", "pml"):  # imports, FAISS and the compiled kernels load before the peak reset
        small_x, small_y = data(2000, SEED + 2)
        warm = run(small_x, small_y, None, None)
        assert warm["seconds"] > 0
    before = reset_peak()
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    try:
        out = run(x, y, q, qy)
    except (MemoryError, RuntimeError) as err:
        print(json.dumps({"error": f"out of memory under a {LIMIT // 2**30} GiB address-space limit ({type(err).__name__})"}))
        return
    out.update(peak_mb_before=before, peak_mb_after=peak_mb())
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
