"""metricbench.eval: FAISS neighbour search, retrieval metrics and Embedding Projector export.

`knn_search` (and its streaming form `knn_search_chunks`) is the one FAISS boundary; the metric
functions are pure functions over neighbour labels; `retrieval_metrics` runs the search and returns
every metric; `verification_metrics` scores same-class-or-not pairs (ROC AUC, TAR@FAR, EER, threshold);
only the projector exporters (`export_projector`, `write_projector_tsv`) and the plot
writers (`plot_*`, `write_eval_plots`, `write_retrieval_gallery`) touch the filesystem.
"""

from .average_precision import mean_average_precision
from .clustering import ami, kmeans_assignment, nmi
from .distance_stats import class_distance_stats
from .index_files import build_saved_index, index_from_bytes, index_kind, index_to_bytes
from .knn import knn_search, knn_search_chunks, knn_search_index
from .pairs import PairDistances, pair_distances
from .plot_writers import (PLOT_FILES, UMAP_COORDS, plot_class_margins, plot_distance_histograms, plot_umap,
                           write_eval_plots)
from .projector import export_projector, write_projector_tsv
from .retrieval import map_at_r, precision_at_1, r_precision, recall_at_k
from .retrieval_gallery import GALLERY_FILES, gallery_records, write_retrieval_gallery
from .retrieval_suite import Neighbors, retrieval_metrics, retrieval_metrics_and_neighbors
from .umap_projection import umap_2d
from .verification import VerificationPairs, verification_metrics, verification_pairs

__all__ = [
    "GALLERY_FILES",
    "Neighbors",
    "PLOT_FILES",
    "PairDistances",
    "VerificationPairs",
    "ami",
    "build_saved_index",
    "class_distance_stats",
    "export_projector",
    "index_from_bytes",
    "index_kind",
    "index_to_bytes",
    "gallery_records",
    "kmeans_assignment",
    "knn_search",
    "knn_search_chunks",
    "knn_search_index",
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
    "verification_metrics",
    "verification_pairs",
    "write_eval_plots",
    "write_projector_tsv",
    "write_retrieval_gallery",
]
