"""What a SLURM job of `metricbench bench`/`tune --launcher slurm` runs: one run, one study, or one tuning worker.

Each task is a `submitit.helpers.Checkpointable`. Shortly before the job's time limit (or on preemption)
SLURM sends USR2 (`#SBATCH --signal=USR2@signal_delay_s`); submitit's handler calls `checkpoint()`, which
stops the running command gracefully (SIGINT: `metricbench train` keeps its last epoch checkpoint and
removes any half-written file) and hands the same task back; submitit then requeues the job. The requeued
task looks at the run directory again, so it resumes from that checkpoint with `--resume` (exactly: see
`metricbench.run_dir.RunDir.state`), or does nothing when the run finished meanwhile.

The command runs as a child process in the job's process group, so it sees the job's other signals
(scancel's SIGTERM) but ignores USR2, which is the job's to handle, and dies with the job's Python process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from ..parent_death import exit_with_parent
from ..run_dir import RunDir
from .grid import Cell
from .jobs import _THREAD_VARIABLES
from .runner import _cell_jobs
from .slurm_queue import workers_gone
from .spec import BenchSpec, LossEntry

__all__ = ["CellTask", "CommandTask", "TuneWorker"]


def _child_setup(parent: int) -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the job's time-limit warning: submitit's, in the parent
    exit_with_parent(parent)


def _exited(pid: int) -> bool:
    """Whether child `pid` has exited, without reaping it (the `Popen.wait` the signal interrupted does that)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class CommandTask(submitit.helpers.Checkpointable):
    """Run a command line in the job, with `threads` threads per process; requeued as it is.

    Args:
        name: what the command is, for the log.
        argv: the command; it must continue where a previous attempt stopped (as `metricbench tune` does).
        threads: torch/BLAS/OpenMP threads per process (the job's CPUs per process).
        grace_s: how long a stopped command may take to save and exit before it is killed.
    """

    def __init__(self, name: str, argv: tuple[str, ...] = (), *, threads: int = 1, grace_s: float = 30) -> None:
        self.name, self.argv, self.threads, self.grace_s = name, tuple(argv), threads, grace_s
        self._child: subprocess.Popen | None = None

    def command(self) -> tuple[str, ...] | None:
        """The command to run now; None when there is nothing left to do."""
        return self.argv

    def __call__(self) -> str:
        argv = self.command()
        if argv is None:
            print(f"{self.name}: already finished", flush=True)
            return "done"
        print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}", flush=True)
        env = {**os.environ, **{name: str(self.threads) for name in _THREAD_VARIABLES}, "PYTHONUNBUFFERED": "1"}
        parent = os.getpid()
        self._child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                       preexec_fn=lambda: _child_setup(parent))
        code = self._child.wait()
        self._child = None
        if code != 0:
            raise RuntimeError(f"{self.name}: command exited with status {code}")
        return "done"

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit's USR2 handler: stop the command (it keeps its last checkpoint), requeue this task."""
        child = self._child
        if child is not None and not _exited(child.pid):
            print(f"{self.name}: time limit or preemption; stopping the command, the job is requeued", flush=True)
            child.send_signal(signal.SIGINT)
            deadline = time.monotonic() + self.grace_s
            while not _exited(child.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _exited(child.pid):
                child.kill()
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_child": None}  # the requeued job starts its own


class CellTask(CommandTask):
    """One cell of the grid: `metricbench train` as the local runner starts it (`runner._cell_jobs`), chosen
    when the job starts: nothing if the run is done, `--resume` when it has a checkpoint of this config,
    else a fresh run."""

    def __init__(self, cell: Cell, runs: Path, imports: tuple[str, ...], nproc: int, *, threads: int = 1,
                 grace_s: float = 30) -> None:
        super().__init__(cell.key, threads=threads, grace_s=grace_s)
        self.cell, self.runs, self.imports, self.nproc = cell, Path(runs), tuple(imports), nproc

    def command(self) -> tuple[str, ...] | None:
        state = RunDir(self.runs / self.cell.key).state(self.cell.config)
        if state == "done":
            return None
        job, = _cell_jobs([(self.cell, state)], self.runs, self.imports, self.nproc)
        return job.argv


class TuneWorker(submitit.helpers.Checkpointable):
    """One of several workers of the same studies (`metricbench tune --launcher slurm --workers N`).

    Runs `tune_study` in the job's own process for each study in turn. Trials are tagged with the SLURM
    job; a requeued worker (same job id) fails the trial it was running, so that trial is drawn again,
    and a worker fails trials of jobs that are no longer in the queue (see `metricbench.bench.tune`).
    """

    def __init__(self, spec: BenchSpec, chosen: list[tuple[str, str, LossEntry]], *, out: Path, runs: Path,
                 threads: int = 1) -> None:
        self.spec, self.chosen, self.out, self.runs, self.threads = spec, chosen, Path(out), Path(runs), threads

    def __call__(self) -> str:
        import torch
        from threadpoolctl import threadpool_limits

        from .tune import tune_study

        os.environ.update({name: str(self.threads) for name in _THREAD_VARIABLES})
        torch.set_num_threads(self.threads)
        worker = f"slurm:{submitit.JobEnvironment().job_id}"
        with threadpool_limits(self.threads):
            for dataset, protocol, entry in self.chosen:
                tune_study(self.spec, dataset, protocol, entry, out=self.out, runs=self.runs, worker=worker,
                           workers_gone=workers_gone)
        sys.stdout.flush()
        return "done"
