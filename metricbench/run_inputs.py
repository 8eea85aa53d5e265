"""How a run's data reaches the model: rows of an in-memory array, or photos decoded from disk.

`RunInputs` is the one place that knows the difference; the run, evaluation and export ask it for
training batches, embeddings, thumbnails and input statistics, whatever the source.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch

from metricbench.eval.sprite import tile_size

from .config import ExperimentConfig
from .data import Dataset, Split, load_dataset, make_split
from .data.image_files import ImageFiles
from .data.image_loading import StreamedImages, default_workers, embed_images, load_images
from .data.image_transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from .distributed import all_gather_rows, current_context
from .sampling import rank_share
from .trainer import BatchSource, TensorRows, embed

__all__ = ["RunInputs", "load_inputs"]

_THUMBNAIL = 64  # px per side of the sprite thumbnails of photos, at most
_PHOTO_ONLY = ("image_size", "crop_scale", "crop_boxes", "color", "skip_bad_images")


@dataclass(frozen=True)
class RunInputs:
    """A run's data and how to feed it.

    Attributes:
        data: the dataset (in memory, or image files).
        transform: the train/eval transforms of image files; None in memory.
        workers: DataLoader workers decoding image files.
        mean, std: the model's input normalisation (shaped to broadcast against one sample).
    """

    data: Dataset | ImageFiles
    transform: ImageTransform | None
    workers: int
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample as the model sees it."""
        if self.transform is None:
            return tuple(self.data.x.shape[1:])
        return (self.transform.channels, *self.transform.size)

    def split(self, config: ExperimentConfig) -> Split:
        """A new split of the data by the config's protocol (`auto`: the dataset's own split if it has one)."""
        parts = getattr(self.data, "parts", {})
        protocol = config.data.protocol
        if protocol == "auto":
            protocol = "standard" if parts else "closed"
        split = make_split(self.data.y, protocol=protocol, seed=config.seed, val_fraction=config.data.val_fraction,
                           test_fraction=config.data.test_fraction, parts=parts if protocol == "standard" else None)
        return dataclasses.replace(split, fingerprint=self.data.fingerprint)

    def with_statistics(self, config: ExperimentConfig, train_rows: np.ndarray) -> RunInputs:
        """These inputs with the model's normalisation set: `data.mean`/`data.std` when given, else ImageNet's
        for photos and the training rows' statistics (per channel, or per feature) in memory."""
        d = config.data
        if d.mean is not None:
            mean, std = torch.tensor(d.mean, dtype=torch.float64), torch.tensor(d.std, dtype=torch.float64)
            values = self.input_shape[0]  # channels of images, features of vectors
            if mean.numel() not in (1, values):
                per = "channel" if len(self.input_shape) == 3 else "feature"
                allowed = "1 value" if values == 1 else f"1 or {values} values (one per {per})"
                raise ValueError(f"data.mean and data.std must have {allowed}, got {mean.numel()}")
        elif self.transform is not None:
            mean, std = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD, dtype=torch.float64)
            if self.transform.channels == 1:  # gray photos: the mean of ImageNet's channel statistics
                mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
        else:
            x = self.data.x[train_rows]
            axes = (0, 2, 3) if x.ndim == 4 else (0,)
            mean = torch.from_numpy(x.mean(axis=axes, dtype=np.float64))
            std = torch.from_numpy(x.std(axis=axes, dtype=np.float64))
        if len(self.input_shape) == 3:
            mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        return dataclasses.replace(self, mean=mean, std=std)

    def training_rows(self, rows: np.ndarray, *, seed: int, skip_bad_images: bool,
                      device: torch.device) -> BatchSource:
        """The trainer's batch source over the dataset rows `rows`."""
        if self.transform is None:
            return TensorRows(torch.from_numpy(self.data.x[rows]), torch.from_numpy(self.data.y[rows]))
        return StreamedImages(self.data, rows, self.transform, seed=seed, workers=self.workers,
                              skip_bad_images=skip_bad_images, pin_memory=device.type == "cuda")

    def embed(self, model: torch.nn.Module, rows: np.ndarray, device: torch.device, *,
              progress: bool = False) -> np.ndarray:
        """(len(rows), D) float32 embeddings of the dataset's `rows`, in order (eval transform for photos).

        Under torchrun each rank embeds a contiguous share and every rank receives all rows (eval mode: a
        row's embedding does not depend on the others, so this equals embedding all rows in one process).
        """
        ranks = current_context()
        rows = np.asarray(rows, dtype=np.int64)
        shared = ranks.distributed and len(rows) >= ranks.world_size
        mine = rank_share(rows, rank=ranks.rank, world_size=ranks.world_size) if shared else rows
        if self.transform is None:
            local = embed(model, torch.from_numpy(self.data.x[mine]), device=device)
        else:
            local = embed_images(model, self.data, mine, self.transform, device=device, workers=self.workers,
                                 progress=progress)
        return (all_gather_rows(local.to(device)).cpu() if shared else local).numpy()

    def metadata(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Projector metadata columns of `rows` beyond the label: a photo's path (relative to the dataset's
        folder; bytes that are not UTF-8 shown escaped) and the dataset's own columns (SOP's super_class)."""
        if self.transform is None:
            return {}
        paths = [os.fsencode(self.data.paths[row]).decode("utf-8", "backslashreplace") for row in rows]
        return {"path": np.array(paths, dtype=object), **{k: v[rows] for k, v in self.data.metadata.items()}}

    def thumbnails(self, rows: np.ndarray) -> np.ndarray | None:
        """Images of `rows` for a projector sprite: the arrays themselves in memory, eval-transformed uint8
        copies of photos at the sprite's tile size (64 px, less when many must fit its 8192 px); None for vectors."""
        if self.transform is None:
            return self.data.x[rows] if self.data.kind == "image" else None
        side = tile_size(len(rows), _THUMBNAIL, _THUMBNAIL)[0]
        small = dataclasses.replace(self.transform, size=(side, side))
        out = np.empty((len(rows), small.channels, side, side), dtype=np.uint8)
        start = 0
        for images in load_images(self.data, rows, small, batch_size=256, workers=self.workers):
            out[start:start + len(images)] = images.numpy()
            start += len(images)
        return out


def load_inputs(config: ExperimentConfig) -> RunInputs:
    """Load the config's dataset and decide how it is fed (statistics are set later, from the split).

    Raises:
        ValueError: a photo-only option (`data.image_size`, ...) set for an in-memory dataset.
    """
    d = config.data
    data = load_dataset(d.dataset, label_column=d.label_column, feature_columns=d.feature_columns)
    if not isinstance(data, ImageFiles):
        defaults = type(d)()
        changed = [key for key in _PHOTO_ONLY if getattr(d, key) != getattr(defaults, key)]
        if changed:
            raise ValueError(f"data.{changed[0]} applies only to photos streamed from disk (cub200:, cars196:, sop:, "
                             f"inshop:, files:, folder:), got dataset {d.dataset!r}")
        return RunInputs(data, None, 0)
    transform = ImageTransform(size=tuple(d.image_size or (224, 224)), scale=tuple(d.crop_scale), color=d.color,
                               crop_boxes=d.crop_boxes)
    workers = default_workers() if config.train.num_workers is None else config.train.num_workers
    return RunInputs(data, transform, workers)
