"""Export embeddings for the Embedding Projector, in TensorBoard or standalone (projector.tensorflow.org).

`export_projector` writes everything both projectors need into one directory: `vectors.tsv`,
`metadata.tsv`, `projector_config.pbtxt` (TensorBoard: point `--logdir` at the directory, the run is
"."), `projector_config.json` (standalone), and on request a sprite sheet of thumbnails and the raw
float32 `vectors.bytes`. `write_projector_tsv` writes only the two TSV files.

Everything is validated before anything is written, and every file goes to a temporary path that is
renamed into place only when all of them are complete, so bad input never leaves a partial export.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from numpy.typing import ArrayLike

from metricbench.atomic import Content, write_files_atomically

from .float_tsv import write_float32_tsv
from .inputs import to_float32_matrix
from .projector_config import ProjectorEmbedding, projector_config_json, projector_config_pbtxt
from .projector_metadata import metadata_columns, metadata_tsv
from .sprite import check_images, make_sprite, png_bytes

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CONFIG_JSON_FILE",
    "CONFIG_PBTXT_FILE",
    "METADATA_FILE",
    "SPRITE_FILE",
    "VECTORS_BYTES_FILE",
    "VECTORS_FILE",
    "export_projector",
    "write_projector_tsv",
]

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"
VECTORS_BYTES_FILE = "vectors.bytes"  # the standalone projector reads "*.bytes" as raw float32
SPRITE_FILE = "sprite.png"
CONFIG_PBTXT_FILE = "projector_config.pbtxt"  # the name TensorBoard's projector plugin looks for
CONFIG_JSON_FILE = "projector_config.json"


def _vectors(embeddings: ArrayLike) -> np.ndarray:
    vectors = to_float32_matrix(embeddings, "embeddings")
    if vectors.shape[0] == 0:
        raise ValueError(f"embeddings must have at least one row, got shape {vectors.shape}")
    return vectors


def _tsv_writer(vectors: np.ndarray) -> Content:
    def write(file: BinaryIO) -> None:
        write_float32_tsv(file, vectors)

    return write


def _bytes_writer(vectors: np.ndarray) -> Content:
    def write(file: BinaryIO) -> None:
        file.write(np.ascontiguousarray(vectors, dtype="<f4").reshape(-1).view(np.uint8))  # no copy on x86/ARM

    return write


def write_projector_tsv(
    out_dir: str | os.PathLike[str],
    embeddings: ArrayLike,
    metadata: pd.DataFrame | Mapping[str, Sequence[Any]] | Sequence[Any] | ArrayLike,
) -> dict[str, Path]:
    """Write `vectors.tsv` and `metadata.tsv` only (no configs; see `export_projector`).

    Args:
        out_dir: directory to write into (created if missing).
        embeddings: (N, D) finite numpy array or torch tensor, N >= 1.
        metadata: a DataFrame, a mapping of column name -> N values, or N labels (one column).

    Returns:
        {"vectors": path of vectors.tsv, "metadata": path of metadata.tsv}.

    Raises:
        TypeError/ValueError: naming the argument, as `export_projector`.
    """
    vectors = _vectors(embeddings)
    metadata_text = metadata_tsv(metadata_columns(metadata, vectors.shape[0]))
    directory = Path(out_dir)
    paths = {"vectors": directory / VECTORS_FILE, "metadata": directory / METADATA_FILE}
    directory.mkdir(parents=True, exist_ok=True)
    write_files_atomically({paths["vectors"]: _tsv_writer(vectors), paths["metadata"]: metadata_text})
    return paths


def export_projector(
    out_dir: str | os.PathLike[str],
    embeddings: ArrayLike,
    metadata: pd.DataFrame | Sequence[Any] | ArrayLike,
    *,
    images: ArrayLike | None = None,
    tensor_name: str = "embeddings",
    write_bytes: bool = False,
) -> dict[str, Path]:
    """Export embeddings, metadata and optional thumbnails for the Embedding Projector.

    Numbers are written with 9 significant digits (`+1.23456789e-01`), which read back as exactly
    the same float32. In metadata, tab, newline, carriage return and backslash are written as `\\t`,
    `\\n`, `\\r`, `\\\\`; bytes are decoded as UTF-8 (invalid sequences and lone surrogates become
    U+FFFD), so the file always has exactly one line per embedding.

    Args:
        out_dir: directory to write into (created if missing). For TensorBoard, pass it as
            `--logdir`; the projector then lists it as run ".".
        embeddings: (N, D) finite numpy array or torch tensor, N >= 1.
        metadata: a pandas DataFrame with N rows (a header line is written when it has several
            columns), or N labels (list, numpy array, torch tensor, Series), written as one column
            without a header. A mapping of column name -> N values works like a DataFrame.
        images: optional thumbnails, (N, H, W) grayscale or (N, C, H, W) with C = 1 or 3; uint8, or
            floats in [0, 1]. Tiled row-major into a square sprite of at most 8192 x 8192 px,
            shrunk (aspect ratio kept) when needed.
        tensor_name: the embedding's name in both configs (and in TensorBoard's URLs).
        write_bytes: also write `vectors.bytes` (raw little-endian float32, row-major); the JSON
            config then points at it, which the standalone projector loads much faster than TSV.
            TensorBoard's config always points at `vectors.tsv`.

    Returns:
        Paths by key: "vectors", "metadata", "config_pbtxt", "config_json", and "sprite" /
        "vectors_bytes" when written.

    Raises:
        TypeError/ValueError: naming the argument, on bad shapes or dtypes, NaN/Inf, a metadata
            length other than N, a blank metadata row (the projector would drop it), images outside
            [0, 1], or too many images for the sprite size limit. Nothing is written then.

    Files of an earlier export into the same directory that this call does not write (a sprite,
    `vectors.bytes`) are left in place; the new configs no longer refer to them.

    Example:
        >>> paths = export_projector("runs/projector", np.eye(3), ["a", "b", "c"])  # doctest: +SKIP
        >>> # tensorboard --logdir runs/projector  ->  Projector tab
    """
    vectors = _vectors(embeddings)
    num_rows = vectors.shape[0]
    if not isinstance(tensor_name, str):
        raise TypeError(f"tensor_name must be a str, got {type(tensor_name).__name__}")
    if not tensor_name.strip():
        raise ValueError(f"tensor_name must be a non-empty name, got {tensor_name!r}")
    if not isinstance(write_bytes, (bool, np.bool_)):
        raise TypeError(f"write_bytes must be a bool, got {type(write_bytes).__name__}")
    metadata_text = metadata_tsv(metadata_columns(metadata, num_rows))
    sprite_png, single_image_dim = None, None
    if images is not None:
        sprite, single_image_dim = make_sprite(check_images(images, num_rows))
        sprite_png = png_bytes(sprite)

    directory = Path(out_dir)
    paths = {"vectors": directory / VECTORS_FILE, "metadata": directory / METADATA_FILE}
    files: dict[Path, Content] = {paths["vectors"]: _tsv_writer(vectors)}
    if write_bytes:
        paths["vectors_bytes"] = directory / VECTORS_BYTES_FILE
        files[paths["vectors_bytes"]] = _bytes_writer(vectors)
    files[paths["metadata"]] = metadata_text
    if sprite_png is not None:
        paths["sprite"] = directory / SPRITE_FILE
        files[paths["sprite"]] = sprite_png

    entry = ProjectorEmbedding(
        tensor_name=tensor_name,
        tensor_shape=(num_rows, vectors.shape[1]),
        tensor_path=VECTORS_FILE,
        metadata_path=METADATA_FILE,
        sprite_path=SPRITE_FILE if sprite_png is not None else None,
        single_image_dim=single_image_dim,
    )
    paths["config_json"] = directory / CONFIG_JSON_FILE
    paths["config_pbtxt"] = directory / CONFIG_PBTXT_FILE
    json_entry = dataclasses.replace(entry, tensor_path=VECTORS_BYTES_FILE) if write_bytes else entry
    # Configs last: a TensorBoard polling the directory never sees one pointing at a missing file.
    files[paths["config_json"]] = projector_config_json(json_entry).encode("utf-8")
    files[paths["config_pbtxt"]] = projector_config_pbtxt(entry).encode("utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    write_files_atomically(files)
    return paths
