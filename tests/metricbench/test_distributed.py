"""Training on 2 CPU processes (torchrun, gloo, loopback only) gives the result of one process.

Each torchrun launch costs a few seconds of start-up, so one launch of `distributed_cases.py` covers
every loss and the low-level checks, and two launches of `metricbench train` cover the CLI.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distributed_cases import CASES, run_case
from metricbench.checkpoint import load_checkpoint
from metricbench.cli import main
from metricbench.distributed import (
    DistributedContext,
    all_gather_rows,
    all_reduce_with_grad,
    current_context,
    gather_batch,
    gather_with_grad,
    mean_across_ranks,
    process_group,
    run_on_main,
)

HERE = Path(__file__).resolve().parent
ON_TWO_RANKS = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal within float32 summation noise, relative to the tensor's scale: a gradient element near 0 in a
    tensor whose largest element is 12 carries that 12's rounding error."""
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=1e-6 + rtol * scale)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `args` under torchrun on this machine only: rendezvous and gloo on the loopback interface."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 2 ranks saw in `distributed_cases.py`: [rank 0's, rank 1's]."""
    out = tmp_path_factory.mktemp("two-ranks")
    torchrun(str(HERE / "distributed_cases.py"), str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


# Outside torchrun: one process, nothing initialized, every helper is the identity.

def test_outside_torchrun_everything_is_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with process_group(torch.device("cpu")) as (context, device):
        assert context == DistributedContext() and context.is_main and not context.distributed
        assert device == torch.device("cpu") and current_context() == context
        x, y = torch.randn(4, 3), torch.arange(4)
        assert gather_with_grad(x) is x and all_gather_rows(x) is x and all_reduce_with_grad(x) is x
        gathered, gathered_labels = gather_batch(x, y)
        assert gathered is x and gathered_labels is y
        value = x[0, 0]
        assert mean_across_ranks({"a": value})["a"] is value
        assert run_on_main(lambda: 7) == 7
    assert not torch.distributed.is_initialized()


# On 2 ranks.

@ON_TWO_RANKS
def test_gather_batch_is_the_global_batch_and_sums_gradients_over_ranks(ranks):
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(7, 5, generator=g), torch.arange(7) % 3
    weights = torch.randn(7, 5, generator=g)
    # Every rank backpropagates the same global loss, so each row's gradient is W = 2 times its own.
    expected_grad = 2 * 2 * x * weights * (labels[:, None] + 1)
    assert [len(r["checks"]["share"]) for r in ranks] == [4, 3]  # uneven shares
    for r in ranks:
        checks = r["checks"]
        assert torch.equal(checks["gathered"], x) and torch.equal(checks["gathered_labels"], labels)
        close(checks["grad"], expected_grad[checks["share"]])


@ON_TWO_RANKS
def test_an_error_on_rank_0_reaches_every_rank_and_shares_must_be_equal(ranks):
    for r in ranks:
        assert r["errors"]["run_on_main"] == "--out exists (raised on rank 0)"
        assert r["errors"]["batch_size"] == (
            "train.batch_size must be a multiple of the number of processes (2) so that each takes an equal share "
            "of a global batch; got batch_size=33 (try 32 or 34)")


@ON_TWO_RANKS
def test_global_batchnorm_equals_batchnorm_over_the_whole_batch(ranks):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, generator=g)
    weights = torch.randn(7, 5, generator=g)
    bn = torch.nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, 5))
        bn.bias.copy_(torch.linspace(-1, 1, 5))
    x.requires_grad_(True)
    out = bn(x)
    (out * weights).sum().backward()
    for r in ranks:
        checks, share = r["checks"], r["checks"]["share"]
        assert checks["bn_class"] == "GlobalBatchNorm"
        close(checks["bn_out"], out.detach()[share])
        close(checks["bn_input_grad"], x.grad[share])
        close(checks["bn_affine_grads"], torch.cat([bn.weight.grad, bn.bias.grad]))
        close(checks["running_mean"], bn.running_mean)
        close(checks["running_var"], bn.running_var)
        assert int(checks["num_batches_tracked"]) == 1


