"""An index directory (`metricbench index`): a gallery's FAISS index, what each of its ids is, and which model made it.

    index.faiss     the FAISS index (`faiss.read_index` reads it); id i is the i-th gallery item
    items.parquet   one row per id: id, row (of the dataset), label (class id), class_name, path (photos)
    index.json      run (absolute path), model_digest, metric, dim, count, index (flat/ivf/hnsw), dataset, split,
                    vectors (what the index stores), metricbench_version; written last

The index is built as evaluation builds it (`metricbench.eval.build_saved_index`: exact up to 1,000,000 items with
`auto`, IVF above; for cosine, L2-normalised rows under an inner product), and the directory appears complete or not
at all (`metricbench.atomic.write_directory_atomically`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metricbench import __version__
from metricbench.atomic import json_text, write_directory_atomically
from metricbench.eval import build_saved_index, index_from_bytes, index_kind, index_to_bytes

from .embedded_files import EmbeddedSet

__all__ = ["INDEX_FILE", "INFO_FILE", "ITEMS_FILE", "GalleryIndex", "read_index_dir", "write_index_dir"]

INDEX_FILE, ITEMS_FILE, INFO_FILE = "index.faiss", "items.parquet", "index.json"
_REQUIRED = ("run", "model_digest", "metric", "dim", "count", "index")


@dataclass(frozen=True)
class GalleryIndex:
    """An index directory read back.

    Attributes:
        path: the directory.
        info: the contents of index.json.
        items: items.parquet: one row per index id, in id order.
        index: the FAISS index.
    """

    path: Path
    info: dict[str, Any]
    items: pd.DataFrame
    index: Any


def write_index_dir(embedded: EmbeddedSet, out: str | os.PathLike, *, index: str = "auto",
                    overwrite: bool = False) -> dict[str, Any]:
    """Build the index of `embedded` and write the directory `out` at once (replacing it with `overwrite`).

    Returns:
        The contents of index.json.

    Raises:
        FileExistsError: `out` exists and not `overwrite`.
        ValueError: an unknown index kind.
    """
    provenance = embedded.provenance
    built = build_saved_index(embedded.embeddings, metric=provenance.metric, index=index)
    items = {"id": np.arange(len(embedded), dtype=np.int64), "row": embedded.rows, "label": embedded.labels,
             "class_name": [embedded.class_names[label] for label in embedded.labels]}
    if embedded.paths is not None:
        items["path"] = list(embedded.paths)
    table = pd.DataFrame(items)
    info = {"format": 1, "run": provenance.run, "model_digest": provenance.model_digest, "metric": provenance.metric,
            "dim": int(embedded.embeddings.shape[1]), "count": len(embedded), "index": index_kind(built),
            "dataset": provenance.dataset, "split": provenance.split, "metricbench_version": __version__,
            "vectors": "L2-normalised embeddings, inner product" if provenance.metric == "cosine"
            else "embeddings, squared L2 distance"}
    write_directory_atomically(out, {INDEX_FILE: index_to_bytes(built),
                                     ITEMS_FILE: lambda f: table.to_parquet(f, index=False),
                                     INFO_FILE: json_text(info).encode("utf-8")}, replace=overwrite)
    return info


def read_index_dir(path: str | os.PathLike) -> GalleryIndex:
    """Read an index directory written by `write_index_dir`.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: a damaged file, or files that disagree (sizes, dimension).
    """
    path = Path(path)
    label = f"index directory {str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist")
    if not path.is_dir():
        raise ValueError(f"{label} is a file; expected a directory written by `metricbench index`")
    for name in (INFO_FILE, INDEX_FILE, ITEMS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{label} has no {name}: it was not written by `metricbench index`")
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{label}: {INFO_FILE} is not valid JSON ({error})") from error
    missing = [key for key in _REQUIRED if not isinstance(info, dict) or key not in info]
    if missing:
        raise ValueError(f"{label}: {INFO_FILE} lacks {', '.join(missing)}")
    index = index_from_bytes((path / INDEX_FILE).read_bytes(), what=f"{label}: {INDEX_FILE}")
    try:
        items = pd.read_parquet(path / ITEMS_FILE)
    except (OSError, ValueError) as error:
        raise ValueError(f"{label}: {ITEMS_FILE} is not a readable Parquet file ({error})") from error
    if not (index.ntotal == info["count"] == len(items)) or index.d != info["dim"]:
        raise ValueError(f"{label}: its files disagree: {INDEX_FILE} holds {index.ntotal} x {index.d}, {INFO_FILE} "
                         f"says {info['count']} x {info['dim']}, {ITEMS_FILE} has {len(items)} rows")
    return GalleryIndex(path, info, items, index)
