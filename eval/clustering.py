"""Clustering quality of an embedding: FAISS k-means, then NMI and AMI against the labels.

This follows pytorch-metric-learning's `AccuracyCalculator`: k-means (`faiss.Kmeans`, 20
iterations, FAISS's defaults otherwise, so at most 256 training points per centroid) with as many
clusters as there are distinct query labels, run on the query embeddings; every point is assigned to
its nearest centroid; then scikit-learn's `normalized_mutual_info_score` (arithmetic normalisation)
and `adjusted_mutual_info_score` of (labels, assignment). Two differences, both deliberate: the
k-means seed is an argument (PML leaves FAISS's default, 1234; pass `seed=1234` to reproduce PML's
clusters), and for cosine retrieval the rows are L2-normalised before clustering (PML clusters the
raw embeddings whatever its distance).

AMI's expected mutual information depends on the class and cluster sizes only; scikit-learn sums it
over every (class, cluster) pair, O(classes x clusters) work: 14-28 s for SOP's test split (11,316
classes and as many clusters) on two cores. Above `AMI_SKLEARN_MAX_PAIRS` pairs, `ami` sums the same
terms once per pair of distinct sizes, weighted by how many pairs share them (a few hundred pairs
for SOP), in milliseconds. The two differ by float rounding only: on SOP-shaped sizes the grouped
expectation is within 1e-10 (relative) of the exact value computed with 40-digit arithmetic, and
scikit-learn's running sum of ~10^8 terms within 1e-9; AMI's cancellation can amplify either a few times.
"""

from __future__ import annotations

import faiss
import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln
from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score, normalized_mutual_info_score

from .indexes import gpu_count

__all__ = ["AMI_SKLEARN_MAX_PAIRS", "KMEANS_ITERATIONS", "ami", "kmeans_assignment", "nmi"]

KMEANS_ITERATIONS = 20
# Up to this many (class, cluster) pairs `ami` is scikit-learn's own function, bit for bit.
AMI_SKLEARN_MAX_PAIRS = 2**20
# Terms of the expected mutual information evaluated at once (a few float64 temporaries each).
_EMI_TERMS_PER_BLOCK = 2**18


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

    scikit-learn's `adjusted_mutual_info_score`; above `AMI_SKLEARN_MAX_PAIRS` (class, cluster) pairs,
    the same formula with the expected mutual information summed by distinct sizes (module doc).

    Args:
        labels: (N,) class labels.
        clusters: (N,) cluster ids.

    Example:
        >>> ami(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
        1.0
    """
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    class_sizes = np.unique(labels, return_counts=True)[1]
    cluster_sizes = np.unique(clusters, return_counts=True)[1]
    if min(class_sizes.size, cluster_sizes.size) < 2 or class_sizes.size * cluster_sizes.size <= AMI_SKLEARN_MAX_PAIRS:
        return float(adjusted_mutual_info_score(labels, clusters))
    # scikit-learn's formula (average_method="arithmetic"), with the expectation grouped by sizes.
    mi = mutual_info_score(labels, clusters)
    emi = _expected_mutual_information(class_sizes, cluster_sizes)
    normalizer = float(np.mean([_entropy(class_sizes), _entropy(cluster_sizes)]))
    denominator = normalizer - emi
    # As scikit-learn: keep the sign, avoid 0 / 0 on a perfect match.
    eps = np.finfo("float64").eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mi - emi) / denominator)


def _entropy(sizes: np.ndarray) -> float:
    """Entropy of a labelling with these (all positive) group sizes, as scikit-learn computes it."""
    sizes = sizes.astype(np.float64)
    total = np.sum(sizes)
    return float(-np.sum((sizes / total) * (np.log(sizes) - np.log(total))))


def _expected_mutual_information(class_sizes: np.ndarray, cluster_sizes: np.ndarray) -> float:
    """E[MI] of two labellings with these group sizes under random permutation (Vinh et al., 2010).

    scikit-learn's `expected_mutual_information` term for term, but each term is computed once per
    pair of distinct sizes (a, b) and weighted by the number of (class, cluster) pairs with those sizes.
    The terms of all pairs are laid out flat, `_EMI_TERMS_PER_BLOCK` at a time.
    """
    n = int(class_sizes.sum())
    a_values, a_counts = np.unique(class_sizes, return_counts=True)
    b_values, b_counts = np.unique(cluster_sizes, return_counts=True)
    a = np.repeat(a_values, b_values.size).astype(np.int64)
    b = np.tile(b_values, a_values.size).astype(np.int64)
    weight = np.repeat(a_counts, b_values.size).astype(np.float64) * np.tile(b_counts, a_values.size)
    start = np.maximum(1, a + b - n)  # a class of a rows and a cluster of b share n_ij = start..min(a, b) rows
    terms = np.minimum(a, b) + 1 - start
    block = (np.cumsum(terms) - 1) // _EMI_TERMS_PER_BLOCK  # pairs whose terms go in one evaluation
    total = 0.0
    for pairs in np.split(np.arange(a.size), np.flatnonzero(np.diff(block)) + 1):
        counts = terms[pairs]
        pair = np.repeat(pairs, counts)
        nij = (np.repeat(start[pairs] - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())).astype(float)
        ai, bj = a[pair], b[pair]
        log_term = np.log(n) + np.log(nij) - np.log(ai) - np.log(bj)
        gln = (gammaln(ai + 1) + gammaln(bj + 1) + gammaln(n - ai + 1) + gammaln(n - bj + 1) - gammaln(nij + 1)
               - gammaln(n + 1) - gammaln(ai - nij + 1) - gammaln(bj - nij + 1) - gammaln(n - ai - bj + nij + 1))
        total += float(weight[pair] @ (nij / n * log_term * np.exp(gln)))
    return total
