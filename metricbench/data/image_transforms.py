"""What a photo on disk becomes before the model sees it: the benchmarks' standard train and eval transforms.

Train: RandomResizedCrop (scale 0.16-1, the aspect ratios 3/4-4/3 of torchvision) to ``size``, then a horizontal
flip with probability 1/2. Eval: Resize of the shorter side to ``size * 256 / 224`` (256 for 224), then
CenterCrop to ``size``, as torchvision does them. Both optionally crop to the dataset's bounding box first (CUB, Cars).

Decoding is most of the cost (``results/perf/image_pipeline.md``), so each image is decoded once, no larger than
its crop needs, and resized once:

- The crop is drawn from the file's header alone: the size comes from a JPEG's frame header (Pillow's header
  parser for other formats), the draw is torchvision's ``RandomResizedCrop`` algorithm from a per-image
  ``random.Random`` (torch's generator costs a dozen tensor operations an image).
- A JPEG whose crop lets it shrink by 2, 4 or 8 (a crop at least twice ``size``) is decoded at that libjpeg DCT
  scale (Pillow's ``draft``). Any other JPEG (at 224 pixels, every crop of a 500x375 CUB photo) is decoded by
  torchvision's libjpeg-turbo binding straight into a tensor: Pillow's pixels without Pillow's 4-bytes-a-pixel
  buffer and its repacking. Whatever that binding refuses goes to Pillow, which decides what is unreadable.
- The crop, rounded to whole decoded pixels, is resized by ``torch.nn.functional.interpolate`` (bilinear with
  antialiasing: Pillow's BILINEAR filter, as torchvision's Resize uses it, in SIMD uint8 kernels).

Images leave as uint8 (C, H, W) tensors; the model scales them to [0, 1] (:class:`metricbench.models.EmbeddingNet`),
so workers send a quarter of float32's bytes.
"""

from __future__ import annotations

import io
import math
import random
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = ["COLOR_MODES", "IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "UnreadableImage"]

COLOR_MODES = {"rgb": "RGB", "gray": "L"}
# ImageNet statistics of torchvision's and timm's pretrained models: the normalisation photos default to.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What Pillow raises for a truncated, corrupt or not-an-image file.
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
# torchvision's decoder mode (an `ImageReadMode`) for each colour mode; "L" is the luma plane, as Pillow's
# draft("L") decodes it.
_TORCHVISION_MODES = {"RGB": "RGB", "L": "GRAY"}
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))  # RandomResizedCrop's aspect ratios


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

    def train(self, path: Path, box: np.ndarray | None = None, *, seed: int | None = None) -> torch.Tensor:
        """A random crop of the image at ``path``, flipped or not, as uint8 (C, H, W).

        Args:
            seed: Fixes the crop and the flip. None draws it from torch's global generator (seed that for
                repeatable crops).
        """
        rng = random.Random(int(torch.randint(2**63 - 1, ())) if seed is None else seed)
        photo = _read(path)
        x0, y0, x1, y1 = _region(photo.size, box if self.crop_boxes else None)
        top, left, height, width = _crop_params(round(y1 - y0), round(x1 - x0), self.scale, rng)
        crop = (x0 + left, y0 + top, x0 + left + width, y0 + top + height)
        result = _crop_and_resize(photo, COLOR_MODES[self.color], crop, self.size)
        if rng.random() < 0.5:
            result = result.flip(-1)
        return result.contiguous()

    def eval(self, path: Path, box: np.ndarray | None = None) -> torch.Tensor:
        """Resize(shorter side to size·256/224) + CenterCrop(size) of the image at ``path`` as uint8 (C, H, W);
        deterministic, and torchvision's ``Resize`` + ``CenterCrop`` to within the rounding of the resize."""
        photo = _read(path)
        region = _region(photo.size, box if self.crop_boxes else None)
        x0, x1 = _pixel_span(region[0], region[2], photo.size[0])
        y0, y1 = _pixel_span(region[1], region[3], photo.size[1])
        height, width = self.size
        # torchvision's Resize(short): the shorter side to `short`, the longer to int(short * longer / shorter).
        short = round(min(height, width) * 256 / 224)
        if x1 - x0 <= y1 - y0:
            resized_w, resized_h = short, int(short * (y1 - y0) / (x1 - x0))
        else:
            resized_w, resized_h = int(short * (x1 - x0) / (y1 - y0)), short
        whole = _crop_and_resize(photo, COLOR_MODES[self.color], (x0, y0, x1, y1), (resized_h, resized_w))
        # torchvision's CenterCrop; a resized region smaller than `size` (a narrow size) is stretched to it.
        crop_h, crop_w = min(height, resized_h), min(width, resized_w)
        top, left = int(round((resized_h - crop_h) / 2)), int(round((resized_w - crop_w) / 2))
        result = whole[:, top:top + crop_h, left:left + crop_w]
        if (crop_h, crop_w) != (height, width):
            result = _resize(result, self.size)
        return result.contiguous()


@dataclass(frozen=True)
class _Photo:
    """An image file's bytes and (width, height); ``jpeg`` when its JPEG frame header gave the size."""

    path: Path
    data: bytearray
    size: tuple[int, int]
    jpeg: bool


