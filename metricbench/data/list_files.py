"""The text lists that photo benchmarks ship (CUB's ``images.txt``, SOP's ``Ebay_*.txt``, In-Shop's partition):
finding the dataset's folder and parsing whitespace-separated lines, with messages that name file and line.

Parsing is plain ``str.split`` (SOP's 120,053 lines take about 0.1 s); checking that the listed photos exist
is :func:`~metricbench.data.image_files.make_image_files`' job.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ListFile", "find_dataset_folder", "read_list_file"]


@dataclass(frozen=True)
class ListFile:
    """The rows of a list file, one column of str tokens per field.

    Attributes:
        path: The file read.
        lines: (rows,) 1-based line number of each row in the file (blank lines are skipped).
        columns: Field name -> (rows,) tokens.
        header: The ``skip_lines`` lines before the rows, as read (for the caller to check).
    """

    path: Path
    lines: list[int]
    columns: dict[str, list[str]]
    header: list[str]

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, row: int) -> str:
        """``"<path>, line <n>"`` for row ``row``, the start of every message about it."""
        return f"{self.path}, line {self.lines[row]}"

    def ints(self, field: str) -> np.ndarray:
        """Column ``field`` as int64 (rows,); a token that is not an integer is named with its line."""
        return self._numbers(field, int, np.int64, "an integer")

    def floats(self, field: str) -> np.ndarray:
        """Column ``field`` as float64 (rows,); a token that is not a number is named with its line."""
        return self._numbers(field, float, np.float64, "a number")

    def _numbers(self, field: str, convert: type, dtype: type, expected: str) -> np.ndarray:
        tokens = self.columns[field]
        try:
            return np.array([convert(token) for token in tokens], dtype=dtype)
        except (ValueError, OverflowError):
            for row, token in enumerate(tokens):
                try:
                    convert(token)
                except (ValueError, OverflowError):
                    raise ValueError(f"{self.where(row)}: {field} must be {expected}, got {token!r}") from None
            raise


def find_dataset_folder(
    directory: str | os.PathLike[str], markers: Sequence[str], *, dataset: str, layout: str
) -> tuple[Path, str]:
    """The dataset's own top folder: ``directory`` itself or the one sub-folder of it that holds a marker file.

    Args:
        directory: The dataset's top folder or its parent.
        markers: Relative paths of a file that only the dataset's top folder holds, in order of preference
            (In-Shop has two layouts).
        dataset: Name used in messages (``"CUB-200-2011"``).
        layout: The expected layout in words, shown when nothing is found.

    Returns:
        The top folder and the marker found in it.

    Raises:
        FileNotFoundError: ``directory`` is not a folder, or neither it nor a sub-folder holds a marker.
        ValueError: Several sub-folders hold one (all are named).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{dataset} folder not found: {directory}")
    for marker in markers:
        if (directory / marker).is_file():
            return directory, marker
    found = []
    for child in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        marker = next((m for m in markers if (child / m).is_file()), None)
        if marker is not None:
            found.append((child, marker))
    if len(found) > 1:
        raise ValueError(f"{directory}: several {dataset} folders found: {', '.join(str(f) for f, _ in found)}; "
                         f"give the one to use")
    if not found:
        raise FileNotFoundError(f"{dataset}: {' or '.join(markers)} not found in {directory} nor in its "
                                f"sub-folders; expected the {layout}")
    return found[0]


def read_list_file(
    path: Path, fields: Sequence[str], *, layout: str, skip_lines: int = 0, spaces_in: str | None = None
) -> ListFile:
    """Read a file of whitespace-separated fields, one row per non-blank line.

    Args:
        path: The file.
        fields: Names of the fields of each line, in order.
        layout: The dataset layout expected, shown when the file is missing.
        skip_lines: Header lines before the rows (returned in ``header`` for the caller to check).
        spaces_in: The first or last field, which may itself hold spaces (a path or a class name); default:
            every line has exactly ``len(fields)`` tokens.

    Returns:
        The rows.

    Raises:
        FileNotFoundError: ``path`` is missing (its folder and the expected layout are named).
        ValueError: The file is not UTF-8 text, or a line has the wrong number of fields (file, line number,
            the line and the fields expected are named).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {path.parent}; expected the {layout}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text: {error}") from error
    count = len(fields)
    if spaces_in is None:
        split = str.split
    elif spaces_in == fields[0]:
        def split(line: str) -> list[str]:
            return line.rsplit(None, count - 1)
    elif spaces_in == fields[-1]:
        def split(line: str) -> list[str]:
            return line.split(None, count - 1)
    else:
        raise ValueError(f"spaces_in must be the first or last field of {list(fields)}, got {spaces_in!r}")
    all_lines = text.splitlines()
    lines, rows = [], []
    for number, line in enumerate(all_lines[skip_lines:], start=skip_lines + 1):
        tokens = split(line)
        if not tokens:
            continue
        if len(tokens) != count:
            raise ValueError(f"{path}, line {number}: expected {count} whitespace-separated fields "
                             f"({' '.join(fields)}), got {line!r}")
        lines.append(number)
        rows.append(tokens)
    columns = [list(column) for column in zip(*rows)] if rows else [[] for _ in fields]
    return ListFile(path=path, lines=lines, columns=dict(zip(fields, columns)), header=all_lines[:skip_lines])

