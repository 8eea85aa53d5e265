"""metricbench.eval: FAISS neighbour search, retrieval metrics and Embedding Projector export.

`knn_search` (and its streaming form `knn_search_chunks`) is the one FAISS boundary; the metric
functions are pure functions over neighbour labels; `retrieval_metrics` runs the search and returns
every metric; only the projector exporters (`export_projector`, `write_projector_tsv`) and the plot
writers (`plot_*`, `write_eval_plots`) touch the filesystem.
"""

from .average_precision import mean_average_precision
from .clustering import ami, kmeans_assignment, nmi
from .distance_stats import class_distance_stats
from .knn import knn_search, knn_search_chunks
from .pairs import PairDistances, pair_distances
from .plot_writers import (PLOT_FILES, UMAP_COORDS, plot_class_margins, plot_distance_histograms, plot_umap,
                           write_eval_plots)
from .projector import export_projector, write_projector_tsv
from .retrieval import map_at_r, precision_at_1, r_precision, recall_at_k
from .retrieval_suite import Neighbors, retrieval_metrics, retrieval_metrics_and_neighbors
from .umap_projection import umap_2d

__all__ = [
    "Neighbors",
    "PLOT_FILES",
    "PairDistances",
    "ami",
    "class_distance_stats",
    "export_projector",
    "kmeans_assignment",
    "knn_search",
    "knn_search_chunks",
    "map_at_r",
    "mean_average_precision",
    "nmi",
    "pair_distances",
    "plot_class_margins",
    "plot_distance_histograms",
    "plot_umap",
    "precision_at_1",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_metrics_and_neighbors",
    "UMAP_COORDS",
    "umap_2d",
    "write_eval_plots",
    "write_projector_tsv",
]
