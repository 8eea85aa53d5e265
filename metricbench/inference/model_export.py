"""A run's embedding model as a standalone file: ONNX (any ONNX runtime) or TorchScript (LibTorch, torch.jit.load).

The exported model is the run's whole `EmbeddingNet` in float32: input standardisation (the run's mean/std, baked
in as constants), the backbone (a frozen-backbone run's trunk included: it reads images, never cached features),
and the L2 normalisation when `model.normalize` is set. Its input contract is the float path of `EmbeddingNet`:

- input `x`: float32 (batch, *sample shape), the batch axis dynamic;
- photos: (batch, C, H, W) in [0, 1], C = 3 (RGB) or 1 (gray), H x W = the run's `data.image_size`, prepared as the
  run's eval transform prepares them (shorter side resized to round(min(H, W) * 256 / 224), centre crop H x W;
  bounding-box crop first with `data.crop_boxes`), then divided by 255;
- images held in memory (digits, mnist5k, npz:, idx:): the dataset's x as `metricbench.data.load_dataset` returns it
  (float in [0, 1]); vectors (csv:, parquet:, npz:): the raw feature values, in the run's column order;
- output `embedding`: float32 (batch, D).

`FILE.json` beside the model records all of this, with the mean/std, metric, normalisation and model digest.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from metricbench import __version__
from metricbench.atomic import json_text, write_files_atomically
from metricbench.run import LoadedRun

from .embed import model_digest

__all__ = ["EXPORT_FORMATS", "export_model", "model_contract"]

EXPORT_FORMATS = ("onnx", "torchscript")
_EXAMPLE_BATCH = 2  # torch.export specialises batch sizes 0 and 1: trace with 2 so the batch axis stays dynamic


def model_contract(run: LoadedRun, run_dir: str | os.PathLike, export_format: str) -> dict[str, Any]:
    """What `FILE.json` holds: the input and output contract of the exported model, and where it came from."""
    inputs, model = run.inputs, run.model
    shape = list(inputs.input_shape)
    contract: dict[str, Any] = {
        "format": export_format, "run": str(Path(run_dir).resolve()), "model_digest": model_digest(run),
        "metric": run.config.eval.metric, "normalize": bool(run.config.model.normalize),
        "input": {"name": "x", "shape": ["batch", *shape], "dtype": "float32"},
        "output": {"name": "embedding", "shape": ["batch", run.config.model.embedding_dim], "dtype": "float32"},
        "standardization": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
                            "applied": "inside the model: (x - mean) / std, per channel or feature"},
        "metricbench_version": __version__, "torch_version": torch.__version__,
    }
    if inputs.transform is not None:
        t = inputs.transform
        short = round(min(t.size) * 256 / 224)
        contract["input"].update(
            kind="photos", layout="NCHW", value_range=[0.0, 1.0], channels=t.channels, color=t.color,
            image_size=list(t.size),
            preprocess=f"decode as {t.color.upper()}, {'crop to the bounding box, ' if t.crop_boxes else ''}resize "
            f"the shorter side to {short} (bilinear, antialiased), centre-crop {t.size[0]}x{t.size[1]}, divide by 255")
    elif len(shape) == 3:
        contract["input"].update(kind="images", layout="NCHW", value_range=[0.0, 1.0], channels=shape[0],
                                 image_size=shape[1:],
                                 preprocess="the dataset's x as metricbench.data.load_dataset returns it "
                                 "(uint8 images divided by 255; digits by 16)")
    else:
        contract["input"].update(kind="vectors", value_range=None,
                                 preprocess="the raw feature values, in the training data's column order")
    return contract


def export_model(run: LoadedRun, run_dir: str | os.PathLike, out: str | os.PathLike, *, export_format: str) -> dict:
    """Write the run's model to `out` in `export_format` and its contract to `out` + ".json", atomically together.

    Returns:
        The contract written to the .json file.

    Raises:
        ValueError: an unknown format.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {export_format!r}")
    model = copy.deepcopy(run.model).cpu().eval()
    model.takes_features = False  # a frozen-backbone run exports its trunk too: the file reads images
    model.precision = "fp32"  # autocast does not export; the weights are float32 anyway
    example = torch.rand(_EXAMPLE_BATCH, *run.inputs.input_shape)
    content = _onnx_bytes(model, example) if export_format == "onnx" else _torchscript_bytes(model, example)
    contract = model_contract(run, run_dir, export_format)
    out = Path(out)
    write_files_atomically({out: content, out.with_name(out.name + ".json"): json_text(contract).encode("utf-8")})
    return contract


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on decompositions are not the user's concern
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["x"], output_names=["embedding"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    return program.model_proto.SerializeToString()


def _torchscript_bytes(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, and asked for all the same
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()
