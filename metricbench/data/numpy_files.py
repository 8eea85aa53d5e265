"""The one opener of the user's NumPy files: ``.npy`` arrays and ``.npz`` archives.

Dataset ``npz:PATH``, a run's ``split.npz`` and ``metricbench eval --embeddings/--labels`` all read through here, so
a missing, empty, damaged or mislabelled file gets the same message wherever it is given. The kind of a file is
decided from its first bytes, not from its name; pickled objects are refused (``allow_pickle=False``); every array
is read into memory before the file is closed.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metricbench.errors import InputTypeError

__all__ = ["read_array", "read_arrays"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip (np.savez with no arrays)
_NPY = "a .npy array written by numpy.save"
_NPZ = "an .npz archive written by numpy.savez"
# What a damaged file raises from np.load or from reading a member: a bad zip directory or CRC, a truncated header
# or data, a corrupt deflate stream.
_DAMAGED = (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error)


def read_array(path: str | os.PathLike[str], *, what: str) -> np.ndarray:
    """Read the array of a ``.npy`` file.

    Args:
        path: The file.
        what: How the caller names this input in messages, e.g. ``"--labels"``; the path follows it.

    Returns:
        The array, in memory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a directory, empty, not a NumPy file, an ``.npz`` archive, or damaged.
        InputTypeError: The array holds Python objects, which would need pickle.
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    if _kind(path, label, _NPY) == "npz":
        raise ValueError(f"{label} is an .npz archive of several arrays; expected {_NPY}")
    try:
        return np.load(path, allow_pickle=False)
    except _DAMAGED as error:
        raise _read_error(label, None, error, _NPY) from error


def read_arrays(
    path: str | os.PathLike[str],
    *,
    what: str,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
    alternatives: Sequence[Sequence[str]] = (),
) -> dict[str, np.ndarray]:
    """Read named arrays from an ``.npz`` archive.

    Args:
        path: The file.
        what: How the caller names this input in messages, e.g. ``"dataset"`` or ``"split file"``; the path
            follows it.
        required: Names of the arrays that must be present.
        optional: Names read when present.
        alternatives: Other sets of names accepted in place of ``required``, tried in order (``("x", "y")``
            for ``("embeddings", "labels")``).

    Returns:
        The arrays, in memory, keyed by name: the first complete set among ``required`` and ``alternatives``, in
        its order, then the ``optional`` ones present.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a directory, empty, not a NumPy file, a single ``.npy`` array, damaged, or lacks a
            required array (the message lists the arrays found).
        InputTypeError: An array to read holds Python objects, which would need pickle.
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    sets = [list(required), *(list(names) for names in alternatives)]
    expected = " (or ".join(", ".join(names) for names in sets) + ")" * (len(sets) - 1)
    if optional:
        expected += f"; optional {', '.join(optional)}"
    if _kind(path, label, _NPZ) == "npy":
        raise ValueError(f"{label} is a single .npy array; expected {_NPZ} with arrays {expected}")
    try:
        archive = np.load(path, allow_pickle=False)
    except _DAMAGED as error:
        raise _read_error(label, None, error, _NPZ) from error
    with archive:
        found = list(archive.files)
        names = next((names for names in sets if set(names) <= set(found)), None)
        if names is None:
            missing = [repr(n) for n in sets[0] if n not in found]
            raise ValueError(
                f"{label} is missing array{'s' * (len(missing) > 1)} {', '.join(missing)}: expected arrays {expected}; "
                f"found: {', '.join(found) or 'none'}"
            )
        arrays = {}
        for name in [*names, *(n for n in optional if n in found)]:
            try:
                arrays[name] = archive[name]
            except _DAMAGED as error:
                raise _read_error(label, name, error, _NPZ) from error
            if not isinstance(arrays[name], np.ndarray):  # a member that is not .npy comes back as raw bytes
                raise ValueError(f"{label}: member {name!r} is not a .npy array; expected {_NPZ}")
    return arrays


def _kind(path: Path, label: str, expected: str) -> str:
    """``"npy"`` or ``"npz"`` from the file's first bytes, or raises for a file that is neither."""
    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist")
    if path.is_dir():
        raise ValueError(f"{label} is a directory; expected {expected}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
    except OSError as error:
        raise ValueError(f"{label} cannot be opened: {error.strerror}; expected {expected}") from error
    if not head:
        raise ValueError(f"{label} is empty (0 bytes); expected {expected}")
    if head == _NPY_MAGIC:
        return "npy"
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    raise ValueError(f"{label} is not a NumPy file (it starts with {head!r}); expected {expected}")


def _read_error(label: str, name: str | None, error: BaseException, expected: str) -> Exception:
    where = label if name is None else f"{label}: array {name!r}"
    if isinstance(error, ValueError) and "allow_pickle" in str(error):  # numpy's refusal of object arrays
        return InputTypeError(
            f"{where} holds Python objects (dtype object), which would need pickle; "
            f"expected numeric or string arrays (pickle is refused for safety)"
        )
    return ValueError(f"{where} is damaged or truncated ({type(error).__name__}: {error}); expected {expected}")
