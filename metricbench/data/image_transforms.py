"""What a photo on disk becomes before the model sees it: the benchmarks' standard train and eval transforms.

Train: RandomResizedCrop (scale 0.16-1, the aspect ratios 3/4-4/3 of torchvision) to ``size``, then a horizontal
flip with probability 1/2. Eval: Resize of the shorter side to ``size * 256 / 224`` (256 for 224), then
CenterCrop to ``size``. Both optionally crop to the dataset's bounding box first (CUB, Cars).

The crop parameters come from torchvision's ``v2.RandomResizedCrop``, drawn from the file's header before any
pixel is decoded, so that each image costs one decode and one resize of just its crop:

- A JPEG that the crop lets shrink by 2, 4 or 8 (a crop at least twice ``size``) is decoded at that libjpeg DCT
  scale (Pillow's ``draft``). Any other JPEG (at 224 pixels, most crops of a 500x375 CUB photo) is decoded by
  torchvision's libjpeg-turbo binding straight into a tensor: the same pixels as Pillow, without Pillow's
  4-bytes-a-pixel buffer and its repacking into an array. Whatever that binding refuses goes to Pillow, which
  decides what is unreadable.
- The crop, rounded to whole decoded pixels, is resized by ``torch.nn.functional.interpolate`` (bilinear,
  antialiased: Pillow's filter, with SIMD kernels for uint8 that are about twice as fast as Pillow's).

Images leave as uint8 (C, H, W) tensors; the model scales them to [0, 1] (:class:`metricbench.models.EmbeddingNet`),
so workers send a quarter of float32's bytes. ``results/perf/image_pipeline.md`` has the measured speed.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

__all__ = ["COLOR_MODES", "IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "UnreadableImage"]

COLOR_MODES = {"rgb": "RGB", "gray": "L"}
# ImageNet statistics of torchvision's and timm's pretrained models: the normalisation photos default to.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What Pillow raises for a truncated, corrupt or not-an-image file.
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
# torchvision's decoder for each colour mode; "L" is the luma plane, as Pillow's draft("L") decodes it.
import os; _TV = os.environ.get("NOTV") is None
_TORCHVISION_MODES = {"RGB": ImageReadMode.RGB, "L": ImageReadMode.GRAY}


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
        """A random crop of the image at ``path`` as uint8 (C, H, W) (the global torch RNG draws it: seed it for
        repeatable crops)."""
        data, image = _open(path)
        with image:
            region = _region(image.size, box if self.crop_boxes else None)
            stub = torch.zeros(()).expand(1, round(region[3] - region[1]), round(region[2] - region[0]))
            params = _random_crop(self.scale).make_params([stub])  # torchvision's draw, on the region's size
            left, top = region[0] + params["left"], region[1] + params["top"]
            crop = (left, top, left + params["width"], top + params["height"])
            result = self._crop_and_resize(data, image, path, crop)
        if torch.rand(1).item() < 0.5:
            return result.flip(-1)
        return result

    def eval(self, path: Path, box: np.ndarray | None = None) -> torch.Tensor:
        """Resize(shorter side to size·256/224) + CenterCrop(size) of the image at ``path`` as uint8 (C, H, W);
        deterministic."""
        data, image = _open(path)
        with image:
            x0, y0, x1, y1 = _region(image.size, box if self.crop_boxes else None)
            height, width = self.size
            short = round(min(height, width) * 256 / 224)
            scale = short / min(x1 - x0, y1 - y0)  # resized size of the region: (x1 - x0) * scale, ...
            # The centre crop, in the region's own pixels (clipped when the resized region is smaller).
            crop_w, crop_h = min(width / scale, x1 - x0), min(height / scale, y1 - y0)
            left, top = x0 + (x1 - x0 - crop_w) / 2, y0 + (y1 - y0 - crop_h) / 2
            return self._crop_and_resize(data, image, path, (left, top, left + crop_w, top + crop_h))

    def _crop_and_resize(self, data: bytearray, image: Image.Image, path: Path,
                         crop: tuple[float, float, float, float]) -> torch.Tensor:
        """Decode just enough of ``image`` to resize its ``crop`` (full-size pixel coordinates) to ``size``."""
        height, width = self.size
        full_w, full_h = image.size
        pixels = _decode(data, image, path, COLOR_MODES[self.color],
                         (math.ceil(full_w * width / (crop[2] - crop[0])), math.ceil(full_h * height / (crop[3] - crop[1]))))
        fx, fy = pixels.shape[2] / full_w, pixels.shape[1] / full_h
        x0, x1 = _pixel_span(crop[0] * fx, crop[2] * fx, pixels.shape[2])
        y0, y1 = _pixel_span(crop[1] * fy, crop[3] * fy, pixels.shape[1])
        # Bilinear with antialiasing is Pillow's BILINEAR filter; uint8 in, uint8 out.
        resized = F.interpolate(pixels[None, :, y0:y1, x0:x1], size=(height, width), mode="bilinear",
                                antialias=True, align_corners=False)
        return resized[0].contiguous()


def _decode(data: bytearray, image: Image.Image, path: Path, mode: str, needed: tuple[int, int]) -> torch.Tensor:
    """The pixels of ``image`` as uint8 (C, H, W) in ``mode``, at the smallest JPEG DCT scale (1, 1/2, 1/4, 1/8)
    that keeps at least ``needed`` (width, height) pixels; possibly a channels-last view."""
    if _TV and image.format == "JPEG" and (image.size[0] // needed[0] < 2 or image.size[1] // needed[1] < 2):
        try:  # full size anyway: libjpeg-turbo straight into a tensor
            return decode_jpeg(torch.frombuffer(data, dtype=torch.uint8), mode=_TORCHVISION_MODES[mode])
        except RuntimeError:
            pass  # a file torchvision's stricter checks refuse (extraneous bytes, ...): Pillow decides
    try:
        if image.format == "JPEG":
            image.draft(mode, needed)  # the scale Pillow picks never goes below `needed`
        array = np.array(image.convert(mode) if image.mode != mode else image)  # a writable copy
    except _DECODE_ERRORS as error:
        raise UnreadableImage(f"cannot read image {path}: {error}") from error
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def _pixel_span(start: float, stop: float, limit: int) -> tuple[int, int]:
    """The whole pixels [first, last) nearest to the span [start, stop), at least one, inside 0..limit."""
    first = min(max(round(start), 0), limit - 1)
    return first, min(max(round(stop), first + 1), limit)


@functools.lru_cache(maxsize=None)
def _random_crop(scale: tuple[float, float]) -> v2.RandomResizedCrop:
    return v2.RandomResizedCrop((1, 1), scale=scale, antialias=True)  # only its make_params is used


def _open(path: Path) -> tuple[bytearray, Image.Image]:
    """The file's bytes, and Pillow's view of their header (pixels are decoded in ``_decode``)."""
    try:
        with open(path, "rb") as file:
            data = bytearray(file.read())  # writable, so that torch.frombuffer shares it without a warning
        return data, Image.open(io.BytesIO(data))
    except _DECODE_ERRORS as error:
        raise UnreadableImage(f"cannot read image {path}: {error}") from error


def _region(size: tuple[int, int], box: np.ndarray | None) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the whole image, or of ``box`` (x, y, width, height) clipped to it."""
    width, height = size
    if box is None:
        return 0.0, 0.0, float(width), float(height)
    x0, y0 = min(float(box[0]), width - 1.0), min(float(box[1]), height - 1.0)
    return x0, y0, max(x0 + 1.0, min(x0 + float(box[2]), width)), max(y0 + 1.0, min(y0 + float(box[3]), height))
