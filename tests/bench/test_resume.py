"""End to end: a benchmark killed with SIGKILL mid-way resumes to exactly the uninterrupted result."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

SPEC = """
name = "tiny"
datasets = ["digits"]
protocols = ["closed"]
seeds = [0, 1]
workers = 2
threads = 1
[base]
train.epochs = 1
eval.metric = "cosine"
[[losses]]
name = "softmax"
[[losses]]
name = "triplet-semihard"
"""


def bench(spec: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "metricbench", "bench", str(spec), "--out", str(root / "out"), "--runs",
            str(root / "runs"), "--no-progress"]


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or open files name `text` (a forked job's command line is its forkserver's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            named = [(entry / "cmdline").read_bytes().decode(errors="replace")]
            named += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(text in name for name in named):
            found.append(int(entry.name))
    return found


def kill_when_a_run_is_between_checkpoint_and_metrics(command: list[str], runs: Path) -> None:
    runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and runner.poll() is None:
        checkpoints = {p.parent for p in runs.glob("digits/closed/*/seed-*/checkpoint.pt")}
        finished = {p.parent for p in runs.glob("digits/closed/*/seed-*/metrics.json")}
        if checkpoints - finished:
            runner.send_signal(signal.SIGKILL)
            runner.wait()
            return
        time.sleep(0.02)
    pytest.fail("the runner finished or stalled before a run was caught between its checkpoint and its metrics")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with the runner through prctl")
def test_sigkill_mid_benchmark_then_resume_gives_the_uninterrupted_aggregate(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(bench(spec, whole), check=True, capture_output=True)

    kill_when_a_run_is_between_checkpoint_and_metrics(bench(spec, cut), cut / "runs")
    deadline = time.monotonic() + 10  # the workers die with the runner: nothing keeps writing
    while processes_mentioning(str(cut)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(cut)) == []
    assert not (cut / "out" / "runs.csv").exists()
    done = len(list((cut / "runs").glob("digits/closed/*/seed-*/metrics.json")))
    assert done < 4, "the kill came mid-way"

    subprocess.run(bench(spec, cut), check=True, capture_output=True)
    logs = "".join(p.read_text() for p in (cut / "runs" / "logs").glob("*.log"))
    assert " --resume" in logs, "the interrupted run continued from its checkpoint"

    timing = ["train_seconds"]
    expected = pd.read_parquet(whole / "out" / "runs.parquet").drop(columns=timing)
    got = pd.read_parquet(cut / "out" / "runs.parquet").drop(columns=timing)
    assert len(got) == 4
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(cut / "out" / "summary.csv"), pd.read_csv(whole / "out" / "summary.csv"),
                                  check_exact=True)
    for name in ("summary.md", "metrics.png", "curves.png", "distances.png", "umap-digits-closed.png"):
        assert (cut / "out" / name).stat().st_size > 0
    leftovers = [p for p in (cut / "out").rglob(".*") if p.is_file()]
    assert leftovers == [], "no temporary files"


def test_a_failing_run_is_reported_and_the_rest_aggregated(tmp_path):
    spec = tmp_path / "tiny.toml"
    bad = tmp_path / "bad.npz"  # a corrupt data file: its runs fail in their workers, not in the runner
    bad.write_bytes(b"not a zip")
    spec.write_text(SPEC.replace('datasets = ["digits"]', f'datasets = ["digits", "npz:{bad}"]')
                    .replace("seeds = [0, 1]", "seeds = [0]").replace('name = "triplet-semihard"\n', 'name = "softmax"\nlabel = "softmax-2"\n'))
    result = subprocess.run(bench(spec, tmp_path), capture_output=True, text=True)
    assert result.returncode == 1
    assert "2 job(s) failed" in result.stderr and "log" in result.stderr
    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert sorted(table["loss"]) == ["softmax", "softmax-2"] and set(table["dataset"]) == {"digits"}
    assert "Incomplete: 2 of 4 runs finished" in (tmp_path / "out" / "summary.md").read_text()
