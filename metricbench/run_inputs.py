"""How a run's data reaches the model: rows of an in-memory array, photos decoded from disk, or the
cached features of a frozen backbone.

`RunInputs` is the one place that knows the difference; the run, evaluation and export ask it for
training batches, embeddings, thumbnails and input statistics, whatever the source.
"""

from __future__ import annotations

import dataclasses
import os
import sys
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
from .feature_cache import cached_features, files_signature, state_dict_digest
from .models import EmbeddingNet
from .sampling import rank_share
from .timm_backbone import is_timm, pretrained_input_config, timm_name
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
        photo_stats: the default per-channel (mean, std) of photos: the timm backbone's pretrained ones, else ImageNet's.
        mean, std: the model's input normalisation (shaped to broadcast against one sample).
        features: (N, F) frozen-backbone features of every dataset row (a read-only memory map of the cache),
            which then replace the images; None otherwise.
        augment: train on augmented photos (false for a frozen backbone: it sees what its features are of).
    """

    data: Dataset | ImageFiles
    transform: ImageTransform | None
    workers: int
    photo_stats: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD)
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    features: np.ndarray | None = None
    augment: bool = True

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
        """These inputs with the model's normalisation set: `data.mean`/`data.std` when given, else `photo_stats`
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
            mean, std = (torch.tensor(stats, dtype=torch.float64) for stats in self.photo_stats)
            if self.transform.channels == 1:  # gray photos: the mean of the channel statistics
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
        if self.features is not None:
            return TensorRows(torch.from_numpy(self.features[rows]), torch.from_numpy(self.data.y[rows]))
        if self.transform is None:
            return TensorRows(torch.from_numpy(self.data.x[rows]), torch.from_numpy(self.data.y[rows]))
        return StreamedImages(self.data, rows, self.transform, seed=seed, workers=self.workers,
                              skip_bad_images=skip_bad_images, pin_memory=device.type == "cuda", augment=self.augment)

    def with_frozen_backbone(self, config: ExperimentConfig, model: EmbeddingNet, device: torch.device, *,
                             progress: bool = False) -> RunInputs:
        """These inputs for a model whose timm trunk is frozen (`model.freeze_backbone`): un-augmented photos,
        and with `train.feature_cache` the trunk's features of every row, from the on-disk cache (computed
        once per trunk weights, dataset files, transform, normalisation and precision; shared by every run).
        `model` then reads features (`takes_features`): it runs its head only."""
        inputs = dataclasses.replace(self, augment=False)
        if config.train.feature_cache:
            inputs = dataclasses.replace(inputs, features=cached_features(
                self._feature_key(model, config.train.precision),
                lambda: self._trunk_features(model, device, progress=progress), log=_log))
        model.takes_features = inputs.features is not None
        return inputs

    def _feature_key(self, model: EmbeddingNet, precision: str) -> dict:
        """Everything the trunk's features depend on."""
        import timm

        photos = self.transform is not None
        return {"format": 1, "torch": torch.__version__, "timm": timm.__version__,
                "trunk": type(model.backbone.trunk).__name__, "weights": state_dict_digest(model.backbone.trunk),
                "dataset": self.data.fingerprint, "rows": len(self.data),
                "files": files_signature([self.data.path(row) for row in range(len(self.data))]) if photos else None,
                "transform": dataclasses.asdict(self.transform) if photos else None,
                "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist(), "precision": precision}

    def _trunk_features(self, model: EmbeddingNet, device: torch.device, *, progress: bool) -> np.ndarray:
        trunk = _TrunkFeatures(model).to(device)
        rows = np.arange(len(self.data))
        if self.transform is None:
            return embed(trunk, torch.from_numpy(self.data.x), device=device).numpy()
        return embed_images(trunk, self.data, rows, self.transform, device=device, workers=self.workers,
                            progress=progress).numpy()

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
        if self.features is not None:
            local = embed(model, torch.from_numpy(self.features[mine]), device=device)
        elif self.transform is None:
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


class _TrunkFeatures(torch.nn.Module):
    """A model's trunk features as a module's output (what `embed` and `embed_images` call)."""

    def __init__(self, model: EmbeddingNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    # A timm backbone's pretrained input size and normalisation are the defaults: they are what its weights know.
    pretrained = pretrained_input_config(timm_name(config.model.arch)) if is_timm(config.model.arch) else None
    size = d.image_size or (pretrained["size"] if pretrained else (224, 224))
    transform = ImageTransform(size=tuple(size), scale=tuple(d.crop_scale), color=d.color, crop_boxes=d.crop_boxes)
    workers = default_workers() if config.train.num_workers is None else config.train.num_workers
    stats = (pretrained["mean"], pretrained["std"]) if pretrained else (IMAGENET_MEAN, IMAGENET_STD)
    return RunInputs(data, transform, workers, photo_stats=stats)
