"""`--launcher slurm`: run the pending runs and studies of `bench`, or the workers of `tune`, as SLURM jobs
through submitit; attach to the ones already submitted; follow them under one progress bar.

Layout under RUNS/slurm/:
    jobs.json      each run, study or worker -> the SLURM job it was last submitted as (written atomically)
    <job id>/      submitit's files of one job: the sbatch script, the pickled task, the result, and the log
                   `<job id>_0_log.out` / `.err` (submitit's messages, then the command's own output)

A command run again submits only what is pending: finished runs are skipped as by the local runner, a run
whose job is still queued or running is attached to, and one whose job is gone (cancelled, failed, over
its requeues) is submitted again and resumes from its checkpoint. Job states: `metricbench.bench.slurm_queue`;
how a job ended: submitit's result file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tqdm.auto import tqdm

from ..atomic import write_json
from ..config import config_to_dict
from .grid import Cell
from .jobs import Job
from .slurm_queue import ACTIVE, job_states
from .slurm_tasks import CellTask, CommandTask, TuneWorker
from .spec import BenchSpec, LossEntry, SlurmSpec

__all__ = ["Finished", "Tracked", "describe", "executor_parameters", "read_ledger", "run_on_slurm", "submit",
           "tune_on_slurm", "wait_for"]

POLL_S = 3.0  # seconds between two looks at the queue


def executor_parameters(slurm: SlurmSpec, *, name: str, threads: int, nproc: int = 1,
                        parallelism: int | None = None) -> dict[str, Any]:
    """submitit `AutoExecutor` parameters of one job: `nproc` processes (torchrun) of `threads` CPUs each."""
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": slurm.timeout_min,
        "cpus_per_task": nproc * (slurm.cpus_per_task or threads),
        "mem_gb": slurm.mem_gb,
        "gpus_per_node": slurm.gpus_per_node,
        "slurm_partition": slurm.partition,
        "slurm_account": slurm.account,
        "slurm_signal_delay_s": slurm.signal_delay_s,
        "slurm_additional_parameters": dict(slurm.sbatch) or None,
        "slurm_array_parallelism": parallelism,
    }
    return {key: value for key, value in params.items() if value is not None}


def _executor(runs: Path, slurm: SlurmSpec, params: Mapping[str, Any]) -> Any:
    import submitit

    if missing := [c for c in ("sbatch", "srun", "squeue", "scontrol") if shutil.which(c) is None]:
        raise FileNotFoundError(f"--launcher slurm needs the SLURM commands; not found on PATH: {', '.join(missing)}")
    executor = submitit.AutoExecutor(folder=runs.absolute() / "slurm" / "%j", cluster="slurm",
                                     slurm_max_num_timeout=slurm.requeues)
    executor.update_parameters(**params)
    return executor


def read_ledger(runs: Path) -> dict[str, dict[str, str]]:
    """RUNS/slurm/jobs.json: name -> {"job": job id, "identity": what it runs}."""
    path = runs / "slurm" / "jobs.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def identity(what: Any) -> str:
    """A digest of what a job computes (config or command line): a job is attached to only if it matches."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Tracked:
    """A task under way on the cluster."""

    name: str
    job: Any  # submitit.slurm.slurm.SlurmJob
    attached: bool  # submitted by an earlier command


