"""Run commands in parallel worker processes, each with its own log and thread budget, under one
progress bar.

A job is a separate `python -m metricbench ...` process rather than a forked pool worker: each gets
a clean torch runtime with its own thread count, a log file of its own, and dies with the runner
(Linux: parent-death signal), so a runner killed with SIGKILL leaves no orphan writing into a run
directory that a resumed runner is about to restart (the workers torchrun starts for a multi-process
run die with their agent in the same way, see `metricbench.distributed`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ..parent_death import exit_with_parent

__all__ = ["Job", "default_workers", "run_jobs"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    """A command and the file its output is appended to."""

    name: str
    argv: tuple[str, ...]
    log: Path


def default_workers(workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads per worker): by default one worker per core and a fair share of the cores each."""
    cores = os.cpu_count() or 1
    workers = workers or cores
    return workers, threads or max(1, cores // workers)


def _start(job: Job, threads: int) -> subprocess.Popen:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **{name: str(threads) for name in _THREAD_VARIABLES}, "PYTHONUNBUFFERED": "1"}
    with open(job.log, "a", encoding="utf-8") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(job.argv)}\n")
        log.flush()
        parent = os.getpid()
        return subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=lambda: exit_with_parent(parent))  # runs between fork and exec


def run_jobs(jobs: Sequence[Job], *, workers: int, threads: int, desc: str, done_before: int = 0,
             progress: bool = True) -> list[Job]:
    """Run `jobs`, at most `workers` at a time, each with `threads` threads; return the failed ones.

    Args:
        done_before: jobs already complete (skipped), shown as done on the bar.

    On Ctrl-C the running jobs get SIGINT too (they save what they can), the runner waits for them
    and re-raises KeyboardInterrupt.
    """
    pending = list(jobs)
    running: dict[subprocess.Popen, Job] = {}
    failed: list[Job] = []
    bar = tqdm(total=len(jobs) + done_before, initial=done_before, desc=desc, unit="run", disable=not progress,
               dynamic_ncols=True)
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                running[_start(job, threads)] = job
            bar.set_postfix_str(", ".join(j.name for j in running.values()), refresh=False)
            time.sleep(0.2)
            for process in [p for p in running if p.poll() is not None]:
                job = running.pop(process)
                if process.returncode != 0:
                    failed.append(job)
                    bar.write(f"failed (exit {process.returncode}): {job.name}; see {job.log}")
                bar.update()
    except KeyboardInterrupt:
        for process in running:
            process.send_signal(signal.SIGINT)
        for process in running:
            process.wait()
        raise
    finally:
        bar.close()
    return failed
