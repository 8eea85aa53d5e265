"""metricbench.eval: FAISS neighbour search, retrieval metrics and Embedding Projector export.

`knn_search` (and its streaming form `knn_search_chunks`) is the one FAISS boundary; the metric
functions are pure functions over neighbour labels; `retrieval_metrics` runs the search and returns
every metric; `write_projector_tsv` is the only part that touches the filesystem.
"""

from .distance_stats import class_distance_stats
from .knn import knn_search, knn_search_chunks
from .projector import write_projector_tsv
from .retrieval import map_at_r, precision_at_1, r_precision, recall_at_k, retrieval_metrics

__all__ = [
    "class_distance_stats",
    "knn_search",
    "knn_search_chunks",
    "map_at_r",
    "precision_at_1",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
    "write_projector_tsv",
]
