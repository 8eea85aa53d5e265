"""Embedding models: an MLP for vectors, small CNNs for images. They output embeddings only;
classifier heads and centers belong to the losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ARCHITECTURES", "EmbeddingNet", "LeNetPP", "MLP", "ModelConfig", "SmallCNN", "build_model"]


@dataclass(frozen=True)
class ModelConfig:
    """Model options.

    Attributes:
        arch: `auto` (cnn for images, mlp for vectors), `mlp`, `cnn` or `lenetpp`.
        embedding_dim: size D of the output embedding.
        hidden: hidden layer widths of the MLP.
        normalize: L2-normalise the output (embeddings on the unit sphere).
    """

    arch: str = "auto"
    embedding_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    normalize: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))  # TOML gives a list
        if self.arch != "auto" and self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of auto, {', '.join(ARCHITECTURES)}; got {self.arch!r}")
        if self.embedding_dim < 1:
            raise ValueError(f"model.embedding_dim must be >= 1, got {self.embedding_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden widths must be >= 1, got {self.hidden}")


class MLP(nn.Module):
    """Vectors (B, F) → embeddings (B, D): Linear–BatchNorm–ReLU blocks, then a linear projection."""

    def __init__(self, in_features: int, embedding_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, embedding_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=5, padding=2), nn.PReLU(c_out)]


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


class SmallCNN(nn.Module):
    """Images (B, C, H, W) → (B, D): two 5×5 conv + PReLU + max-pool stages (32, 64 channels), a
    256-unit hidden layer, a linear projection. LeNet-sized; about 1,700 images/s on 2 CPU cores."""

    def __init__(self, input_shape: tuple[int, int, int], embedding_dim: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(input_shape[0], 32), nn.MaxPool2d(2), *_conv_block(32, 64), nn.MaxPool2d(2), nn.Flatten()
        )
        self.head = nn.Sequential(
            nn.Linear(_flat_size(self.features, input_shape), 256), nn.PReLU(256), nn.Linear(256, embedding_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class LeNetPP(nn.Module):
    """LeNet++ of the center-loss paper (Wen et al., ECCV 2016, Table 1): three stages of two 5×5
    conv + PReLU (32, 64, 128 channels) each followed by 2×2 max-pool, then a linear embedding
    (D = 2 in the paper's figures). About 2.4× slower than `SmallCNN` on CPU."""

    def __init__(self, input_shape: tuple[int, int, int], embedding_dim: int) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        c_in = input_shape[0]
        for c_out in (32, 64, 128):
            stages += [*_conv_block(c_in, c_out), *_conv_block(c_out, c_out), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*stages, nn.Flatten())
        self.head = nn.Linear(_flat_size(self.features, input_shape), embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


ARCHITECTURES = {"mlp": MLP, "cnn": SmallCNN, "lenetpp": LeNetPP}


class EmbeddingNet(nn.Module):
    """Standardise the input with statistics of the training split (or ImageNet's, for photos), run the
    backbone, optionally L2-normalise. The statistics are buffers, so a checkpoint embeds new data on its own.
    uint8 images (streamed photos) are scaled to [0, 1] first, here rather than in the decoding workers,
    so that a quarter of float32's bytes travels from the workers and to the device."""

    def __init__(self, backbone: nn.Module, mean: Tensor, std: Tensor, normalize: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))  # constant features must not divide by 0
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) inputs (float, or uint8 images 0-255) → (B, D) embeddings."""
        if x.dtype == torch.uint8:
            x = x / 255  # true division: float32 in one pass
        z = self.backbone((x - self.mean) / self.std)
        return F.normalize(z, dim=1) if self.normalize else z


def build_model(config: ModelConfig, *, input_shape: tuple[int, ...], mean: Tensor, std: Tensor) -> EmbeddingNet:
    """Build the embedding model for inputs of `input_shape` (one sample, without the batch axis).

    `mean`/`std` broadcast against one sample: per-feature for vectors, scalars for images.
    """
    arch = config.arch
    if arch == "auto":
        arch = "cnn" if len(input_shape) == 3 else "mlp"
    if arch == "mlp":
        backbone = MLP(int(torch.tensor(input_shape).prod()), config.embedding_dim, config.hidden)
    elif len(input_shape) != 3:
        raise ValueError(f"model.arch {arch!r} needs images (C, H, W), got samples of shape {tuple(input_shape)}")
    else:
        backbone = ARCHITECTURES[arch](tuple(input_shape), config.embedding_dim)
    return EmbeddingNet(backbone, mean, std, normalize=config.normalize)
