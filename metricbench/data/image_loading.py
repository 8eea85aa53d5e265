"""Photos streamed through ``torch.utils.data.DataLoader`` workers: training batches, embedding passes, thumbnails.

Memory does not grow with the dataset: workers decode only the batches in flight. Training crops are
repeatable whatever the number of workers: each image of an epoch gets its own seed, drawn from
``(seed, epoch)``, and its crop is drawn from that seed alone, so a resumed run sees the batches an
uninterrupted one would.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from .image_files import ImageFiles
from .image_transforms import ImageTransform, UnreadableImage

__all__ = ["StreamedImages", "default_workers", "embed_images", "load_images"]


def default_workers() -> int:
    """Decoding workers when ``train.num_workers`` is unset: one per core this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


class _Decoded(Dataset):
    """Item ``(row, seed)``: image ``row`` through the train transform seeded with ``seed``, or the eval
    transform when ``seed`` is None. An unreadable file gives its message instead of an image, so that the
    main process, not a worker's traceback, reports it."""

    def __init__(self, files: ImageFiles, transform: ImageTransform) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int | None]) -> tuple[int, Tensor | None, str | None]:
        row, seed = item
        box = None if self.files.boxes is None else self.files.boxes[row]
        try:
            if seed is None:
                return row, self.transform.eval(self.files.path(row), box), None
            return row, self.transform.train(self.files.path(row), box, seed=seed), None
        except UnreadableImage as error:
            return row, None, str(error)


@dataclass(frozen=True)
class _Batch:
    rows: np.ndarray  # (b,) dataset rows of the decoded images
    images: Tensor  # (b, C, H, W) uint8
    failed: list[tuple[int, str]]  # (row, message) of the images that could not be read

    def pin_memory(self) -> _Batch:
        """Called by ``DataLoader(pin_memory=True)`` (training on CUDA): the images in page-locked memory."""
        return replace(self, images=self.images.pin_memory())


def _collate(samples: list[tuple[int, Tensor | None, str | None]]) -> _Batch:
    kept = [(row, image) for row, image, _ in samples if image is not None]
    failed = [(row, message) for row, image, message in samples if image is None]
    # default_collate stacks straight into shared memory in a worker, which is how the batch travels to the main
    # process; a private tensor would be copied there once more.
    images = default_collate([image for _, image in kept]) if kept else torch.empty((0, 0, 0, 0), dtype=torch.uint8)
    return _Batch(np.array([row for row, _ in kept], dtype=np.int64), images, failed)


def _loader(files: ImageFiles, transform: ImageTransform, batches: list[list[tuple[int, int | None]]],
            workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(_Decoded(files, transform), batch_sampler=batches, num_workers=workers, collate_fn=_collate,
                      pin_memory=pin_memory)


class StreamedImages:
    """The training rows of an :class:`ImageFiles`, decoded and augmented batch by batch (a trainer batch source).

    Args:
        files: The dataset.
        rows: (n,) dataset rows the trainer's batch indices refer to (the training split).
        transform: The run's transforms.
        seed: With the epoch, fixes every crop and flip.
        workers: DataLoader workers (0: decode in this process).
        skip_bad_images: Leave unreadable images out of their batch (counted in ``skipped``, each warned once)
            instead of stopping with the file's name.
        pin_memory: Page-locked batches, for faster copies to a GPU.
        augment: The train transform; False gives the eval transform's images (a frozen backbone sees
            exactly what its cached features were computed from).
    """

    def __init__(self, files: ImageFiles, rows: np.ndarray, transform: ImageTransform, *, seed: int, workers: int,
                 skip_bad_images: bool = False, pin_memory: bool = False, augment: bool = True) -> None:
        self.files, self.rows, self.transform = files, np.asarray(rows, dtype=np.int64), transform
        self.seed, self.workers, self.skip_bad_images, self.pin_memory = seed, workers, skip_bad_images, pin_memory
        self.augment = augment
        self.skipped: dict[int, str] = {}

    def epoch(self, batches: list[np.ndarray], epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (uint8 images (b, C, H, W), int64 labels (b,)) for each batch of training-row indices."""
        seeds = iter(np.random.default_rng([self.seed, epoch, 1]).integers(0, 2**63 - 1, sum(map(len, batches))))
        items = [[(int(row), int(next(seeds)) if self.augment else None) for row in self.rows[batch]]
                 for batch in batches]
        for batch in _loader(self.files, self.transform, items, self.workers, self.pin_memory):
            self._handle_failures(batch.failed)
            yield batch.images, torch.from_numpy(self.files.y[batch.rows])

    def _handle_failures(self, failed: list[tuple[int, str]]) -> None:
        if failed and not self.skip_bad_images:
            raise UnreadableImage(f"{failed[0][1]} (row {failed[0][0]} of dataset {self.files.name!r}); "
                                  "fix or remove the file, or set data.skip_bad_images = true to leave it out")
        for row, message in failed:
            if row not in self.skipped:
                warnings.warn(f"skipping an unreadable image: {message}", RuntimeWarning, stacklevel=3)
                self.skipped[row] = message


def load_images(files: ImageFiles, rows: np.ndarray, transform: ImageTransform, *, batch_size: int = 64,
                workers: int = 0, progress: bool = False, desc: str = "decoding") -> Iterator[Tensor]:
    """Yield the eval-transformed uint8 images of ``rows`` in order, ``batch_size`` at a time.

    Raises:
        UnreadableImage: An image cannot be decoded (named).
    """
    rows = np.asarray(rows, dtype=np.int64)
    items = [[(int(row), None) for row in rows[i: i + batch_size]] for i in range(0, len(rows), batch_size)]
    with tqdm(total=len(rows), desc=desc, unit="image", leave=False, disable=not progress) as bar:
        for batch in _loader(files, transform, items, workers, pin_memory=False):
            if batch.failed:
                raise UnreadableImage(f"{batch.failed[0][1]} (row {batch.failed[0][0]} of dataset {files.name!r})")
            bar.update(len(batch.rows))
            yield batch.images


@torch.no_grad()
def embed_images(model: torch.nn.Module, files: ImageFiles, rows: np.ndarray, transform: ImageTransform, *,
                 device: torch.device, batch_size: int = 64, workers: int = 0, progress: bool = False) -> Tensor:
    """(len(rows), D) float32 embeddings on the CPU of the eval-transformed images of ``rows``, in order."""
    was_training = model.training
    model.eval()
    out = [model(images.to(device)).float().cpu()
           for images in load_images(files, rows, transform, batch_size=batch_size, workers=workers,
                                     progress=progress, desc="embedding")]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)
