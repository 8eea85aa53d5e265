"""Embedding models: an MLP for vectors, small CNNs for images, any timm model with an embedding head.
They output embeddings only; classifier heads and centers belong to the losses."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .timm_backbone import TimmEmbedder, create_trunk, is_timm, timm_name

__all__ = ["ARCHITECTURES", "PRECISIONS", "EmbeddingNet", "LeNetPP", "MLP", "ModelConfig", "SmallCNN", "build_model"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ModelConfig:
    """Model options.

    Attributes:
        arch: `auto` (cnn for images, mlp for vectors), `mlp`, `cnn`, `lenetpp`, or `timm:<name>`: any timm
            model (`timm:resnet50.a1_in1k`) as the backbone, globally pooled, then a linear embedding head.
        embedding_dim: size D of the output embedding.
        hidden: hidden layer widths of the MLP.
        normalize: L2-normalise the output (embeddings on the unit sphere).
        head_bn: BatchNorm after the linear head of a timm backbone.
        pretrained: start a timm backbone from its pretrained weights in the Hugging Face cache (never
            downloaded implicitly); its input size and normalisation become the defaults of the data.
        weights: a local `.pth`/`.safetensors` state dict for the timm backbone (keys must fit exactly).
        freeze_bn: keep the backbone's BatchNorm layers in eval mode (running statistics frozen), as in
            A Metric Learning Reality Check.
        freeze_backbone: train the head only; the backbone runs in eval mode on un-augmented (eval-transformed)
            images, and its features are computed once and cached on disk (see `train.feature_cache`).
    """

    arch: str = "auto"
    embedding_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    normalize: bool = False
    head_bn: bool = False
    pretrained: bool = False
    weights: str | None = None
    freeze_bn: bool = False
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))  # TOML gives a list
        if is_timm(self.arch):
            timm_name(self.arch)
        elif self.arch != "auto" and self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of auto, {', '.join(ARCHITECTURES)} or timm:<name>; "
                             f"got {self.arch!r}")
        else:
            timm_only = [key for key in ("head_bn", "pretrained", "weights", "freeze_bn", "freeze_backbone")
                         if getattr(self, key)]
            if timm_only:
                raise ValueError(f"model.{timm_only[0]} applies to timm backbones (model.arch = \"timm:<name>\"), "
                                 f"got model.arch {self.arch!r}")
        if self.pretrained and self.weights is not None:
            raise ValueError("model.pretrained and model.weights both give the backbone's weights; set one")
        if self.weights is not None:  # the saved config names the same file from any working directory
            object.__setattr__(self, "weights", os.path.abspath(os.path.expanduser(self.weights)))
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
    """Standardise the input with statistics of the training split (or the backbone's pretrained ones, for
    photos), run the backbone, optionally L2-normalise. The statistics are buffers, so a checkpoint embeds
    new data on its own. uint8 images (streamed photos) are scaled to [0, 1] first, here rather than in the
    decoding workers, so that a quarter of float32's bytes travels from the workers and to the device.

    Mixed precision (`precision` bf16/fp16) autocasts the backbone only: embeddings leave as float32, so
    normalisation, mining and margins are exact. A frozen timm trunk (`freeze_backbone`) stays in eval mode and
    has no gradient; `takes_features = True` then makes the net read the trunk's (cached) features instead of
    images, and run the head only.
    """

    def __init__(self, backbone: nn.Module, mean: Tensor, std: Tensor, normalize: bool = False, *,
                 precision: str = "fp32", freeze_bn: bool = False, freeze_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))  # constant features must not divide by 0
        self.normalize = normalize
        self.precision = precision
        self.freeze_bn = freeze_bn
        self.freeze_backbone = freeze_backbone
        self.takes_features = False
        if freeze_backbone:
            self.backbone.trunk.requires_grad_(False)
            self.backbone.trunk.eval()

    def train(self, mode: bool = True) -> EmbeddingNet:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.trunk.eval()
        elif self.freeze_bn:
            for module in self.backbone.trunk.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _autocast(self, x: Tensor) -> torch.autocast:
        dtype = PRECISIONS[self.precision]
        return torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32)

    def _standardised(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            x = x / 255  # true division: float32 in one pass
        return (x - self.mean) / self.std

    def features(self, x: Tensor) -> Tensor:
        """(B, ...) images → (B, F) features of a timm trunk (what a frozen backbone's cache holds), float32."""
        with self._autocast(x):
            return self.backbone.trunk(self._standardised(x)).float()

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) inputs (float, or uint8 images 0-255; trunk features when `takes_features`) → (B, D) float32."""
        with self._autocast(x):
            z = self.backbone.head(x) if self.takes_features else self.backbone(self._standardised(x))
        z = z.float()
        return F.normalize(z, dim=1) if self.normalize else z


def build_model(config: ModelConfig, *, input_shape: tuple[int, ...], mean: Tensor, std: Tensor,
                precision: str = "fp32", load_weights: bool = True) -> EmbeddingNet:
    """Build the embedding model for inputs of `input_shape` (one sample, without the batch axis).

    `mean`/`std` broadcast against one sample: per-feature for vectors, scalars for images.
    `load_weights = False` leaves a timm backbone randomly initialised (a checkpoint's state is loaded next).
    """
    arch = config.arch
    if arch == "auto":
        arch = "cnn" if len(input_shape) == 3 else "mlp"
    if arch == "mlp":
        backbone = MLP(int(torch.tensor(input_shape).prod()), config.embedding_dim, config.hidden)
    elif len(input_shape) != 3:
        raise ValueError(f"model.arch {arch!r} needs images (C, H, W), got samples of shape {tuple(input_shape)}")
    elif is_timm(arch):
        trunk = create_trunk(timm_name(arch), in_chans=input_shape[0], pretrained=config.pretrained and load_weights,
                             weights=config.weights if load_weights else None)
        backbone = TimmEmbedder(trunk, config.embedding_dim, head_bn=config.head_bn)
    else:
        backbone = ARCHITECTURES[arch](tuple(input_shape), config.embedding_dim)
    return EmbeddingNet(backbone, mean, std, normalize=config.normalize, precision=precision,
                        freeze_bn=config.freeze_bn, freeze_backbone=config.freeze_backbone)
