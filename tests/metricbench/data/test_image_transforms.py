"""The photo transforms (`metricbench.data.image_transforms`) and their streaming (`image_loading`): repeatable crops,
torchvision's geometry and crop distribution, reduced-size decoding, bounding boxes, unreadable files."""

import random

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from metricbench.data.image_files import make_image_files
from metricbench.data.image_loading import StreamedImages, load_images
from metricbench.data.image_transforms import ImageTransform, UnreadableImage, _crop_params, _jpeg_size


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth colour field with a few soft edges: what JPEG keeps well and resampling treats like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(4, 5, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2) < (min(width, height) * 0.2) ** 2
    image = image * 0.7 + disc[..., None] * np.array([60.0, 20.0, -40.0])
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


def _files(tmp_path, sizes, *, boxes=None, fmt="jpg"):
    paths = []
    for i, (width, height) in enumerate(sizes):
        path = tmp_path / f"class_{i % 2}" / f"{i:03d}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        _photo(width, height, seed=i).save(path, quality=90) if fmt == "jpg" else _photo(width, height, i).save(path)
        paths.append(str(path.relative_to(tmp_path)))
    return make_image_files("photos", tmp_path, paths, [i % 2 for i in range(len(sizes))], boxes=boxes)


def _epoch(files, transform, *, workers, epoch=0, seed=0, skip_bad_images=False):
    rows = np.arange(len(files))
    streamed = StreamedImages(files, rows, transform, seed=seed, workers=workers, skip_bad_images=skip_bad_images)
    batches = [rows[i: i + 4] for i in range(0, len(rows), 4)]
    return streamed, list(streamed.epoch(batches, epoch))


def test_same_seed_same_crops_whatever_the_workers_and_new_crops_each_epoch(tmp_path):
    files = _files(tmp_path, [(500, 375), (375, 500), (320, 240), (500, 333)] * 2)
    _, in_process = _epoch(files, ImageTransform(), workers=0)
    _, two_workers = _epoch(files, ImageTransform(), workers=2)
    _, next_epoch = _epoch(files, ImageTransform(), workers=0, epoch=1)
    assert len(in_process) == len(two_workers) == 2
    for (a, ya), (b, yb) in zip(in_process, two_workers):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not any(torch.equal(a, b) for (a, _), (b, _) in zip(in_process, next_epoch))


def test_train_without_a_seed_draws_from_torchs_generator(tmp_path):
    files = _files(tmp_path, [(400, 300)] * 2)
    torch.manual_seed(3)
    first = ImageTransform().train(files.path(0))
    torch.manual_seed(3)
    assert torch.equal(first, ImageTransform().train(files.path(0)))


@pytest.mark.parametrize("color, channels", [("rgb", 3), ("gray", 1)])
@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_shapes_and_dtypes(tmp_path, color, channels, fmt):
    files = _files(tmp_path, [(500, 375), (375, 500), (120, 90)], fmt=fmt)
    transform = ImageTransform(size=(96, 128), color=color)
    for row in range(len(files)):
        for image in (transform.train(files.path(row), seed=row), transform.eval(files.path(row))):
            assert image.shape == (channels, 96, 128) and image.dtype == torch.uint8 and image.is_contiguous()
    _, batches = _epoch(files, transform, workers=0)
    assert [images.shape for images, _ in batches] == [(3, channels, 96, 128)]
    assert next(load_images(files, np.arange(3), transform)).shape == (3, channels, 96, 128)


def test_crops_stay_inside_the_box(tmp_path):
    # Red inside the box (x 96-352, y 64-288), blue outside; the box is on JPEG block boundaries.
    pixels = np.zeros((375, 500, 3), np.uint8)
    pixels[..., 2] = 255
    pixels[64:288, 96:352] = (255, 0, 0)
    for fmt in ("png", "jpg"):
        path = tmp_path / "c" / f"boxed.{fmt}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path, quality=95)
        files = make_image_files("boxed", tmp_path, [f"c/boxed.{fmt}", f"c/boxed.{fmt}"], [0, 1],
                                 boxes=np.array([[96, 64, 256, 224]] * 2, dtype=float))
        transform = ImageTransform(crop_boxes=True)
        for seed in range(20):
            crop = transform.train(files.path(0), files.boxes[0], seed=seed).float()
            assert crop[0].mean() > 240 and crop[2].mean() < 15, (fmt, seed)
        centre = transform.eval(files.path(0), files.boxes[0]).float()
        assert centre[0].mean() > 240 and centre[2].mean() < 15
        assert ImageTransform().eval(files.path(0)).float()[2].mean() > 30  # without the box: some blue


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (500, 500), (260, 300), (1200, 900)])
@pytest.mark.parametrize("color", ["rgb", "gray"])
def test_eval_is_torchvisions_resize_and_center_crop(tmp_path, size, color):
    files = _files(tmp_path, [size] * 2)
    mode = "RGB" if color == "rgb" else "L"
    transform = ImageTransform(color=color)
    ours = transform.eval(files.path(0))
    assert torch.equal(ours, transform.eval(files.path(0)))
    with Image.open(files.path(0)) as image:
        if mode == "L":
            image.draft("L", None)  # the luma plane, which the gray transform decodes
        reference = TF.pil_to_tensor(TF.center_crop(TF.resize(image.convert(mode), 256), 224))
    assert (ours.float() - reference.float()).abs().mean() <= 2


