"""What SLURM says about jobs: `squeue` on any cluster, `sacct` for jobs that left the queue where the cluster
keeps accounting (submitit's own watcher asks sacct only, which reports nothing without an accounting database)."""

from __future__ import annotations

import getpass
import subprocess
from typing import Sequence

__all__ = ["ACTIVE", "job_states", "workers_gone"]

# Job states in which a job may still run (or run again: a requeued job is PENDING again).
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                    "RESIZING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED"})


def _run(argv: Sequence[str]) -> tuple[str | None, str]:
    """(standard output, or None when the command failed; why it failed)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    return (result.stdout if result.returncode == 0 else None), result.stderr.strip()


def job_states(job_ids: Sequence[str]) -> dict[str, str]:
    """SLURM state of each job id (array tasks as `<job>_<index>`) that squeue or sacct still knows.

    Raises:
        ConnectionError: squeue failed (no controller, or no SLURM here): no job's state is known, and
            a job missing from the answer must not be taken for a job that is gone.
    """
    if not job_ids:
        return {}
    states: dict[str, str] = {}
    listing, error = _run(["squeue", "--noheader", "--array", "--states=all", f"--user={getpass.getuser()}",
                           "--format=%i|%T"])
    if listing is None:
        raise ConnectionError(f"squeue failed, so the state of SLURM jobs is unknown: {error}")
    for line in listing.splitlines():
        job, _, state = line.strip().partition("|")
        states[job] = state
    missing = sorted({j.split("_")[0] for j in job_ids if j not in states})
    if missing:  # left the queue: sacct knows how it ended, on clusters that keep accounting
        accounting, _ = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                              "--jobs=" + ",".join(missing)])
        for line in (accounting or "").splitlines():
            job, _, state = line.strip().partition("|")
            states.setdefault(job, state.split()[0] if state else "UNKNOWN")  # "CANCELLED by 0" -> CANCELLED
    return {j: states[j] for j in job_ids if j in states}


def workers_gone(workers: set[str]) -> set[str]:
    """The `slurm:<job id>` workers among `workers` whose job is no longer in the queue (nor requeued);
    none while squeue cannot tell."""
    jobs = {w: w.removeprefix("slurm:") for w in workers if w.startswith("slurm:")}
    try:
        states = job_states(list(jobs.values()))
    except ConnectionError:
        return set()
    return {w for w, job in jobs.items() if states.get(job) not in ACTIVE}
