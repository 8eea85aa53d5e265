"""Clustering quality of an embedding: FAISS k-means, then NMI and AMI against the labels.

This follows pytorch-metric-learning's `AccuracyCalculator`: k-means (`faiss.Kmeans`, 20
iterations, FAISS's defaults otherwise, so at most 256 training points per centroid) with as many
clusters as there are distinct query labels, run on the query embeddings; every point is assigned to
its nearest centroid; then scikit-learn's `normalized_mutual_info_score` (arithmetic normalisation)
and `adjusted_mutual_info_score` of (labels, assignment). Two differences, both deliberate: the
k-means seed is an argument (PML leaves FAISS's default, 1234; pass `seed=1234` to reproduce PML's
clusters), and for cosine retrieval the rows are L2-normalised before clustering (PML clusters the
raw embeddings whatever its distance).
"""

from __future__ import annotations

import faiss
import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from .indexes import gpu_count

__all__ = ["KMEANS_ITERATIONS", "ami", "kmeans_assignment", "nmi"]

KMEANS_ITERATIONS = 20


def kmeans_assignment(embeddings: np.ndarray, num_clusters: int, *, seed: int = 0) -> np.ndarray:
    """Nearest k-means centroid of every row.

    Args:
        embeddings: (N, D) float32 C-contiguous rows (validated by the caller).
        num_clusters: 1 <= num_clusters <= N.
        seed: seed of FAISS's k-means (its initial centroids and training sample).

    Returns:
        (N,) int64 cluster ids in [0, num_clusters).

    Example:
        >>> x = np.array([[0.0], [0.1], [5.0], [5.1]], dtype=np.float32)
        >>> assignment = kmeans_assignment(x, 2)
        >>> bool(assignment[0] == assignment[1] != assignment[2] == assignment[3])
        True
    """
    if not 1 <= num_clusters <= embeddings.shape[0]:
        raise ValueError(f"num_clusters must be in [1, {embeddings.shape[0]}] (rows), got {num_clusters}")
    # min_points_per_centroid only silences FAISS's stderr warning about fewer than 39 points per
    # centroid (the clustering is the same); small evaluation sets would print it every time.
    kmeans = faiss.Kmeans(
        embeddings.shape[1], num_clusters, niter=KMEANS_ITERATIONS, seed=seed, gpu=gpu_count() > 0,
        min_points_per_centroid=1,
    )
    kmeans.train(embeddings)
    _, assignment = kmeans.index.search(embeddings, 1)
    return assignment[:, 0]


def nmi(labels: ArrayLike, clusters: ArrayLike) -> float:
    """Normalised mutual information (arithmetic mean normalisation) of labels and a clustering.

    Args:
        labels: (N,) class labels.
        clusters: (N,) cluster ids.

    Example:
        >>> nmi(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
        1.0
    """
    return float(normalized_mutual_info_score(labels, clusters))


def ami(labels: ArrayLike, clusters: ArrayLike) -> float:
    """Adjusted mutual information of labels and a clustering (0 for chance, 1 for a perfect match).

    Args:
        labels: (N,) class labels.
        clusters: (N,) cluster ids.

    Example:
        >>> ami(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
        1.0
    """
    return float(adjusted_mutual_info_score(labels, clusters))
