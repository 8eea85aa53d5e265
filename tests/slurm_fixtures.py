"""A one-node SLURM cluster for tests: ``scripts/slurm_cluster.py`` started once per pytest session.

Import the fixture into a test module (``tests/conftest.py`` puts ``tests/`` on ``sys.path``) and ask for it::

    from slurm_fixtures import slurm_cluster  # noqa: F401  (a pytest fixture)

    def test_job(slurm_cluster, tmp_path):
        subprocess.run(["sbatch", "--wait", f"--partition={slurm_cluster.partition}", "--wrap", "true"], check=True)

The cluster lives in a session temporary folder; ``SLURM_CONF`` points at its slurm.conf in ``os.environ`` for the
whole session (so every SLURM command and submitit find it) and is restored afterwards. However many modules import
the fixture, the cluster starts once and stops after the last of them. Tests skip only where it cannot start at all
(not root, or the packages are missing and there is no apt-get to install them); any other failure is an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["SlurmCluster", "slurm_cluster"]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.py"
_EXIT_CANNOT_RUN = 77  # the script's "cannot run here" status (automake's skip convention)
_START_TIMEOUT_S = 900  # apt-get install included; a hang guard, not a speed requirement


@dataclass(frozen=True)
class SlurmCluster:
    """A running one-node cluster.

    Attributes:
        dir: the folder that holds its slurm.conf, logs (``slurmctld.log``, ``slurmd.log``, ``munged.log``) and state.
        conf: its slurm.conf, which ``SLURM_CONF`` names while the session runs.
        partition: the default partition, for ordinary jobs.
        preempting_partition: jobs submitted here requeue jobs of ``partition`` when the node is full.
    """

    dir: Path
    conf: Path
    partition: str = "debug"
    preempting_partition: str = "urgent"


class _Session:
    """The session's one cluster, shared by the fixture's instances in every module that imports it."""

    cluster: SlurmCluster | None = None
    skip_reason: str | None = None
    failure: str | None = None  # a failed start is not retried by every module that asks again
    users = 0
    saved_conf: str | None = None


def _script(action: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), action, str(folder)], capture_output=True, text=True,
                          timeout=_START_TIMEOUT_S)


def _acquire(tmp_path_factory: pytest.TempPathFactory) -> SlurmCluster:
    if _Session.skip_reason is not None:
        pytest.skip(_Session.skip_reason)
    if _Session.failure is not None:
        raise RuntimeError(_Session.failure)
    if _Session.cluster is None:
        folder = tmp_path_factory.mktemp("slurm")
        started = _script("start", folder)
        if started.returncode == _EXIT_CANNOT_RUN:
            _Session.skip_reason = started.stderr.strip()
            pytest.skip(_Session.skip_reason)
        if started.returncode != 0:
            _script("stop", folder)  # whatever did start
            _Session.failure = (f"{SCRIPT.name} start {folder} failed (exit status {started.returncode}):\n"
                                f"{started.stdout}{started.stderr}")
            raise RuntimeError(_Session.failure)
        _Session.cluster = SlurmCluster(dir=folder, conf=folder / "slurm.conf")
        _Session.saved_conf = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(_Session.cluster.conf)
    _Session.users += 1
    return _Session.cluster


def _release() -> None:
    _Session.users -= 1
    if _Session.users > 0 or _Session.cluster is None:
        return
    cluster, _Session.cluster = _Session.cluster, None
    if _Session.saved_conf is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = _Session.saved_conf
    stopped = _script("stop", cluster.dir)
    if stopped.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} stop {cluster.dir} failed (exit status {stopped.returncode}):\n"
                           f"{stopped.stdout}{stopped.stderr}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node SLURM cluster, with ``SLURM_CONF`` set for the session; stopped at its end."""
    cluster = _acquire(tmp_path_factory)
    try:
        yield cluster
    finally:
        _release()
