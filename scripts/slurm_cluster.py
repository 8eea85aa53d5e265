#!/usr/bin/env python3
"""Start, stop and inspect a one-node SLURM cluster whose whole state lives in one directory.

    python scripts/slurm_cluster.py start DIR    # installs the packages if needed, starts munged, slurmctld, slurmd
    export SLURM_CONF=DIR/slurm.conf             # start prints this line; every SLURM command reads it
    sbatch --wait --wrap hostname
    python scripts/slurm_cluster.py status DIR   # the daemons, sinfo and squeue
    python scripts/slurm_cluster.py stop DIR     # cancels the jobs, then stops the three daemons DIR's pid files name

For trying the SLURM launcher of `metricbench bench`/`tune` on one machine, and for the tests
(`tests/slurm_fixtures.py`). Standard library only, so it runs before the virtual environment exists. Needs root:
slurmd starts each job as its user. There is no accounting database, so `sacct` fails ("Slurm accounting storage is
disabled"); `squeue --states=all` and `scontrol show job` know a job until 5 minutes (MinJobAge) after it ends.

What `start` does:
  1. If `munged`, `slurmctld`, `slurmd` or `sbatch` is missing and we are root with apt-get, installs Debian's
     `munge slurmctld slurmd slurm-client` (running `apt-get update` first only when apt knows no `slurmctld`).
  2. Writes a random munge key to DIR/munge/munge.key (owner: us, mode 0400) and starts munged with its key, socket,
     pid file, log and seed under DIR; SLURM finds that socket through `AuthInfo=socket=...`.
  3. Writes DIR/slurm.conf: this host as controller and only node (addressed as 127.0.0.1, so the host name need not
     resolve), its CPUs and 90 % of its memory, free TCP ports, state/spool/logs/pid files under DIR, no accounting,
     and short kill/requeue delays so that time-limit and requeue tests are quick (see `slurm_conf`).
  4. Starts slurmctld and slurmd with `-f DIR/slurm.conf` and waits until sinfo reports the node idle.
`start` on a DIR whose daemons run only waits for the node; a start that fails stops the daemons it started (their
logs stay in DIR). `stop` signals only the processes named by DIR's pid files (after checking that each still runs
from DIR), never anything by name.

Exit status: 0 done; 1 failed (the message and the daemons' log tails say why); 77 cannot run here (not root, or the
packages are missing and cannot be installed): the automake convention for "skip", which the test fixture turns into
a pytest skip.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CannotRun", "ClusterError", "Layout", "missing_programs", "slurm_conf", "start", "status", "stop"]

EXIT_CANNOT_RUN = 77
PARTITION = "debug"
PREEMPTING_PARTITION = "urgent"
PROGRAMS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client",
            "sinfo": "slurm-client", "squeue": "slurm-client", "scontrol": "slurm-client", "scancel": "slurm-client"}
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_UNIX_SOCKET_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says why."""


class CannotRun(ClusterError):
    """This machine cannot run the cluster: not root, or the packages are missing and cannot be installed."""


