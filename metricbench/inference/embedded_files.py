"""A set of embeddings with the model that made it (`EmbeddedSet`), and the files `metricbench embed` writes
of it, with their one reader (`search --query FILE`, `eval --embeddings FILE.parquet`).

- `.npy`: the (N, D) float32 embeddings alone (no record of the model: `search` refuses it as a query).
- `.npz`: arrays `embeddings` (N, D) float32, `labels` (N,) int64 class ids, `rows` (N,) int64 dataset rows,
  `class_names` (C,) str, `paths` (N,) str for photos, and 0-d str arrays `model_digest`, `metric`, `run`,
  `dataset`, `split`. No pickled objects; `metricbench eval --embeddings FILE.npz` reads it as it is.
- `.parquet`: one row per item, columns `row` (int64), `label` (int64 class id), `class_name` (str), `path`
  (str, photos only) and `embedding`, a fixed-size list of D float32: the vector stays one column whatever D, and
  pyarrow and pandas give back the exact float32 values (`np.stack(df["embedding"])`). The provenance (and the class
  names) are JSON under the schema metadata key `metricbench`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metricbench import __version__
from metricbench.atomic import atomic_write
from metricbench.data.numpy_files import read_arrays

__all__ = ["EMBEDDING_SUFFIXES", "METADATA_KEY", "EmbeddedSet", "Provenance", "is_embedded_table", "read_embedded",
           "write_embedded"]

EMBEDDING_SUFFIXES = (".npy", ".npz", ".parquet")
METADATA_KEY = b"metricbench"  # the Parquet schema metadata entry holding the provenance
_PROVENANCE = ("model_digest", "metric", "run", "dataset", "split")


@dataclass(frozen=True)
class Provenance:
    """Which model made a set of embeddings.

    Attributes:
        model_digest: SHA-256 (hex) of the model's state dict (`metricbench.feature_cache.state_dict_digest`).
        metric: the run's `eval.metric` ("l2" or "cosine"), the distance its embeddings are meant for.
        run: absolute path of the run directory.
        dataset: the dataset spec that was embedded.
        split: "all", "train", "val" or "test".
    """

    model_digest: str
    metric: str
    run: str
    dataset: str
    split: str


@dataclass(frozen=True)
class EmbeddedSet:
    """Embeddings of some rows of a dataset.

    Attributes:
        embeddings: (N, D) float32.
        rows: (N,) int64 rows of the dataset.
        labels: (N,) int64 class ids, into `class_names`.
        class_names: the dataset's class names.
        paths: (N,) str absolute photo paths; None for data held in memory.
        provenance: the model that made them.
    """

    embeddings: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    paths: np.ndarray | None
    provenance: Provenance

    def __len__(self) -> int:
        return len(self.rows)


def write_embedded(embedded: EmbeddedSet, path: str | os.PathLike) -> None:
    """Write `embedded` atomically, in the format of `path`'s suffix (.npy, .npz or .parquet)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        atomic_write(path, lambda f: np.save(f, embedded.embeddings))
    elif suffix == ".npz":
        atomic_write(path, lambda f: np.savez(f, **_npz_arrays(embedded)))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = _table(embedded)
        atomic_write(path, lambda f: pq.write_table(table, f))
    else:
        raise ValueError(f"--out must end in {', '.join(EMBEDDING_SUFFIXES)}, got {str(path)!r}")


def read_embedded(path: str | os.PathLike, *, what: str = "--query") -> EmbeddedSet:
    """Read a `.npz` or `.parquet` file written by `write_embedded`, with its provenance.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another format (`.npy` has no provenance), a damaged file, or one that `metricbench embed` did
            not write; messages start with `what` and the path.
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if not path.exists():
            raise FileNotFoundError(f"{label} does not exist")
        raise ValueError(f"{label} is a bare .npy array with no record of the model that made it; write the "
                         "queries with `metricbench embed --out FILE.npz` (or .parquet)")
    if suffix == ".npz":
        arrays = read_arrays(path, what=what, required=("embeddings", "labels", "rows", "class_names", *_PROVENANCE),
                             optional=("paths",))
        provenance = Provenance(*(str(arrays[key]) for key in _PROVENANCE))
        embedded = EmbeddedSet(arrays["embeddings"], arrays["rows"], arrays["labels"],
                               tuple(str(n) for n in arrays["class_names"]), arrays.get("paths"), provenance)
    elif suffix == ".parquet":
        embedded = _read_table(path, label)
    else:
        raise ValueError(f"{label} must be a .npz or .parquet file written by `metricbench embed`")
    x = embedded.embeddings
    if x.ndim != 2 or x.dtype.kind != "f" or len(embedded.rows) != len(x) or len(embedded.labels) != len(x):
        raise ValueError(f"{label} must hold (N, D) float embeddings with one row and label each, got embeddings "
                         f"{x.shape} {x.dtype}, {len(embedded.rows)} rows, {len(embedded.labels)} labels")
    return embedded


def is_embedded_table(path: str | os.PathLike) -> bool:
    """Whether the Parquet file `path` was written by `write_embedded` (its schema has the provenance); False for a
    file pyarrow cannot read (its reader then says why)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False
    return METADATA_KEY in (schema.metadata or {}) and "embedding" in schema.names


def _npz_arrays(embedded: EmbeddedSet) -> dict[str, np.ndarray]:
    arrays = {"embeddings": embedded.embeddings, "labels": embedded.labels, "rows": embedded.rows,
              "class_names": np.array(embedded.class_names, dtype=str)}
    if embedded.paths is not None:
        arrays["paths"] = np.asarray(embedded.paths, dtype=str)
    arrays.update({key: np.array(getattr(embedded.provenance, key)) for key in _PROVENANCE})
    return arrays


def _table(embedded: EmbeddedSet):
    import pyarrow as pa

    x = np.ascontiguousarray(embedded.embeddings, dtype=np.float32)
    columns = {"row": pa.array(embedded.rows, pa.int64()), "label": pa.array(embedded.labels, pa.int64()),
               "class_name": pa.array([embedded.class_names[i] for i in embedded.labels], pa.string())}
    if embedded.paths is not None:
        columns["path"] = pa.array(list(embedded.paths), pa.string())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    meta = {**{key: getattr(embedded.provenance, key) for key in _PROVENANCE}, "format": 1,
            "metricbench_version": __version__, "dim": int(x.shape[1]), "count": int(x.shape[0]),
            "class_names": list(embedded.class_names)}
    return pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode("utf-8")})


def _read_table(path: Path, label: str) -> EmbeddedSet:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{label} is not a readable Parquet file ({error})") from error
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None or "embedding" not in table.column_names:
        raise ValueError(f"{label} was not written by `metricbench embed` (no {METADATA_KEY.decode()!r} metadata "
                         f"or 'embedding' column; columns: {', '.join(table.column_names)})")
    try:
        meta = json.loads(raw)
        provenance = Provenance(*(str(meta[key]) for key in _PROVENANCE))
        class_names = tuple(str(n) for n in meta["class_names"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{label}: its {METADATA_KEY.decode()!r} metadata is damaged ({error!r})") from error
    column = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(column.type):
        raise ValueError(f"{label}: column 'embedding' must be a fixed-size list of floats, got {column.type}")
    x = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    paths = table.column("path").to_numpy(zero_copy_only=False).astype(str) if "path" in table.column_names else None
    return EmbeddedSet(x, table.column("row").to_numpy(), table.column("label").to_numpy(), class_names, paths,
                       provenance)
