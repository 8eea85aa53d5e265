"""Argument checks and conversions shared by the eval modules: every public entry point converts its
inputs here, once."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DISTANCES", "check_int", "check_metric", "l2_normalized", "labelled_sets", "to_float32_matrix", "to_int_labels",
]

DISTANCES = ("l2", "cosine")  # the distances every eval function accepts as `metric`


def check_metric(metric: Any) -> str:
    """`metric` if it names one of `DISTANCES`; ValueError otherwise."""
    if not isinstance(metric, str) or metric not in DISTANCES:
        raise ValueError(f"metric must be one of {', '.join(DISTANCES)}, got {metric!r}")
    return metric


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int in [`minimum`, `maximum`] (either bound optional); TypeError/ValueError naming
    `name` otherwise (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            expected = f">= {minimum}"
        else:
            expected = f"<= {maximum}" if minimum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def to_int_labels(labels: Any, name: str, length: int, rows_of: str) -> np.ndarray:
    """Convert (N,) integer labels (numpy or torch) to a numpy array, checking dtype and length."""
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) to match {rows_of}, got {array.shape}")
    return array


def to_float32_matrix(x: ArrayLike, name: str) -> np.ndarray:
    """Convert a 2-D numpy array or torch tensor to a finite, C-contiguous float32 array.

    Args:
        x: (N, D) array-like of real numbers; a torch tensor is detached and moved to the CPU.
        name: argument name used in error messages.

    Returns:
        (N, D) float32 C-contiguous array (the input itself when it already is one).

    Raises:
        TypeError: if `x` is not numeric.
        ValueError: if `x` is not 2-D, has no columns, or holds NaN/Inf (also after the cast to float32).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch here
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()  # bfloat16 has no numpy dtype
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (num_points, dim), got {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {array.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become Inf, reported just below
        array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(
            f"{name} must be finite in float32, got NaN/Inf (or a value beyond float32) in row {bad}"
        )
    return array


def l2_normalized(x: np.ndarray) -> np.ndarray:
    """Row-normalised copy of an (N, D) float array; all-zero rows stay zero (similarity 0 to everything)."""
    # Dividing by the largest |value| first keeps the float32 norm from overflowing or underflowing.
    scale = np.abs(x).max(axis=1, keepdims=True)
    out = np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=out, where=norms > 0)


def labelled_sets(
    embeddings: ArrayLike, labels: ArrayLike, query_embeddings: ArrayLike | None, query_labels: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Validate a gallery and optional queries (leave-one-out when none are given).

    Returns:
        gallery (N, D) float32, gallery labels (N,), queries (Nq, D) float32 (the gallery itself in
        leave-one-out), query labels (Nq,), and whether the protocol is leave-one-out.
    """
    gallery = to_float32_matrix(embeddings, "embeddings")
    gallery_labels = to_int_labels(labels, "labels", gallery.shape[0], "embeddings rows")
    leave_one_out = query_embeddings is None
    if leave_one_out != (query_labels is None):
        raise ValueError("query_embeddings and query_labels must be given together, got only one of them")
    if leave_one_out:
        return gallery, gallery_labels, gallery, gallery_labels, True
    queries = to_float32_matrix(query_embeddings, "query_embeddings")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query_embeddings must have dim {gallery.shape[1]} like embeddings, got {queries.shape}")
    return gallery, gallery_labels, queries, to_int_labels(query_labels, "query_labels", queries.shape[0],
                                                           "query_embeddings rows"), False
