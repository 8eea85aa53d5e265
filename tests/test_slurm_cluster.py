"""The one-node cluster of scripts/slurm_cluster.py runs batch jobs, requeues them, and preempts by partition."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from slurm_fixtures import slurm_cluster  # noqa: F401  (a pytest fixture)

pytestmark = pytest.mark.slow

_WAIT_S = 180  # a hang guard: requeued jobs wait cred_expire (10 s) and a scheduling pass before they start again


def _slurm(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip()


def _wait_until(condition: Callable[[], bool], what: str, cluster) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {_WAIT_S} s for {what}; squeue:\n{_slurm('squeue')}\n"
                                 f"(logs in {cluster.dir})")
        time.sleep(0.5)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _start_logging_job(starts: Path, *options: str) -> str:
    """Submit a 30 s job that appends "start <restart count>" to ``starts`` each time it starts; returns its id."""
    script = f'echo "start ${{SLURM_RESTART_COUNT:-0}}" >> {starts}; sleep 30'
    return _slurm("sbatch", "--parsable", "--requeue", f"--output={starts.parent / 'job-%j.out'}", *options,
                  "--wrap", script).split(";")[0]


def test_batch_job_writes_its_output(slurm_cluster, tmp_path):
    output = tmp_path / "hi.out"
    _slurm("sbatch", "--wait", f"--partition={slurm_cluster.partition}", f"--output={output}", "--wrap", "echo hi")
    assert output.read_text() == "hi\n"


def test_requeued_running_job_starts_again(slurm_cluster, tmp_path):
    starts = tmp_path / "starts.txt"
    job = _start_logging_job(starts, f"--partition={slurm_cluster.partition}")
    try:
        _wait_until(lambda: len(_lines(starts)) == 1, f"job {job} to start", slurm_cluster)
        _slurm("scontrol", "requeue", job)
        _wait_until(lambda: len(_lines(starts)) == 2, f"requeued job {job} to start again", slurm_cluster)
        assert _lines(starts) == ["start 0", "start 1"]
        assert "Restarts=1" in _slurm("scontrol", "show", "job", job)
    finally:
        _slurm("scancel", job)


def test_job_in_preempting_partition_requeues_a_running_job(slurm_cluster, tmp_path):
    starts = tmp_path / "starts.txt"
    job = _start_logging_job(starts, f"--partition={slurm_cluster.partition}", "--exclusive")
    urgent = None
    try:
        _wait_until(lambda: len(_lines(starts)) == 1, f"job {job} to start", slurm_cluster)
        urgent = _slurm("sbatch", "--parsable", f"--partition={slurm_cluster.preempting_partition}", "--exclusive",
                        f"--output={tmp_path / 'urgent.out'}", "--wrap", "echo urgent")
        _wait_until(lambda: len(_lines(starts)) == 2, f"preempted job {job} to start again", slurm_cluster)
        assert (tmp_path / "urgent.out").read_text() == "urgent\n"
        assert _lines(starts) == ["start 0", "start 1"]
    finally:
        _slurm("scancel", job, *([urgent] if urgent else []))
