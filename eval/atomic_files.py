"""Write a set of files so that readers see all of them complete, or the old ones, never a part.

Each file is first written to a hidden temporary sibling (same directory, so the rename cannot cross
file systems); only when every one is complete are they renamed into place with `os.replace`, in the
order given. Put the files that refer to the others (configs) last, so a reader polling the
directory never finds a config that points at a file not yet there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Union

__all__ = ["Content", "write_files_atomically"]

Content = Union[bytes, Callable[[BinaryIO], None]]  # the data, or a function that writes it to a file


def _write_temp(path: Path, content: Content) -> Path:
    # open(..., "xb") rather than mkstemp: the file gets the usual umask permissions, not 0600.
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


def write_files_atomically(files: Mapping[Path, Content]) -> None:
    """Write every file to a temporary path, then rename them all into place.

    Args:
        files: final path -> bytes, or a function that writes the content to an open binary file.
            The parent directories must exist.

    Raises:
        Whatever writing raises (OSError, or an error from a writer function); all temporary files
        are removed first and no final path has been touched.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            temps.append((_write_temp(Path(path), content), Path(path)))
    except BaseException:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
        raise
    for temp, path in temps:
        os.replace(temp, path)
