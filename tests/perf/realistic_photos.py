"""Photo-like JPEG content for speed benchmarks: what makes decoding cost what it costs on real photos (smooth
colour fields, blurred shapes, mid-frequency texture, sensor noise; uniform noise would not), at CUB's usual sizes."""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# (width, height): CUB's photos are mostly 500 wide, some portrait, a few smaller.
SIZES = [(500, 375)] * 6 + [(500, 333), (500, 500), (375, 500), (500, 281), (333, 500), (400, 300)]


def photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    small = rng.uniform(0, 255, size=(rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)  # low-frequency colour
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(4, 12)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.uniform(20, width / 2), y0 + rng.uniform(20, height / 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 3)))
    texture = rng.normal(0, 40, size=(height // 2 + 1, width // 2 + 1)) + 128  # feathers, foliage
    texture = np.asarray(Image.fromarray(texture.clip(0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR), np.float32) - 128
    pixels = np.asarray(image, np.float32) + texture[..., None] + rng.normal(0, 6, size=(height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
