"""Output directories named on the command line (`--out`, `--runs`): checked before any work, created cleanly.

A directory that cannot be created (a parent is a file, a parent is not writable) is a usage error that
names the flag, not an OSError traceback from deep inside a command, and it is found before anything is
written.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["check_out_dir", "make_out_dir"]


def _problem(path: Path) -> tuple[str, str] | None:
    """(strerror, what is wrong) when `path` could not be created as a directory now, else None."""
    if path.exists():
        if path.is_dir():
            return None
        return os.strerror(errno.EEXIST), "it is a file, expected a directory"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return os.strerror(errno.ENOTDIR), f"{str(ancestor)!r} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES), f"{str(ancestor)!r} is not writable"
    return None


def check_out_dir(path: str | os.PathLike, *, flag: str = "--out") -> None:
    """Check that `path` is a directory or could be created as one; create nothing.

    Call it before the work whose results go there, so that a bad path fails first and writes nothing.
    Whether an existing directory may be used (or must be replaced) is the caller's rule.

    Raises:
        ValueError: `path` is a file, or a parent of it is a file or not writable; the message names `flag`.
    """
    path = Path(path)
    if problem := _problem(path):
        raise ValueError(f"{flag} {str(path)!r} cannot be created: {problem[0]} ({problem[1]})")


def make_out_dir(path: str | os.PathLike, *, flag: str = "--out", exist_ok: bool = False) -> Path:
    """Create directory `path` with its parents, as `check_out_dir` would allow.

    Args:
        path: the directory.
        flag: the option that named it, for messages.
        exist_ok: accept an existing directory (otherwise FileExistsError).

    Returns:
        `path` as a Path.

    Raises:
        FileExistsError: `path` exists and `exist_ok` is false.
        ValueError: it cannot be created (see `check_out_dir`), or the OS refused (name too long, disk full, ...).
    """
    path = Path(path)
    if path.is_dir() and not exist_ok:
        raise FileExistsError(f"{flag} {str(path)!r} already exists")
    check_out_dir(path, flag=flag)
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as err:
        where = f"{err.filename!r}: " if err.filename and str(err.filename) != str(path) else ""
        raise ValueError(f"{flag} {str(path)!r} cannot be created: {where}{err.strerror}") from err
    return path
