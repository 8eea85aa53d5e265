"""Run commands in parallel worker processes, each with its own log and thread budget, under one
progress bar.

Every job is a process of its own, never a pool worker that runs job after job: each gets a fresh
runtime with its own thread count, a log file of its own, and dies with the runner (Linux:
parent-death signal), so a runner killed with SIGKILL leaves no orphan writing into a run directory
that a resumed runner is about to restart (the workers torchrun starts for a multi-process run die
with their agent in the same way, see `metricbench.distributed`).

A job that is one `metricbench` command in one process (`Job.cli`) is forked from a forkserver that
has imported metricbench, torch, FAISS, scikit-learn and umap-learn once; started as a new interpreter,
each run paid those imports again (`make run`: 2 min 10 s to 2 min 40 s forked, 3 min 3 s to 3 min 23 s otherwise,
same numbers). Other jobs (tuning studies, torchrun launches) start as `python -m ...` processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from tqdm.auto import tqdm

from ..parent_death import exit_with_parent, exit_with_process

__all__ = ["Job", "default_workers", "run_jobs"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


# What the forkserver imports once for every forked job: a run's whole stack (torch, FAISS, scikit-learn, UMAP).
_PRELOAD = ["metricbench.cli", "metricbench.run", "sklearn.metrics", "umap"]


@dataclass(frozen=True)
class Job:
    """A command and the file its output is appended to.

    Attributes:
        cli: the `metricbench` arguments of `argv` when the job is one such command in one process; it then
            runs in a process forked from a preloaded forkserver instead of a new interpreter.
    """

    name: str
    argv: tuple[str, ...]
    log: Path
    cli: tuple[str, ...] | None = None


class _Running(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class _Forked:
    """A forked job, seen through the part of `subprocess.Popen`'s interface the runner uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self) -> int:
        self._process.join()
        return self._process.exitcode


def default_workers(workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads per worker): by default one worker per core and a fair share of the cores each."""
    cores = os.cpu_count() or 1
    workers = workers or cores
    return workers, threads or max(1, cores // workers)


def _run_forked(cli: tuple[str, ...], log: str, threads: int, runner: int, environ: dict[str, str]) -> None:
    """A forked job's body: die with the runner, take its environment, log to `log`, limit threads, run
    `metricbench *cli`."""
    exit_with_process(runner)
    os.environ.clear()  # the runner's environment now, not the one the forkserver started with
    os.environ.update(environ)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    import torch
    from threadpoolctl import threadpool_limits

    from metricbench.cli import main

    torch.set_num_threads(threads)
    with threadpool_limits(threads):  # BLAS and OpenMP pools the forkserver loaded before the limit was known
        code = main(list(cli))
    sys.exit(code)  # multiprocessing flushes, runs the finalizers (semaphores of the run's libraries) and exits


@contextlib.contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    """The thread variables set to `threads` meanwhile: the forkserver, started by the first forked job, keeps them."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _start(job: Job, threads: int) -> _Running:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a", encoding="utf-8") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(job.argv)}\n")
    if job.cli is not None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        process = context.Process(target=_run_forked, args=(job.cli, str(job.log), threads, os.getpid(),
                                                             dict(os.environ)), name=job.name)
        with _thread_environment(threads):
            process.start()
        return _Forked(process)
    env = {**os.environ, **{name: str(threads) for name in _THREAD_VARIABLES}, "PYTHONUNBUFFERED": "1"}
    with open(job.log, "a", encoding="utf-8") as log:
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
    running: dict[_Running, Job] = {}
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
                if process.poll() != 0:
                    failed.append(job)
                    bar.write(f"failed (exit {process.poll()}): {job.name}; see {job.log}")
                bar.update()
    except KeyboardInterrupt:
        for process in running:
            os.kill(process.pid, signal.SIGINT)
        for process in running:
            process.wait()
        raise
    finally:
        bar.close()
    return failed