@dataclass(frozen=True)
class Layout:
    """Where everything of the cluster in ``root`` lives."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munged.socket"

    def pid_file(self, daemon: str) -> Path:
        return self.root / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.root / f"{daemon}.log"

    def env(self) -> dict[str, str]:
        """os.environ with SLURM_CONF pointing at this cluster (and sbin on PATH), for running SLURM commands."""
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": _SEARCH_PATH}


# ------------------------------------------------------------------------------------------------------- packages

def missing_programs() -> list[str]:
    """The programs of `PROGRAMS` that are on neither PATH nor the sbin folders."""
    return [name for name in PROGRAMS if shutil.which(name, path=_SEARCH_PATH) is None]


def _program(name: str) -> str:
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise ClusterError(f"{name} is not installed (Debian package {PROGRAMS[name]})")
    return path


def ensure_packages() -> None:
    """Install the missing SLURM/munge packages with apt-get, or raise CannotRun saying how to install them."""
    missing = missing_programs()
    if not missing:
        return
    packages = sorted(set(PROGRAMS.values()))
    how = f"apt-get install --no-install-recommends {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CannotRun(f"missing {', '.join(missing)}; install them as root with `{how}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = subprocess.run(["apt-cache", "policy", "slurmctld"], capture_output=True, text=True, env=env)
    if "Candidate:" not in policy.stdout or "Candidate: (none)" in policy.stdout:
        print("apt-get update (apt knows no slurmctld yet)", flush=True)
        _run_checked(["apt-get", "update"], env=env)
    print(f"installing {' '.join(packages)} (missing: {', '.join(missing)})", flush=True)
    began = time.monotonic()
    _run_checked(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env)
    print(f"installed in {time.monotonic() - began:.0f} s", flush=True)
    still = missing_programs()
    if still:
        raise ClusterError(f"`{how}` finished but {', '.join(still)} are still missing")


def _run_checked(command: list[str], **kwargs) -> None:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise ClusterError(f"`{' '.join(command)}` failed with exit status {done.returncode}:\n"
                           f"{_tail(done.stdout + done.stderr)}")


# ------------------------------------------------------------------------------------------------- configuration

def _node_name() -> str:
    """The name slurmd looks itself up by: the host name up to its first dot."""
    return socket.gethostname().split(".")[0]


def _memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterError("/proc/meminfo has no MemTotal line")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(layout: Layout, *, node: str, cpus: int, memory_mib: int, ports: tuple[int, int]) -> str:
    """The text of slurm.conf for a one-node cluster in ``layout``; ``ports`` = (slurmctld, slurmd)."""
    root = layout.root
    real_memory = memory_mib * 9 // 10  # slurmd drains a node that has less memory than configured
    return f"""\
# A one-node cluster written by scripts/slurm_cluster.py; all its state is under {root}.
ClusterName=metricbench
# Controller and node are this host, addressed as 127.0.0.1 so that the host name need not resolve.
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# munged runs with its socket under {root}. cred_expire is also how long a requeued job waits before it may start
# again (120 s by default).
AuthInfo=socket={layout.munge_socket},cred_expire=10

StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={layout.pid_file("slurmctld")}
SlurmdPidFile={layout.pid_file("slurmd")}
SlurmctldLogFile={layout.log_file("slurmctld")}
SlurmdLogFile={layout.log_file("slurmd")}
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: processes are tracked through /proc, and tasks are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true

# CPUs and memory are consumable, so jobs share the node; a job that asks for no memory gets its CPUs' share.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU={real_memory // cpus}
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5

# Quick time limits and requeues: SIGKILL 5 s after SIGTERM, no grace minutes past a time limit, batch jobs requeue.
KillWait=5
OverTimeLimit=0
JobRequeue=1
# A job in {PREEMPTING_PARTITION} preempts (requeues) jobs in {PARTITION} when the node is full.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE

# No accounting database: sacct reports nothing; squeue and scontrol show jobs until MinJobAge after they end.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300

NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName={PREEMPTING_PARTITION} Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2
"""


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (temporary file, then rename)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


# ------------------------------------------------------------------------------------------------------ processes

def _running_pid(layout: Layout, daemon: str) -> int | None:
    """The pid in ``daemon``'s pid file if that process is alive, is ``daemon`` and was started for this layout."""
    try:
        pid = int(layout.pid_file(daemon).read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    if comm != daemon or str(layout.root) + os.sep not in cmdline:
        return None  # a stale pid file whose number now belongs to another process
    return pid


def _start_daemon(layout: Layout, daemon: str, command: list[str]) -> None:
    """Run a daemonizing command; its pre-fork errors go to DIR/<daemon>.start.log, which a failure shows."""
    start_log = layout.root / f"{daemon}.start.log"
    with start_log.open("w") as log:
        # The daemon forks and the parent exits; a file rather than a pipe, so that nothing waits on the child's fds.
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=layout.env()).returncode
    if code != 0:
        raise ClusterError(f"`{' '.join(command)}` exited with status {code}:\n{_tail(start_log.read_text())}")
    deadline = time.monotonic() + 15
    while _running_pid(layout, daemon) is None:
        if time.monotonic() > deadline:
            raise ClusterError(f"{daemon} wrote no pid file {layout.pid_file(daemon)} within 15 s" + _logs(layout))
        time.sleep(0.1)