def submit(tasks: Mapping[str, tuple[Callable[[], Any], str]], *, runs: Path, slurm: SlurmSpec,
           params: Mapping[str, Any]) -> list[Tracked]:
    """Attach to the task's job where one runs this very task, submit the others as one job array.

    Args:
        tasks: name -> (the job's function, its identity); see `identity`.
    """
    from submitit.slurm.slurm import SlurmJob

    ledger = read_ledger(runs)
    known = {name: ledger[name] for name in tasks if name in ledger}
    states = job_states([entry["job"] for entry in known.values()])
    tracked, fresh = [], []
    for name, (_, what) in tasks.items():
        entry = known.get(name)
        if entry is not None and states.get(entry["job"]) in ACTIVE:
            if entry.get("identity") == what:
                folder = runs.absolute() / "slurm" / "%j"
                tracked.append(Tracked(name, SlurmJob(folder=folder, job_id=entry["job"]), attached=True))
                continue
            subprocess.run(["scancel", entry["job"]], check=False)  # an older version of this task: replaced
        fresh.append(name)
    if fresh:
        from submitit.core.utils import FailedJobError

        executor = _executor(runs, slurm, params)
        try:
            with executor.batch():
                jobs = [executor.submit(tasks[name][0]) for name in fresh]
        except FailedJobError as err:  # sbatch's message: an unknown partition, account, option...
            raise ValueError(f"sbatch refused the jobs: {' '.join(str(err).split())}") from err
        tracked += [Tracked(name, job, attached=False) for name, job in zip(fresh, jobs)]
        ledger = read_ledger(runs)  # as fresh as possible: only this command's entries change
        ledger.update({name: {"job": job.job_id, "identity": tasks[name][1]} for name, job in zip(fresh, jobs)})
        (runs / "slurm").mkdir(parents=True, exist_ok=True)
        write_json(ledger, runs / "slurm" / "jobs.json")
    return tracked


@dataclass(frozen=True)
class Finished:
    """How a tracked task ended."""

    name: str
    ok: bool
    reason: str  # for a failure: the error or the final SLURM state
    log: Path


def _outcome(item: Tracked, state: str | None) -> tuple[bool, str] | None:
    """(ok, reason) once the job is over, None while it may still run."""
    paths = item.job.paths
    if paths.result_pickle.exists():
        from submitit.core.utils import pickle_load

        outcome, value = pickle_load(paths.result_pickle)
        if outcome == "success":
            return True, ""
        return False, str(value).strip().splitlines()[-1]
    if state in ACTIVE:
        return None
    return False, f"job ended as {state or 'gone from the queue'} without a result"


def wait_for(tracked: list[Tracked], *, desc: str, done_before: int = 0, progress: bool = True,
             poll_s: float = POLL_S) -> list[Finished]:
    """Follow the jobs until each has ended; the bar counts pending, running, done and failed tasks.

    A job that leaves the queue without a result is given three looks (a result file can take a moment
    to appear on a network file system) before it counts as failed.
    """
    remaining = list(tracked)
    finished: list[Finished] = []
    misses: dict[str, int] = {}
    bar = tqdm(total=len(tracked) + done_before, initial=done_before, desc=desc, unit="run", disable=not progress,
               dynamic_ncols=True)
    try:
        while remaining:
            try:
                states = job_states([item.job.job_id for item in remaining])
            except ConnectionError as err:  # the controller may be busy or restarting: look again later
                bar.write(f"{err}; trying again")
                time.sleep(poll_s)
                continue
            ended = []
            for item in remaining:
                outcome = _outcome(item, states.get(item.job.job_id))
                if outcome is not None and not outcome[0] and not item.job.paths.result_pickle.exists():
                    misses[item.name] = misses.get(item.name, 0) + 1
                    if misses[item.name] < 3:
                        continue
                if outcome is not None:
                    ended.append(item)
                    finished.append(Finished(item.name, outcome[0], outcome[1], item.job.paths.stdout))
                    if not outcome[0]:
                        bar.write(f"failed: {item.name} (SLURM job {item.job.job_id}): {outcome[1]}; "
                                  f"see {item.job.paths.stdout}")
            remaining = [item for item in remaining if item not in ended]
            running = sum(states.get(item.job.job_id) in ("RUNNING", "COMPLETING") for item in remaining)
            failed = sum(not f.ok for f in finished)
            bar.set_postfix_str(f"pending {len(remaining) - running}, running {running}, "
                                f"done {done_before + len(finished) - failed}, failed {failed}", refresh=False)
            bar.update(len(ended))
            if remaining:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        bar.write("stopped following the jobs; they go on running on the cluster: run the same command again "
                  "to attach to them")
        raise
    finally:
        bar.close()
    return finished


