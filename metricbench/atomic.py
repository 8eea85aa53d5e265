"""The one way metricbench writes files: readers see the old version or the complete new one, never a part.

Each file is first written to a hidden temporary sibling (same directory, so the rename cannot cross file
systems), created with `open(..., "xb")` so that it gets the usual umask permissions (mkstemp's would be
0600); only when every file of a call is complete are they renamed into place with `os.replace`, in the
order given. Put the file that marks a set complete (a config that refers to the others, a run's
metrics.json) last, so a reader polling the directory never finds it before the files it vouches for.
On any error every temporary file is removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Union

__all__ = ["Content", "atomic_write", "json_text", "write_directory_atomically", "write_files_atomically", "write_json",
           "write_text"]

Content = Union[bytes, Callable[[BinaryIO], object]]  # the data, or a function that writes it to a binary file


def _write_temp(path: Path, content: Content) -> Path:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as file:
            if isinstance(content, bytes):
                file.write(content)
            else:
                content(file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_files_atomically(files: Mapping[str | os.PathLike, Content]) -> None:
    """Write every file to a temporary path, then rename them all into place, in the order given.

    Args:
        files: final path -> bytes, or a function that writes the content to an open binary file
            (`fig.savefig(f, format="png")`, `np.savez(f, ...)`, `torch.save(obj, f)`, `df.to_csv(f)`).
            The parent directories must exist.

    Raises:
        Whatever writing raises (OSError, or an error from a writer function); all temporary files
        are removed first and no final path has been touched. Should a rename itself fail (rare: the
        directory vanished or became read-only meanwhile), the files renamed before it stay, the rest
        are removed, and the file meant to mark the set complete (the last) is not there.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            temps.append((_write_temp(Path(path), content), Path(path)))
        for temp, path in temps:
            os.replace(temp, path)
    except BaseException:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, content: Content) -> None:
    """Write one file atomically (see `write_files_atomically`)."""
    write_files_atomically({path: content})


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write(path, text.encode("utf-8"))


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or Infinity: json.dumps would write bare `NaN` tokens that strict parsers reject.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def json_text(obj: Any) -> str:
    """`obj` as indented, key-sorted, strictly valid JSON: NaN and ±inf (undefined metrics) become null."""
    return json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write `json_text(obj)` atomically."""
    write_text(path, json_text(obj))


def write_directory_atomically(directory: str | os.PathLike, files: Mapping[str, Content], *,
                               replace: bool = False) -> None:
    """Create `directory` with `files` in it at once: readers see no directory, or all of it.

    The files go into a hidden temporary sibling directory (see `write_files_atomically`), which is then renamed
    to `directory`. With `replace`, an existing `directory` is renamed aside first and deleted only once the new
    one is in place (put back should that rename fail).

    Args:
        directory: the directory to create; its parent must exist.
        files: file name inside `directory` -> content, as for `write_files_atomically`.
        replace: replace an existing `directory`; otherwise it is a FileExistsError, and nothing is written.
    """
    directory = Path(directory)
    if directory.exists() and not replace:
        raise FileExistsError(f"{str(directory)!r} already exists")
    stem = f".{directory.name}.{os.getpid()}.{uuid.uuid4().hex}"
    temp, old = directory.with_name(f"{stem}.tmp"), directory.with_name(f"{stem}.old")
    temp.mkdir()
    moved = False
    try:
        write_files_atomically({temp / name: content for name, content in files.items()})
        if directory.exists():
            os.rename(directory, old)
            moved = True
        os.rename(temp, directory)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if moved and not directory.exists():
            os.rename(old, directory)
        raise
    if moved:
        shutil.rmtree(old, ignore_errors=True)