def _start_munged(layout: Layout) -> None:
    options = subprocess.run([_program("munged"), "--help"], capture_output=True, text=True).stdout
    if "--key-file" not in options:
        raise ClusterError("this munged has no --key-file option (munge >= 0.5.14 has); install a newer munge")
    layout.munge_dir.mkdir(mode=0o755, exist_ok=True)
    layout.munge_dir.chmod(0o755)  # munged refuses a socket folder others can write to
    if not layout.munge_key.exists():
        # Mode 0400 from the start: munged refuses a key that anyone but its owner could read.
        key = os.open(layout.munge_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(key, os.urandom(1024))
        finally:
            os.close(key)
    command = [_program("munged"), f"--key-file={layout.munge_key}", f"--socket={layout.munge_socket}",
               f"--pid-file={layout.pid_file('munged')}", f"--log-file={layout.log_file('munged')}",
               f"--seed-file={layout.munge_dir / 'munged.seed'}"]
    closed = [str(folder) for folder in layout.munge_dir.parents if not folder.stat().st_mode & 0o001]
    if closed:
        # munged wants every user able to reach its socket, and refuses to start otherwise; --force makes that a
        # warning. pytest's temporary folders (/tmp/pytest-of-<user>, mode 0700) are such a case.
        print(f"note: {closed[0]} is closed to other users, so only its owner can submit jobs (munged --force)",
              flush=True)
        command.append("--force")
    _start_daemon(layout, "munged", command)


def _wait_for_idle_node(layout: Layout, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    states = ""
    while time.monotonic() < deadline:
        done = subprocess.run([_program("sinfo"), "--noheader", "--Node", "--format=%T"], capture_output=True,
                              text=True, env=layout.env())
        states = done.stdout.strip() or done.stderr.strip()
        if done.returncode == 0 and states.split() and all(state == "idle" for state in states.split()):
            return
        time.sleep(0.5)
    raise ClusterError(f"the node was not idle within {timeout:.0f} s (sinfo: {states!r})" + _logs(layout))


def start(root: Path, timeout: float = 60) -> Layout:
    """Start the cluster in ``root`` (created if needed) and wait until its node is idle; returns its layout."""
    layout = Layout(root.resolve())
    if os.geteuid() != 0:
        raise CannotRun("the cluster needs root: slurmd starts every job as the user who submitted it")
    ensure_packages()
    if any(character.isspace() for character in str(layout.root)):
        raise ClusterError(f"{str(layout.root)!r} has white space, which slurm.conf paths cannot hold")
    if len(str(layout.munge_socket)) > _UNIX_SOCKET_MAX:
        raise ClusterError(f"{layout.munge_socket} is longer than a unix socket path may be "
                           f"({_UNIX_SOCKET_MAX} characters); choose a shorter DIR")
    began = time.monotonic()
    for sub in ("state", "spool"):
        (layout.root / sub).mkdir(parents=True, exist_ok=True)
    started = []  # stopped again if the cluster does not come up; their logs stay
    try:
        if _running_pid(layout, "munged") is None:
            _start_munged(layout)
            started.append("munged")
        if _running_pid(layout, "slurmctld") is None:
            if _running_pid(layout, "slurmd") is not None:
                raise ClusterError(f"slurmd of {layout.root} runs without its slurmctld; run `stop` first")
            text = slurm_conf(layout, node=_node_name(), cpus=len(os.sched_getaffinity(0)), memory_mib=_memory_mib(),
                              ports=(_free_port(), _free_port()))
            _write_text(layout.conf, text)
            _start_daemon(layout, "slurmctld", [_program("slurmctld"), "-f", str(layout.conf)])
            started.append("slurmctld")
        if _running_pid(layout, "slurmd") is None:
            _start_daemon(layout, "slurmd", [_program("slurmd"), "-f", str(layout.conf), "-N", _node_name()])
            started.append("slurmd")
        _wait_for_idle_node(layout, timeout)
    except BaseException:
        for daemon in reversed(started):
            _stop_daemon(layout, daemon)
        raise
    print(f"cluster in {layout.root} up, node idle after {time.monotonic() - began:.1f} s", flush=True)
    return layout


def _cancel_jobs(layout: Layout, timeout: float = 30) -> None:
    """Cancel every job of the cluster and wait until none is left running (its processes gone), if slurmctld runs."""
    if _running_pid(layout, "slurmctld") is None:
        return
    env = layout.env()
    subprocess.run([_program("scancel"), "--full", "--user", str(os.geteuid())], capture_output=True, env=env)
    everyone = subprocess.run([_program("squeue"), "--noheader", "--format=%i"], capture_output=True, text=True,
                              env=env).stdout.split()
    if everyone:  # jobs of other users who used this cluster
        subprocess.run([_program("scancel"), "--full", *everyone], capture_output=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = subprocess.run([_program("squeue"), "--noheader", "--states=PENDING,RUNNING,COMPLETING,SUSPENDED",
                                 "--format=%i"], capture_output=True, text=True, env=env)
        if active.returncode != 0 or not active.stdout.split():
            return
        time.sleep(0.5)
    print(f"warning: jobs still active after {timeout:.0f} s: {active.stdout.split()}", file=sys.stderr)


def stop(root: Path, timeout: float = 30) -> None:
    """Cancel the jobs, then stop slurmd, slurmctld and munged of ``root`` (by their pid files), waiting for each."""
    layout = Layout(root.resolve())
    began = time.monotonic()
    if not missing_programs():
        _cancel_jobs(layout)
    for daemon in ("slurmd", "slurmctld", "munged"):
        _stop_daemon(layout, daemon, timeout)
    print(f"cluster in {layout.root} stopped in {time.monotonic() - began:.1f} s", flush=True)


def _stop_daemon(layout: Layout, daemon: str, timeout: float = 30) -> None:
    """SIGTERM the layout's ``daemon`` if it runs and wait until it is gone; SIGKILL it after ``timeout`` s."""
    pid = _running_pid(layout, daemon)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running_pid(layout, daemon) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running_pid(layout, daemon) == pid:
        print(f"{daemon} ({pid}) ignored SIGTERM for {timeout:.0f} s; sending SIGKILL", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)


def status(root: Path) -> str:
    """Which daemons of ``root`` run, then sinfo and squeue."""
    layout = Layout(root.resolve())
    lines = [f"{daemon}: " + (f"running, pid {pid}" if (pid := _running_pid(layout, daemon)) else "not running")
             for daemon in ("munged", "slurmctld", "slurmd")]
    if _running_pid(layout, "slurmctld") is not None:
        for command in (["sinfo"], ["squeue"]):
            done = subprocess.run([_program(command[0]), *command[1:]], capture_output=True, text=True,
                                  env=layout.env())
            lines += [f"$ {command[0]}", (done.stdout + done.stderr).rstrip()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ messages

def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def _logs(layout: Layout) -> str:
    """The last lines of every daemon log in the layout, for an error message."""
    parts = []
    for daemon in ("munged", "slurmctld", "slurmd"):
        for path in (layout.log_file(daemon), layout.root / f"{daemon}.start.log"):
            if path.is_file() and path.stat().st_size:
                parts.append(f"\n--- {path}:\n{_tail(path.read_text(errors='replace'))}")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("dir", type=Path, help="the cluster's folder: slurm.conf, logs, pid files, state, munge key")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the node (start)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            layout = start(args.dir, timeout=args.timeout)
            print(f"export SLURM_CONF={layout.conf}")
        elif args.action == "stop":
            stop(args.dir)
        else:
            print(status(args.dir))
    except CannotRun as error:
        print(f"cannot run a SLURM cluster here: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
