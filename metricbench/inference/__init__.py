"""Use a trained run: embed any dataset, build and search a FAISS index of a gallery, export the model.

`embed` (the run's model and preprocessing over any dataset, with the model's digest), `embedded_files` (the .npy,
.npz and .parquet files `metricbench embed` writes), `index_dir` (an index directory), `search` (queries against
it), `model_export` (ONNX / TorchScript). The CLI's `embed`, `index`, `search` and `export-model` call these.
"""

import importlib
from typing import Any

# Public name -> the submodule that defines it. Imported on first use (PEP 562), so that the CLI's --help and the
# commands that do not embed never import torch, faiss or pyarrow.
_EXPORTS = {
    **dict.fromkeys(("SPLITS", "embed_dataset", "is_dataset_spec", "model_digest", "open_run"), "embed"),
    **dict.fromkeys(("EMBEDDING_SUFFIXES", "EmbeddedSet", "Provenance", "is_embedded_table", "read_embedded",
                     "write_embedded"), "embedded_files"),
    **dict.fromkeys(("GalleryIndex", "read_index_dir", "write_index_dir"), "index_dir"),
    **dict.fromkeys(("EXPORT_FORMATS", "export_model", "model_contract"), "model_export"),
    **dict.fromkeys(("RESULT_SUFFIXES", "load_queries", "search_index_dir", "verification_threshold",
                     "write_results"), "search"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = [
    "EMBEDDING_SUFFIXES",
    "EXPORT_FORMATS",
    "RESULT_SUFFIXES",
    "SPLITS",
    "EmbeddedSet",
    "GalleryIndex",
    "Provenance",
    "embed_dataset",
    "export_model",
    "is_embedded_table",
    "is_dataset_spec",
    "load_queries",
    "model_contract",
    "model_digest",
    "open_run",
    "read_embedded",
    "read_index_dir",
    "search_index_dir",
    "verification_threshold",
    "write_embedded",
    "write_index_dir",
    "write_results",
]