def test_reduced_size_decoding_is_close_to_the_full_size_crop(tmp_path, monkeypatch):
    files = _files(tmp_path, [(1600, 1200)] * 2)
    scales = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        full = self.size
        result = draft(self, mode, size)
        scales.append(full[0] // self.size[0])
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    with Image.open(files.path(0)) as image:
        full = TF.pil_to_tensor(image.convert("RGB"))
    transform = ImageTransform()
    for seed in range(8):
        ours = transform.train(files.path(0), seed=seed)
        rng = random.Random(seed)
        top, left, height, width = _crop_params(1200, 1600, transform.scale, rng)
        reference = TF.resized_crop(full, top, left, height, width, [224, 224], antialias=True)
        if rng.random() < 0.5:
            reference = reference.flip(-1)
        assert (ours.float() - reference.float()).abs().mean() <= 3, seed
    assert max(scales) >= 2  # crops of at least 448 pixels of a 1600x1200 photo decode at 1/2 or less


@pytest.mark.parametrize("height, width", [(375, 500), (500, 375), (224, 224), (10, 1000), (1000, 10), (1, 1)])
def test_crop_params_are_torchvisions_algorithm(height, width):
    class TorchDraws:  # torchvision's own draws from torch's generator, in its order
        def uniform(self, low, high):
            return torch.empty(1).uniform_(low, high).item()

        def randint(self, low, high):
            return int(torch.randint(low, high + 1, size=(1,)).item())

    reference = v2.RandomResizedCrop(224, scale=(0.16, 1.0), antialias=True)
    stub = torch.zeros(()).expand(1, height, width)
    for seed in range(200):
        torch.manual_seed(seed)
        expected = reference.make_params([stub])
        torch.manual_seed(seed)
        assert _crop_params(height, width, (0.16, 1.0), TorchDraws()) == (
            expected["top"], expected["left"], expected["height"], expected["width"])


def test_crop_params_distribution_matches_torchvisions():
    reference = v2.RandomResizedCrop(224, scale=(0.16, 1.0), antialias=True)
    stub = torch.zeros(()).expand(1, 375, 500)
    torch.manual_seed(0)
    theirs = np.array([[p["top"], p["left"], p["height"], p["width"]]
                       for p in (reference.make_params([stub]) for _ in range(4000))], float)
    ours = np.array([_crop_params(375, 500, (0.16, 1.0), random.Random(seed)) for seed in range(4000)], float)
    for column in range(4):
        assert abs(np.quantile(ours[:, column], [0.1, 0.5, 0.9]) - np.quantile(theirs[:, column], [0.1, 0.5, 0.9])
                   ).max() <= 12


def test_jpeg_header_size(tmp_path):
    image = _photo(64, 48)
    for name, options, mode in (("base", {}, "RGB"), ("progressive", {"progressive": True}, "RGB"),
                                ("gray", {}, "L"), ("cmyk", {}, "CMYK")):
        path = tmp_path / f"{name}.jpg"
        image.convert(mode).save(path, **options)
        assert _jpeg_size(bytearray(path.read_bytes())) == (64, 48), name
    image.save(tmp_path / "x.png")
    assert _jpeg_size(bytearray((tmp_path / "x.png").read_bytes())) is None
    assert _jpeg_size(bytearray(b"\xff\xd8\xff")) is None


def test_unreadable_images_are_named_or_skipped(tmp_path):
    files = _files(tmp_path, [(320, 240)] * 5)
    bad = files.path(2)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated
    (tmp_path / "class_0" / "text.jpg").write_text("not an image")
    for path in (bad, tmp_path / "class_0" / "text.jpg", tmp_path / "missing.jpg"):
        for decode in (ImageTransform().train, ImageTransform().eval):
            with pytest.raises(UnreadableImage, match=str(path)):
                decode(path)
    with pytest.raises(UnreadableImage, match=str(bad)):
        _epoch(files, ImageTransform(), workers=0)
    with pytest.raises(UnreadableImage, match=str(bad)):
        list(load_images(files, np.arange(5), ImageTransform()))
    for workers in (0, 2):
        with pytest.warns(RuntimeWarning, match="skipping an unreadable image"):
            streamed, batches = _epoch(files, ImageTransform(), workers=workers, skip_bad_images=True)
        assert [len(images) for images, _ in batches] == [3, 1]
        assert torch.equal(batches[0][1], torch.from_numpy(files.y[[0, 1, 3]]))
        assert list(streamed.skipped) == [2] and str(bad) in streamed.skipped[2]
