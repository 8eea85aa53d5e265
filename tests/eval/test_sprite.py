"""Sprite sheets: tile positions, the 8192 px limit, shrinking, dtypes and PNG encoding."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from metricbench.eval.sprite import MAX_SPRITE_SIZE, check_images, make_sprite, png_bytes, tile_size


def _numbered_tiles(num, height, width, channels=None):
    """Image i is filled with the value 10 * (i + 1) (channel c adds c), so each tile is recognisable."""
    shape = (num, height, width) if channels is None else (num, channels, height, width)
    images = np.zeros(shape, dtype=np.uint8)
    for i in range(num):
        images[i] = 10 * (i + 1)
        if channels is not None:
            images[i] += np.arange(channels, dtype=np.uint8)[:, None, None]
    return images


@pytest.mark.parametrize("num, per_row", [(1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4)])
def test_tiles_are_row_major_in_a_square_grid(num, per_row):
    sprite, single_image_dim = make_sprite(check_images(_numbered_tiles(num, 3, 5), num))
    assert single_image_dim == (5, 3)  # (width, height)
    assert sprite.shape == (per_row * 3, per_row * 5) and sprite.dtype == np.uint8
    for i in range(per_row * per_row):
        row, col = divmod(i, per_row)
        tile = sprite[row * 3 : (row + 1) * 3, col * 5 : (col + 1) * 5]
        assert (tile == (10 * (i + 1) if i < num else 0)).all(), f"tile {i}"


def test_rgb_tiles_keep_channel_order_and_one_channel_equals_grayscale():
    images = _numbered_tiles(5, 2, 2, channels=3)
    sprite, _ = make_sprite(check_images(images, 5))
    assert sprite.shape == (6, 6, 3)
    np.testing.assert_array_equal(sprite[2, 0], [40, 41, 42])  # image 3: row 1, column 0 of the 3 x 3 grid
    np.testing.assert_array_equal(sprite[3, 3], [50, 51, 52])  # image 4: row 1, column 1
    assert (sprite[4:, :] == 0).all()  # row 2 is unused
    gray = _numbered_tiles(5, 2, 2)
    one_channel, _ = make_sprite(check_images(gray[:, None], 5))
    np.testing.assert_array_equal(one_channel, make_sprite(check_images(gray, 5))[0])


def test_float_images_in_unit_range_and_torch_tensors():
    images = np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4)
    sprite, _ = make_sprite(check_images(torch.from_numpy(images), 2))
    np.testing.assert_array_equal(sprite[:4, :4], np.rint(images[0] * 255).astype(np.uint8))


def test_tile_size_stays_within_the_projector_limit():
    assert MAX_SPRITE_SIZE == 8192
    assert tile_size(10_000, 28, 28) == (28, 28)  # 100 x 100 grid of 28 px = 2800 px: no shrinking
    assert tile_size(1_000_000, 28, 28) == (8, 8)  # 1000 x 1000 grid: 8192 // 1000 = 8 px
    assert tile_size(1_000_000, 64, 32) == (8, 4)  # aspect ratio kept
    assert tile_size(1_000_000, 32, 64) == (4, 8)
    assert tile_size(4, 10_000, 10_000) == (4096, 4096)
    assert tile_size(8192**2, 3, 3) == (1, 1)
    with pytest.raises(ValueError, match=r"images: .* do not fit a 8192 x 8192 px sprite"):
        tile_size(8192**2 + 1, 1, 1)


def test_shrunk_tiles_fit_the_limit_and_report_their_size():
    images = _numbered_tiles(10, 40, 20)  # 4 x 4 grid, at most 64 // 4 = 16 px per tile
    sprite, single_image_dim = make_sprite(check_images(images, 10), max_size=64)
    assert single_image_dim == (8, 16)
    assert sprite.shape == (64, 32)
    assert (sprite[16:32, 8:16] == 60).all()  # image 5: a constant image stays constant when shrunk


def test_shrinking_averages_the_covered_pixels():
    image = np.array([[0, 4, 8, 8], [4, 0, 8, 8], [1, 1, 200, 0], [1, 1, 0, 0]], dtype=np.uint8)
    sprite, single_image_dim = make_sprite(check_images(image[None], 1), max_size=2)
    assert single_image_dim == (2, 2)
    np.testing.assert_array_equal(sprite, [[2, 8], [1, 50]])
    odd = np.arange(3 * 3, dtype=np.float64).reshape(1, 3, 3) / 8  # 3 -> 2 px: weights 2/3, 1/3
    sprite, _ = make_sprite(check_images(odd, 1), max_size=2)
    expected_row0 = (odd[0, 0, 0] * 4 + odd[0, 0, 1] * 2 + odd[0, 1, 0] * 2 + odd[0, 1, 1]) / 9
    assert sprite[0, 0] == np.rint(expected_row0 * 255)


def test_png_round_trip():
    for image in (np.arange(12, dtype=np.uint8).reshape(3, 4), np.arange(36, dtype=np.uint8).reshape(3, 4, 3)):
        decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))))
        np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(
    "images, error, words",
    [
        (np.zeros((3, 4, 4), dtype=np.int64), TypeError, "images must be uint8 or floating point"),
        (np.zeros((3, 4, 4), dtype=bool), TypeError, "images must be uint8 or floating point"),
        (np.full((3, 4, 4), 1.5), ValueError, r"must lie in \[0, 1\]"),
        (np.full((3, 4, 4), np.nan), ValueError, r"must lie in \[0, 1\]"),
        (np.zeros((3, 2, 4, 4), dtype=np.uint8), ValueError, "images must have shape"),
        (np.zeros((3, 4), dtype=np.uint8), ValueError, "images must have shape"),
        (np.zeros((3, 0, 4), dtype=np.uint8), ValueError, "images must have shape"),
        (np.zeros((2, 4, 4), dtype=np.uint8), ValueError, "images must have 3 images"),
    ],
)
def test_bad_images_name_the_argument(images, error, words):
    with pytest.raises(error, match=words):
        check_images(images, 3)
