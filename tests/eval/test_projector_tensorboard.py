"""The real client: TensorBoard's projector plugin serves an `export_projector` directory over HTTP.

Starts `python -m tensorboard.main --logdir EXPORT --host 127.0.0.1 --port 0` (the OS picks a free
port; TensorBoard prints the URL), waits for it with a deadline, queries the plugin's HTTP routes
with urllib, and always terminates the process. Loopback only; about a second end to end.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metricbench.eval import export_projector

STARTUP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 20.0


@contextlib.contextmanager
def _tensorboard(logdir: Path, scratch: Path):
    """Run TensorBoard on 127.0.0.1 and yield its base URL; stop it however the block exits."""
    log_path = scratch / "tensorboard.log"
    # TMPDIR: TensorBoard records running instances under the temp dir; keep that inside the test's.
    env = {**os.environ, "TMPDIR": str(scratch)}
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
               "--port", "0", "--load_fast", "false"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while (match := re.search(rb"http://127\.0\.0\.1:(\d+)/", log_path.read_bytes())) is None:
            if process.poll() is not None:
                pytest.fail(f"TensorBoard exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"TensorBoard did not start within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(match.group(1))}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _get(base: str, route: str, **params: str) -> tuple[bytes, str]:
    """GET a projector plugin route; return (body, content type)."""
    url = f"{base}/data/plugin/projector/{route}?{urllib.parse.urlencode(params)}"
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            pytest.fail(f"GET {url}: HTTP {error.code}: {error.read()[:500]!r}")
        except urllib.error.URLError:  # printed its URL a moment before accepting connections
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_tensorboard_projector_plugin_serves_the_export(tmp_path):
    rng = np.random.default_rng(0)
    num, dim = 37, 12
    x = (rng.standard_normal((num, dim)) * 10.0 ** rng.integers(-20, 20, size=(num, dim))).astype(np.float32)
    x[0, :2] = [-0.0, 1e-45]
    names = ["tab\there", "new\nline", "cr\rlf", "back\\slash", b"bad\xff", "日本"]
    names += [f"class {i}" for i in range(num - len(names))]
    metadata = pd.DataFrame({"name": names, "label": rng.integers(0, 5, size=num)})
    images = rng.random((num, 3, 9, 7))
    export_dir = tmp_path / "export"
    paths = export_projector(
        export_dir, x, metadata, images=images, tensor_name="test embeddings", write_bytes=True
    )

    with _tensorboard(export_dir, tmp_path) as base:
        runs, kind = _get(base, "runs")
        assert kind.startswith("application/json") and json.loads(runs) == ["."]

        info = json.loads(_get(base, "info", run=".")[0])
        [embedding] = info["embeddings"]
        assert embedding["tensorName"] == "test embeddings"
        assert embedding["tensorShape"] == [num, dim]
        assert embedding["tensorPath"] == "vectors.tsv" and embedding["metadataPath"] == "metadata.tsv"
        assert embedding["sprite"] == {"imagePath": "sprite.png", "singleImageDim": [7, 9]}

        tensor, kind = _get(base, "tensor", run=".", name="test embeddings")
        assert kind == "application/octet-stream"
        assert tensor == x.astype("<f4").tobytes()  # bit for bit, -0.0 and subnormals included

        text, kind = _get(base, "metadata", run=".", name="test embeddings")
        assert kind.startswith("text/plain")
        assert text == paths["metadata"].read_bytes()
        lines = text.decode("utf-8").split("\n")
        # A header, N rows, and the final newline.
        assert lines[0] == "name\tlabel" and len(lines) == num + 2 and lines[-1] == ""
        assert lines[1:4] == [f"tab\\there\t{metadata.label[0]}", f"new\\nline\t{metadata.label[1]}",
                              f"cr\\rlf\t{metadata.label[2]}"]

        sprite, kind = _get(base, "sprite_image", run=".", name="test embeddings")
        assert kind == "image/png" and sprite == paths["sprite"].read_bytes()
