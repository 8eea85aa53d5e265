"""Image folders laid out as ``DIR/<class name>/<image file>``, listed for streaming."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .image_files import ImageFiles, make_image_files

__all__ = ["IMAGE_EXTENSIONS", "list_image_folder", "load_image_folder"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


def load_image_folder(directory: str | os.PathLike[str]) -> ImageFiles:
    """One sub-folder of images per class, listed (not read) for streaming.

    Args:
        directory: The folder holding the class sub-folders.

    Returns:
        The folder's name as name, paths as :func:`list_image_folder` gives them, class names the (escaped)
        folder names, no split of its own, Recall@1, 2, 4, 8.

    Raises:
        FileNotFoundError: ``directory`` is not a directory.
        ValueError: As :func:`list_image_folder`, or a single class.
    """
    directory = Path(directory)
    paths, labels = list_image_folder(directory)
    # every path was just found as a file: skip make_image_files' second stat of each
    return make_image_files(directory.resolve().name, directory, paths, np.array(labels), source=str(directory),
                            check_files=False)


def list_image_folder(directory: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """List one sub-folder of images per class, without opening the images.

    Class folders and the images inside them are listed in sorted name order, so the result is deterministic.
    Files whose extension is not an image extension (case-insensitive) and hidden entries are skipped; class
    folders without images are ignored.

    A class folder whose name is not valid UTF-8 (bytes from another system's encoding, such as Latin-1
    ``caf\xe9``) keeps its files but is named with the undecodable bytes escaped: ``os.fsencode(name).decode(
    "utf-8", "backslashreplace")``, i.e. the four characters ``\xe9``. This is decided here, at load time, so that
    every name a run writes out (metrics, projector metadata, plots) is valid UTF-8. The paths keep the names
    as the file system has them (surrogate-escaped, ``os.fsdecode``), so that they open.

    Args:
        directory: The folder holding the class sub-folders.

    Returns:
        ``paths``: (N,) image paths relative to ``directory`` (``"<class folder>/<file>"``); ``labels``: (N,)
        each image's class-folder name, escaped as above.

    Raises:
        FileNotFoundError: ``directory`` is not a directory.
        ValueError: No images at all, or two class folders whose escaped names are equal (both named).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder not found: {directory}")
    paths, labels, folders = [], [], {}
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(
            p.name for p in class_dir.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
        )
        if not images:
            continue
        name = _display_name(class_dir.name)
        if name in folders:
            raise ValueError(
                f"{directory}: class folders {os.fsencode(folders[name].name)!r} and {os.fsencode(class_dir.name)!r} "
                f"would both be named {name!r} (bytes that are not UTF-8 are shown escaped); rename one of them"
            )
        folders[name] = class_dir
        paths.extend(f"{class_dir.name}/{image}" for image in images)
        labels.extend([name] * len(images))
    if not paths:
        raise ValueError(
            f"{directory}: no images found; expected one sub-folder per class holding "
            f"{'/'.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))} files"
        )
    return paths, labels


def _display_name(name: str) -> str:
    """The folder name as valid UTF-8: bytes that are not UTF-8 (surrogate-escaped by the OS) become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
