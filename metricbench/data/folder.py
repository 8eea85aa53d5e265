"""Image folders laid out as ``DIR/<class name>/<image file>``: listed for streaming, or read into memory with
Pillow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .image_files import ImageFiles, make_image_files

__all__ = ["IMAGE_EXTENSIONS", "list_image_folder", "load_image_folder", "read_image_folder"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


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


def read_image_folder(
    directory: str | os.PathLike[str], *, image_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one sub-folder of images per class.

    Images are listed as :func:`list_image_folder` lists them (sorted; hidden and non-image files skipped;
    class-folder names that are not UTF-8 shown escaped). Images are grayscale unless any image has colour (an RGB
    pixel whose channels differ; colour-mode images whose pixels are all gray count as gray), in which case all
    images are RGB. Alpha is dropped; animated images give their first frame.

    Args:
        directory: The folder holding the class sub-folders.
        image_size: (height, width) to resize every image to with bilinear filtering. Default: no resizing, and
            all images must have the same size.

    Returns:
        ``x``: uint8 images, (N, H, W) when grayscale or (N, 3, H, W) when colour; ``labels``: (N,) str array of
        class-folder names (escaped as above).

    Raises:
        FileNotFoundError: ``directory`` is not a directory.
        ValueError: No images at all, an unreadable or corrupt image (named), an image whose size differs from the
            first one's while ``image_size`` is None (both named), two class folders whose escaped names are equal
            (both named), or a bad ``image_size``.
    """
    size = _check_image_size(image_size)
    directory = Path(directory)
    paths, labels = list_image_folder(directory)
    files = [directory / path for path in paths]
    arrays = []
    for path in files:
        array = _read_image(path, size)
        if size is None and arrays and array.shape[:2] != arrays[0].shape[:2]:
            first = arrays[0].shape
            raise ValueError(
                f"images must all have the same size unless image_size is given: {files[0]} is "
                f"{first[0]}x{first[1]} (HxW) but {path} is {array.shape[0]}x{array.shape[1]}"
            )
        arrays.append(array)
    if any(a.ndim == 3 for a in arrays):  # one colour image makes them all RGB
        arrays = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
        return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2)), np.array(labels)
    return np.stack(arrays), np.array(labels)


def _display_name(name: str) -> str:
    """The folder name as valid UTF-8: bytes that are not UTF-8 (surrogate-escaped by the OS) become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _check_image_size(image_size: tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size)
    ):
        raise ValueError(f"image_size must be (height, width) with two positive ints, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Returns uint8 (H, W) for a gray image or (H, W, 3) for a colour one, resized to ``size`` when given."""
    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("L" if image.mode in _GRAY_MODES else "RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # Pillow takes (width, height)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 3 and (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
        return np.ascontiguousarray(array[..., 0])  # stored as RGB but gray: R = G = B, so L = R exactly
    return array
