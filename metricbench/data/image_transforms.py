"""What a photo on disk becomes before the model sees it: the benchmarks' standard train and eval transforms.

Train: RandomResizedCrop (scale 0.16-1, the aspect ratios 3/4-4/3 of torchvision) to ``size``, then a horizontal
flip with probability 1/2. Eval: Resize of the shorter side to ``size * 256 / 224`` (256 for 224), then
CenterCrop to ``size``. Both optionally crop to the dataset's bounding box first (CUB, Cars).

The crop parameters come from torchvision's ``v2.RandomResizedCrop``, before anything is decoded, so that two
things are cheaper than torchvision's PIL pipeline: a JPEG is decoded at the smallest of libjpeg's 1/2, 1/4, 1/8
scales that still gives at least ``size`` pixels over the crop (Pillow's ``draft``), and the crop and resize are
one Pillow ``resize(box=...)`` call. Images leave as uint8 (C, H, W) tensors; the model scales them to [0, 1]
(:class:`metricbench.models.EmbeddingNet`), so workers send a quarter of float32's bytes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

__all__ = ["COLOR_MODES", "IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "UnreadableImage"]

COLOR_MODES = {"rgb": "RGB", "gray": "L"}
# ImageNet statistics of torchvision's and timm's pretrained models: the normalisation photos default to.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What Pillow raises for a truncated, corrupt or not-an-image file.
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; the message names it."""


@dataclass(frozen=True)
class ImageTransform:
    """The train and eval transforms of one run.

    Attributes:
        size: (height, width) of the images the model sees.
        scale: RandomResizedCrop's range of crop areas, as fractions of the image (or box).
        color: ``"rgb"`` or ``"gray"``.
        crop_boxes: crop to the dataset's bounding box (when it has boxes) before anything else.
    """

    size: tuple[int, int] = (224, 224)
    scale: tuple[float, float] = (0.16, 1.0)
    color: str = "rgb"
    crop_boxes: bool = False

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    def train(self, path: Path, box: np.ndarray | None = None) -> torch.Tensor:
        """A random crop of the image at ``path`` (the global torch RNG draws it: seed it for repeatable crops)."""
        with _open(path) as image:
            region = _region(image.size, box if self.crop_boxes else None)
            stub = torch.zeros(()).expand(1, round(region[3] - region[1]), round(region[2] - region[0]))
            params = _random_crop(self.scale).make_params([stub])  # torchvision's draw, on the region's size
            left, top = region[0] + params["left"], region[1] + params["top"]
            crop = (left, top, left + params["width"], top + params["height"])
            result = self._crop_and_resize(image, path, crop)
        if torch.rand(1).item() < 0.5:
            result = result.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _to_tensor(result)

    def eval(self, path: Path, box: np.ndarray | None = None) -> torch.Tensor:
        """Resize(shorter side to size·256/224) + CenterCrop(size) of the image at ``path``; deterministic."""
        with _open(path) as image:
            x0, y0, x1, y1 = _region(image.size, box if self.crop_boxes else None)
            height, width = self.size
            short = round(min(height, width) * 256 / 224)
            scale = short / min(x1 - x0, y1 - y0)  # resized size of the region: (x1 - x0) * scale, ...
            # The centre crop, in the region's own pixels (clipped when the resized region is smaller).
            crop_w, crop_h = min(width / scale, x1 - x0), min(height / scale, y1 - y0)
            left, top = x0 + (x1 - x0 - crop_w) / 2, y0 + (y1 - y0 - crop_h) / 2
            return _to_tensor(self._crop_and_resize(image, path, (left, top, left + crop_w, top + crop_h)))

    def _crop_and_resize(self, image: Image.Image, path: Path, crop: tuple[float, float, float, float]) -> Image.Image:
        """Decode just enough of ``image`` to resize its ``crop`` (full-size pixel coordinates) to ``size``."""
        height, width = self.size
        full_w, full_h = image.size
        mode = COLOR_MODES[self.color]
        try:
            if image.format == "JPEG":
                # The smallest DCT scale whose crop still has at least size pixels (draft never goes below it).
                image.draft(mode, (math.ceil(full_w * width / (crop[2] - crop[0])),
                                   math.ceil(full_h * height / (crop[3] - crop[1]))))
            fx, fy = image.size[0] / full_w, image.size[1] / full_h
            box = (crop[0] * fx, crop[1] * fy, crop[2] * fx, crop[3] * fy)
            converted = image.convert(mode) if image.mode != mode else image
            return converted.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        except _DECODE_ERRORS as error:
            raise UnreadableImage(f"cannot read image {path}: {error}") from error


@functools.lru_cache(maxsize=None)
def _random_crop(scale: tuple[float, float]) -> v2.RandomResizedCrop:
    return v2.RandomResizedCrop((1, 1), scale=scale, antialias=True)  # only its make_params is used


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)  # reads the header only; pixels are decoded in _crop_and_resize
    except _DECODE_ERRORS as error:
        raise UnreadableImage(f"cannot read image {path}: {error}") from error


def _region(size: tuple[int, int], box: np.ndarray | None) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the whole image, or of ``box`` (x, y, width, height) clipped to it."""
    width, height = size
    if box is None:
        return 0.0, 0.0, float(width), float(height)
    x0, y0 = min(float(box[0]), width - 1.0), min(float(box[1]), height - 1.0)
    return x0, y0, max(x0 + 1.0, min(x0 + float(box[2]), width)), max(y0 + 1.0, min(y0 + float(box[3]), height))


def _to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image)  # read-only view of Pillow's buffer: the copy below makes the tensor's own memory
    return torch.from_numpy((array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy())
