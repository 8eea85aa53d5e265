"""BatchNorm over the global batch when training on several processes.

Each rank sees only its share of a batch, so plain BatchNorm would normalise with per-rank statistics
and train a different model from the single-process one. `torch.nn.SyncBatchNorm` fixes that on GPUs
but refuses CPU tensors ("SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone",
torch 2.13), so CPU training gets `GlobalBatchNorm`: the same statistics from two all-reduces whose
backward passes carry the gradient across ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distributed import all_reduce_with_grad

__all__ = ["GlobalBatchNorm", "convert_batchnorm"]


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (any of 1d/2d/3d) whose training statistics cover every rank's rows.

    In training mode inside a process group, the mean and the (biased) variance of each channel are
    those of the global batch, computed in two passes (sum, then sum of squared deviations, each
    all-reduced) so that no E[x²] − E[x]² cancellation creeps in; running statistics are updated
    from them exactly as `nn.BatchNorm*d` does (unbiased variance, `momentum` or the cumulative
    average), so every rank holds the same buffers. In eval mode, or without a process group, it is
    plain BatchNorm. Parameter and buffer names are those of `nn.BatchNorm*d`, so state dicts load
    either way.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"input must have shape (batch, channels, ...), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        # The all-reduces are differentiable: their backward passes all-reduce the gradient, which is how
        # each rank's rows receive the gradient of every rank's loss through the shared statistics.
        local_count = x.new_full((1,), x.numel() // x.shape[1])
        totals = all_reduce_with_grad(torch.cat([x.sum(dims), local_count]))
        count = totals[-1].detach()
        mean = totals[:-1] / count
        centered = x - mean.view(shape)
        var = all_reduce_with_grad(centered.pow(2).sum(dims)) / count
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        # The sampler never makes a global batch of one row, so count − 1 > 0.
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(var * count / (count - 1), factor)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm in `module` by its global-batch version, sharing parameters and buffers:
    `nn.SyncBatchNorm` on CUDA, `GlobalBatchNorm` elsewhere. Returns `module` (changed in place)
    unless `module` is itself a BatchNorm."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device))
    return module
