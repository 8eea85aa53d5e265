"""Sprite sheets for the Embedding Projector: one thumbnail per embedding, in one PNG.

The projector reads tile i at row i // k, column i % k of a k x k grid with k = ceil(sqrt(N)), every
tile `single_image_dim = [width, height]` pixels, and refuses sprites larger than 8192 x 8192 px.
Images that would not fit are shrunk by area averaging (a box filter: each output pixel is the mean
of the input pixels it covers), keeping their aspect ratio.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["MAX_SPRITE_SIZE", "check_images", "make_sprite", "png_bytes", "tile_size"]

MAX_SPRITE_SIZE = 8192  # px per side; the projector's limit
_PIXELS_PER_CHUNK = 2**22  # input pixels converted and resized at once: bounds temporary memory


def check_images(images: Any, num_rows: int) -> np.ndarray:
    """Validate thumbnails and return them as a numpy array (N, C, H, W), C = 1 or 3.

    Args:
        images: (N, H, W) grayscale or (N, C, H, W) with C = 1 (grayscale) or 3 (RGB); uint8, or
            floating point in [0, 1]; numpy array or torch tensor.
        num_rows: the number of embeddings N.

    Raises:
        TypeError: on a dtype other than uint8 or floating point.
        ValueError: on a bad shape, a count other than `num_rows`, or floats outside [0, 1] or NaN.
    """
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # a torch tensor, without importing torch
        images = images.detach().cpu()
        images = (images.float() if images.is_floating_point() else images).numpy()
    array = np.asarray(images)
    if array.dtype != np.uint8 and array.dtype.kind != "f":
        raise TypeError(f"images must be uint8 or floating point in [0, 1], got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3) or 0 in array.shape[2:]:
        raise ValueError(
            f"images must have shape (N, H, W) or (N, C, H, W) with C = 1 or 3, got {np.shape(images)}"
        )
    if array.shape[0] != num_rows:
        raise ValueError(f"images must have {num_rows} images (one per embedding), got {array.shape[0]}")
    if array.dtype.kind == "f" and not ((array >= 0) & (array <= 1)).all():  # NaN fails both
        raise ValueError("images of floating point dtype must lie in [0, 1] (and not be NaN)")
    return array


def uint8_images(images: Any, num_rows: int) -> np.ndarray:
    """`check_images`, then as uint8 (N, C, H, W): floats in [0, 1] scaled to 0-255 and rounded."""
    array = check_images(images, num_rows)
    if array.dtype == np.uint8:
        return array
    return np.clip(np.rint(array.astype(np.float32) * 255), 0, 255).astype(np.uint8)


def tile_size(num_images: int, height: int, width: int, max_size: int = MAX_SPRITE_SIZE) -> tuple[int, int]:
    """(tile height, tile width) of each thumbnail: the image size, shrunk only if the sprite would
    exceed `max_size` px per side, with the aspect ratio kept (each side at least 1 px).

    Example:
        >>> tile_size(10_000, 28, 28)  # a 100 x 100 grid: 8192 // 100 = 81 px per tile fits 28 px
        (28, 28)
        >>> tile_size(1_000_000, 64, 32)  # a 1000 x 1000 grid: at most 8 px per tile
        (8, 4)
    """
    per_row = math.isqrt(num_images - 1) + 1
    limit = max_size // per_row
    if limit == 0:
        raise ValueError(
            f"images: {num_images} thumbnails do not fit a {max_size} x {max_size} px sprite even at 1 px each"
        )
    if height <= limit and width <= limit:
        return height, width
    if height >= width:
        return limit, max(1, round(width * limit / height))
    return max(1, round(height * limit / width)), limit


def _box_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix: row i averages the input pixels that output pixel i covers."""
    edges = np.arange(size_out + 1) * (size_in / size_out)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(ends, pixels + 1) - np.maximum(starts, pixels), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def make_sprite(images: np.ndarray, max_size: int = MAX_SPRITE_SIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """Tile thumbnails row-major into a square sprite sheet.

    Args:
        images: (N, C, H, W) from `check_images`.
        max_size: largest sprite side in px.

    Returns:
        (sprite, (tile_width, tile_height)): sprite is uint8 of shape (k * th, k * tw) for grayscale
        or (k * th, k * tw, 3) for RGB, k = ceil(sqrt(N)); unused tiles are black. The pair is the
        projector's `single_image_dim`.
    """
    num, channels, height, width = images.shape
    tile_h, tile_w = tile_size(num, height, width, max_size)
    per_row = math.isqrt(num - 1) + 1
    sprite = np.zeros((per_row, tile_h, per_row, tile_w, channels), dtype=np.uint8)
    resize = (tile_h, tile_w) != (height, width)
    rows_weights, cols_weights = _box_weights(height, tile_h), _box_weights(width, tile_w).T
    chunk = max(1, _PIXELS_PER_CHUNK // (channels * height * width))
    for start in range(0, num, chunk):
        tiles = images[start : start + chunk]
        if resize or tiles.dtype != np.uint8:
            tiles = tiles.astype(np.float32) * (255.0 if tiles.dtype.kind == "f" else 1.0)
            if resize:
                tiles = rows_weights @ tiles @ cols_weights  # (n, C, th, tw)
            tiles = np.clip(np.rint(tiles), 0, 255).astype(np.uint8)
        index = np.arange(start, start + len(tiles))
        sprite[index // per_row, :, index % per_row] = tiles.transpose(0, 2, 3, 1)
    sprite = sprite.reshape(per_row * tile_h, per_row * tile_w, channels)
    return (sprite[..., 0] if channels == 1 else sprite), (tile_w, tile_h)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a (H, W) grayscale or (H, W, 3) RGB uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