def describe(tracked: Sequence[Tracked]) -> str:
    """`3 submitted (jobs 12_0, 12_1, 12_2), 1 attached (job 11_3)`."""
    parts = []
    for attached, word in ((False, "submitted"), (True, "attached to")):
        ids = [item.job.job_id for item in tracked if item.attached == attached]
        if ids:
            parts.append(f"{len(ids)} {word} (job{'s' * (len(ids) > 1)} {', '.join(ids)})")
    return "; ".join(parts) or "nothing to submit"


def _threads(spec: BenchSpec) -> int:
    return spec.slurm.cpus_per_task or spec.threads or 1


def run_on_slurm(todo: Sequence[Cell], extra: Sequence[Job], *, runs: Path, spec: BenchSpec, desc: str,
                 done_before: int, progress: bool, wait: bool) -> list[Job] | None:
    """`bench --launcher slurm`: the unfinished cells (and the study commands `extra`) as one job array.

    Returns:
        the failed ones (named with their SLURM log), or None when `wait` is off and some are still under way.
    """
    threads, grace = _threads(spec), max(5.0, spec.slurm.signal_delay_s / 2)
    runs = runs.absolute()
    tasks: dict[str, tuple[Callable[[], Any], str]] = {
        job.name: (CommandTask(job.name, job.argv, threads=threads, grace_s=grace), identity(job.argv))
        for job in extra}
    for cell in todo:
        task = CellTask(cell, runs, spec.imports, spec.nproc_per_run, threads=threads, grace_s=grace)
        tasks[cell.key] = (task, identity(config_to_dict(cell.config)))
    params = executor_parameters(spec.slurm, name=f"metricbench-{spec.name}", threads=threads,
                                 nproc=spec.nproc_per_run, parallelism=spec.workers)
    tracked = submit(tasks, runs=runs, slurm=spec.slurm, params=params) if tasks else []
    print(f"{desc}: {describe(tracked)}; SLURM logs in {runs / 'slurm'}", flush=True)
    if not wait:
        return None if tracked else []
    finished = wait_for(tracked, desc=desc, done_before=done_before, progress=progress)
    return [Job(f.name, (), f.log) for f in finished if not f.ok]


def tune_on_slurm(spec: BenchSpec, chosen: Sequence[tuple[str, str, LossEntry]], *, out: Path, runs: Path,
                  workers: int, wait: bool, progress: bool = True) -> list[Finished] | None:
    """`tune --launcher slurm --workers N`: N jobs, each a worker of every chosen study in turn.

    The studies live in journal files under RUNS/tuning/ (or `tune.storage`) that the workers share.
    Trials left running by workers that are gone are failed first, so they are drawn again.

    Returns:
        how each worker ended, or None when `wait` is off and some are still under way.
    """
    from .tune import _study_name, release_trials

    runs, out = runs.absolute(), out.absolute()
    names = [_study_name(spec, d, p, e.label) for d, p, e in chosen]
    what = identity([config_to_dict(spec), names])
    tasks: dict[str, tuple[Callable[[], Any], str]] = {
        f"tune {' '.join(names)} worker {k}": (TuneWorker(spec, list(chosen), out=out, runs=runs,
                                                          threads=_threads(spec)), what)
        for k in range(workers)}
    ledger = read_ledger(runs)
    previous = [ledger[name]["job"] for name in tasks if name in ledger]
    if not any(state in ACTIVE for state in job_states(previous).values()):
        for dataset, protocol, entry in chosen:  # nobody works on these studies: their running trials are dead
            release_trials(spec, dataset, protocol, entry, runs, shared=True)
    params = executor_parameters(spec.slurm, name=f"metricbench-tune-{spec.name}", threads=_threads(spec))
    tracked = submit(tasks, runs=runs, slurm=spec.slurm, params=params)
    print(f"tuning {', '.join(names)}: {describe(tracked)}; SLURM logs in {runs / 'slurm'}", flush=True)
    if not wait:
        return None
    return wait_for(tracked, desc=f"{spec.name}: tuning workers", progress=progress)

