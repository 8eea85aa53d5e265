"""Per-query candidate lists that keep the k smallest distances offered to them, tile by tile.

This is FAISS's reservoir result handler, run over distance tiles that `exact_knn.py` computes
itself: each query keeps the (distance, id) pairs below its limit in a list of `k + spare` slots;
when the list is full it keeps its k smallest (a quickselect) and its limit drops to the largest of
them. The loops are compiled with numba (installed with umap-learn, pinned in requirements.lock): a
vectorised count over 16 distances at a time skips almost every tile element, and only the few under
a query's limit are appended. (Numpy glue around the same idea cost ~50 ns per accepted distance,
more than computing the distance.) The kernels are serial and release the GIL, so that callers can
run them on several threads at once, for different queries.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["CandidateLists", "capacity"]

# Spare slots per query beyond k: max(_SPARE_MIN, _SPARE_PER_K * k).
_SPARE_MIN, _SPARE_PER_K = 64, 0.5
# Distances screened per step (a vectorised count) before the few under the limit are appended.
_STRIP = 16


def capacity(k: int) -> int:
    """Slots per query list: k plus the spare that makes compactions rare."""
    return k + max(_SPARE_MIN, math.ceil(_SPARE_PER_K * k))


@numba.njit(cache=True, nogil=True)
def _keep_smallest(values, ids, count, k):  # pragma: no cover - compiled
    """Quickselect: move the k smallest of values[:count] (ids alongside) to the front; return their max."""
    lo, hi = 0, count - 1
    while lo < hi:
        a, b, c = values[lo], values[(lo + hi) >> 1], values[hi]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                ids[i], ids[j] = ids[j], ids[i]
                i += 1
                j -= 1
        if k - 1 <= j:
            hi = j
        elif k - 1 >= i:
            lo = i
        else:
            break
    return values[:k].max()


@numba.njit(cache=True, nogil=True, inline="always")
def _keep(kept, kept_ids, count, limit, value, item):  # pragma: no cover - compiled
    """Branch-free append to a list with a free slot: written always, kept if under the limit."""
    kept[count] = value
    kept_ids[count] = item
    return count + (value < limit)


@numba.njit(cache=True, nogil=True)
def _offer_rows(tile, r0, r1, row0, col0, limits, values, ids, fill, k):  # pragma: no cover - compiled
    """Tile rows r0..r1 are queries row0 + r; tile column c is gallery item col0 + c."""
    width, slots = tile.shape[1], values.shape[1]
    for r in range(r0, r1):
        q = row0 + r
        row, kept, kept_ids = tile[r], values[q], ids[q]
        limit, count = limits[q], fill[q]
        for s0 in range(0, width, _STRIP):
            if s0 + _STRIP <= width:
                below = 0
                for c in range(_STRIP):  # constant length, so LLVM vectorises it; almost always 0
                    below += row[s0 + c] < limit
                if below == 0:
                    continue
            if count + _STRIP > slots:  # capacity() leaves at least a strip beyond k
                limit = _keep_smallest(kept, kept_ids, count, k)
                count = k
            for c in range(s0, min(width, s0 + _STRIP)):
                count = _keep(kept, kept_ids, count, limit, row[c], col0 + c)
        limits[q], fill[q] = limit, count


@numba.njit(cache=True, nogil=True)
def _offer_columns(tile, c0, c1, row0, col0, limits, values, ids, fill, k):  # pragma: no cover - compiled
    """Tile columns c0..c1 are queries row0 + c; tile row r is gallery item col0 + r."""
    slots, width = values.shape[1], c1 - c0
    local = limits[row0 + c0 : row0 + c1]
    for r in range(tile.shape[0]):  # row by row: long contiguous reads
        row = tile[r, c0:c1]
        for s0 in range(0, width, _STRIP):
            if s0 + _STRIP <= width:
                below = 0
                for c in range(_STRIP):
                    below += row[s0 + c] < local[s0 + c]
                if below == 0:
                    continue
            for c in range(s0, min(width, s0 + _STRIP)):  # one list per column, ~1 hit per strip
                if row[c] < local[c]:
                    q = row0 + c0 + c
                    count = fill[q]
                    if count == slots:
                        local[c] = _keep_smallest(values[q], ids[q], count, k)
                        count = k
                        if not row[c] < local[c]:
                            fill[q] = count
                            continue
                    values[q, count] = row[c]  # 2-D indexing: a row view costs atomic reference counts
                    ids[q, count] = col0 + r
                    fill[q] = count + 1


@numba.njit(cache=True, nogil=True)
def _finish(q0, q1, values, ids, fill, k):  # pragma: no cover - compiled
    """Sort each row's candidates and keep the k smallest in its first k slots; missing ones: +inf, id -1.

    An LSD radix sort of the order-preserving distance bits (4 passes of 8 bits, skipping passes
    where all keys share the digit) carries the ids along; it is stable, so ties keep their order.
    """
    keys, keys_out = np.empty(values.shape[1], np.uint32), np.empty(values.shape[1], np.uint32)
    order, order_out = np.empty(values.shape[1], np.int32), np.empty(values.shape[1], np.int32)
    counts = np.empty(256, np.int64)
    for q in range(q0, q1):
        count = fill[q]  # sorting them all is cheaper than a quickselect down to k first
        bits = values[q].view(np.uint32)
        for t in range(count):
            b = bits[t]
            keys[t] = ~b if b >> 31 else b | np.uint32(0x80000000)
            order[t] = ids[q, t]
        for shift in range(0, 32, 8):
            counts[:] = 0
            for t in range(count):
                counts[(keys[t] >> shift) & 255] += 1
            if count == 0 or counts[(keys[0] >> shift) & 255] == count:
                continue  # every key has this digit
            start = 0
            for d in range(256):
                start, counts[d] = start + counts[d], start
            for t in range(count):
                d = (keys[t] >> shift) & 255
                keys_out[counts[d]], order_out[counts[d]] = keys[t], order[t]
                counts[d] += 1
            keys, keys_out = keys_out, keys
            order, order_out = order_out, order
        count = min(count, k)
        for t in range(count):
            b = keys[t]
            bits[t] = b & np.uint32(0x7FFFFFFF) if b >> 31 else ~b
            ids[q, t] = order[t]
        for t in range(count, k):
            values[q, t] = np.inf
            ids[q, t] = -1


class CandidateLists:
    """k nearest candidates of `len(limits)` queries, each starting with a limit (inf: none).

    `offer_rows`/`offer_columns` run on the calling thread (and release the GIL); two calls may run
    at once on different threads as long as they touch different queries.

    Args:
        limits: (rows,) float32; a query only ever accepts distances strictly below its limit.
        k: neighbours wanted per query.
    """

    def __init__(self, limits: np.ndarray, k: int) -> None:
        self.k = k
        self.initial_limits = np.asarray(limits, dtype=np.float32)
        self.limits = self.initial_limits.copy()
        self.values = np.empty((len(limits), capacity(k)), dtype=np.float32)
        self.ids = np.empty((len(limits), capacity(k)), dtype=np.int32)
        self.fill = np.zeros(len(limits), dtype=np.int64)

    def offer_rows(self, tile: np.ndarray, row0: int, col0: int) -> None:
        """Tile row r holds the distances of query row0 + r to gallery items col0, col0 + 1, ..."""
        _offer_rows(tile, 0, tile.shape[0], row0, col0, self.limits, self.values, self.ids, self.fill, self.k)

    def offer_columns(self, tile: np.ndarray, row0: int, col0: int) -> None:
        """Tile column c holds the distances of query row0 + c to gallery items col0, col0 + 1, ..."""
        _offer_columns(tile, 0, tile.shape[1], row0, col0, self.limits, self.values, self.ids, self.fill, self.k)

    def finish(self, pool: ThreadPoolExecutor, workers: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, k) views: distances and int32 ids, nearest first; rows with fewer than k candidates
        end with distance +inf and id -1. Sorts on `workers` threads of `pool`."""
        bounds = np.linspace(0, len(self.fill), workers + 1).astype(int)
        jobs = [
            pool.submit(_finish, a, b, self.values, self.ids, self.fill, self.k) for a, b in zip(bounds, bounds[1:])
        ]
        for job in jobs:
            job.result()
        return self.values[:, : self.k], self.ids[:, : self.k]