def _read(path: Path) -> _Photo:
    try:
        with open(path, "rb", buffering=0) as file:
            data = bytearray(file.read())  # writable, so that torch.frombuffer shares it without a warning
    except OSError as error:
        raise UnreadableImage(f"cannot read image {path}: {error}") from error
    size = _jpeg_size(data)
    if size is not None:
        return _Photo(path, data, size, jpeg=True)
    with _pillow(path, data) as image:  # another format, or a JPEG header this does not follow: Pillow reads it
        return _Photo(path, data, image.size, jpeg=False)


def _jpeg_size(data: bytearray) -> tuple[int, int] | None:
    """(width, height) from the frame header (SOFn marker) of a JPEG; None if ``data`` does not lead to one."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0-15 but DHT, JPG, DAC
            height, width = struct.unpack_from(">HH", data, at + 5)
            return (width, height) if width and height else None
        elif marker in (0xDA, 0xD9):  # scan data or the end before any frame header
            return None
        else:
            at += 2 + struct.unpack_from(">H", data, at + 2)[0]
    return None


def _pillow(path: Path, data: bytearray) -> Image.Image:
    """Pillow's view of the header of the image ``data`` read from ``path``."""
    try:
        return Image.open(io.BytesIO(data))
    except _DECODE_ERRORS as error:
        raise UnreadableImage(f"cannot read image {path}: {error}") from error


def _crop_params(height: int, width: int, scale: tuple[float, float], rng: random.Random) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop of a (height, width) image: torchvision's
    ``v2.RandomResizedCrop.make_params`` with aspect ratios 3/4-4/3, drawing from ``rng``."""
    area = height * width
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(_LOG_RATIO[0], _LOG_RATIO[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height  # ten misses: the central crop of the nearest allowed aspect ratio
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        w, h = int(round(height * (4 / 3))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _crop_and_resize(photo: _Photo, mode: str, crop: tuple[float, float, float, float],
                     size: tuple[int, int]) -> torch.Tensor:
    """Decode just enough of ``photo`` to resize its ``crop`` (x0, y0, x1, y1 in full-size pixels) to ``size``
    (height, width): uint8 (C, H, W), possibly a channels-last view."""
    height, width = size
    full_w, full_h = photo.size
    pixels = _decode(photo, mode, (math.ceil(full_w * width / (crop[2] - crop[0])),
                                   math.ceil(full_h * height / (crop[3] - crop[1]))))
    fx, fy = pixels.shape[2] / full_w, pixels.shape[1] / full_h
    x0, x1 = _pixel_span(crop[0] * fx, crop[2] * fx, pixels.shape[2])
    y0, y1 = _pixel_span(crop[1] * fy, crop[3] * fy, pixels.shape[1])
    return _resize(pixels[:, y0:y1, x0:x1], size)


def _decode(photo: _Photo, mode: str, needed: tuple[int, int]) -> torch.Tensor:
    """The pixels of ``photo`` as uint8 (C, H, W) in ``mode``, at the smallest JPEG DCT scale (1, 1/2, 1/4, 1/8)
    that keeps at least ``needed`` (width, height) pixels; possibly a channels-last view."""
    width, height = photo.size
    if (photo.jpeg and (width // needed[0] < 2 or height // needed[1] < 2)
            and width * height <= (Image.MAX_IMAGE_PIXELS or math.inf)):  # larger ones: Pillow's bomb check
        # Imported here: torchvision takes seconds to import, which runs on in-memory data need not pay.
        from torchvision.io import ImageReadMode, decode_jpeg

        try:  # full size anyway: libjpeg-turbo straight into a tensor
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec's
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(torch.frombuffer(photo.data, dtype=torch.uint8),
                                   mode=getattr(ImageReadMode, _TORCHVISION_MODES[mode]))
        except RuntimeError:
            pass  # a file torchvision's stricter checks refuse (extraneous bytes, ...): Pillow decides
    with _pillow(photo.path, photo.data) as image:
        try:
            if image.format == "JPEG":
                image.draft(mode, needed)  # the scale Pillow picks never goes below `needed`
            array = np.array(image.convert(mode) if image.mode != mode else image)  # a writable copy
        except _DECODE_ERRORS as error:
            raise UnreadableImage(f"cannot read image {photo.path}: {error}") from error
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def _resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (C, h, w) -> (C, *size), bilinear with antialiasing."""
    return F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _pixel_span(start: float, stop: float, limit: int) -> tuple[int, int]:
    """The whole pixels [first, last) nearest to the span [start, stop), at least one, inside 0..limit."""
    first = min(max(round(start), 0), limit - 1)
    return first, min(max(round(stop), first + 1), limit)


def _region(size: tuple[int, int], box: np.ndarray | None) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the whole image, or of ``box`` (x, y, width, height) clipped to it."""
    width, height = size
    if box is None:
        return 0.0, 0.0, float(width), float(height)
    x0, y0 = min(float(box[0]), width - 1.0), min(float(box[1]), height - 1.0)
    return x0, y0, max(x0 + 1.0, min(x0 + float(box[2]), width)), max(y0 + 1.0, min(y0 + float(box[3]), height))