@ON_TWO_RANKS
@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_train_like_one_on_the_same_global_batches(ranks, name):
    one = run_case(name)
    rank0, rank1 = (r["cases"][name] for r in ranks)
    assert rank0["batch_sizes"] == one["batch_sizes"]
    # Logged values are the global batch's: loss and every part, at every step.
    assert len(rank0["logged"]) == len(one["logged"]) == len(one["batch_sizes"])
    for got, want in zip(rank0["logged"], one["logged"]):
        assert got.keys() == want.keys()
        close(torch.tensor(list(got.values())), torch.tensor(list(want.values())))
    close(torch.tensor(list(rank0["means"].values())), torch.tensor(list(one["means"].values())))
    # Parameters, BatchNorm statistics, last gradients, and the loss's state (heads, centers).
    for key in ("model", "loss", "grads"):
        assert rank0[key].keys() == one[key].keys()
        for k in one[key]:
            close(rank0[key][k].float(), one[key][k].float())
            # Every rank holds the same state, bit for bit.
            assert torch.equal(rank0[key][k], rank1[key][k]), f"{key}.{k} differs between ranks"
    assert rank0["logged"] == rank1["logged"]


@ON_TWO_RANKS
@pytest.mark.slow
def test_torchrun_cli_run_equals_one_process_and_resumes_on_any_number_of_processes(tmp_path):
    # The MLP has BatchNorm (global-batch BatchNorm on 2 processes); 1,259 training rows in batches of 64 leave a
    # last batch of 43, shared unevenly. SGD, because Adam turns float noise in gradients that are 0 in exact
    # arithmetic (biases and constant inputs before BatchNorm) into lr-sized steps (see distributed_cases.run_case).
    args = ["--dataset", "digits", "--epochs", "2", "--batch-size", "64", "--lr", "0.05", "--set", "optim.name=sgd",
            "--set", "model.arch=mlp", "--set", "model.hidden=[64, 64]", "--no-progress",
            "--set", "eval.plots=false", "--set", "eval.export=false"]
    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())

    # 2 processes, stopped after epoch 1: only rank 0 writes, the checkpoint holds plain state dicts.
    two = tmp_path / "two"
    first = torchrun("-m", "metricbench", "train", *args, "--out", str(two), "--stop-after-epochs", "1", cwd=tmp_path)
    assert first.stdout.count("stopped after epoch 1") == 1
    assert load_checkpoint(two / "checkpoint.pt")["epoch"] == 1
    shutil.copytree(two, tmp_path / "two-then-one")

    # The 2-process checkpoint resumes on 2 processes (test split embedded by both, evaluated by rank 0)...
    torchrun("-m", "metricbench", "train", "--resume", "--no-progress", "--out", str(two), cwd=tmp_path)
    # ... and on 1 process.
    assert main(["train", "--resume", "--no-progress", "--out", str(tmp_path / "two-then-one")]) == 0

    for run in ("two", "two-then-one"):
        got = json.loads((tmp_path / run / "metrics.json").read_text())
        assert got["split_sizes"] == one["split_sizes"] and got["epochs"] == 2
        assert _numbers(got["test"]).keys() == _numbers(one["test"]).keys()
        for key, value in _numbers(one["test"]).items():
            assert _numbers(got["test"])[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (run, key)
        for got_epoch, want_epoch in zip(got["history"], one["history"], strict=True):
            for key, value in want_epoch.items():
                assert got_epoch[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (run, key)
        checkpoint, reference = (load_checkpoint(tmp_path / r / "checkpoint.pt") for r in (run, "one"))
        for part in ("model", "loss"):
            for key, value in reference[part].items():
                close(checkpoint[part][key].float(), value.float())
    log = np.loadtxt(tmp_path / "two" / "log.csv", delimiter=",", skiprows=1, usecols=(0, 1, 3))
    assert np.allclose(log, np.loadtxt(tmp_path / "one" / "log.csv", delimiter=",", skiprows=1, usecols=(0, 1, 3)),
                       rtol=1e-5, atol=1e-6)


def _numbers(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)):
            flat[prefix + key] = float(value)
    return flat


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_one_cuda_process_under_torchrun_trains_like_no_torchrun(tmp_path):
    """The NCCL path (process group, GPU per LOCAL_RANK, DDP with device_ids, SyncBatchNorm, collectives on
    CUDA tensors) on one GPU; the two-rank arithmetic is covered on the CPU above."""
    torchrun(str(HERE / "distributed_cases.py"), str(tmp_path), "cuda", nproc=1)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    for name in CASES:
        one = run_case(name, torch.device("cuda"))
        for key in ("model", "loss", "grads"):
            for k in one[key]:
                close(rank0["cases"][name][key][k].float(), one[key][k].float(), rtol=1e-4)
