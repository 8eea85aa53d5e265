"""Make a process die with its parent or with the runner that started it (Linux), so that no orphan keeps
writing a run directory."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading

__all__ = ["exit_with_parent", "exit_with_process"]

_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent exits; a no-op outside Linux.

    Args:
        parent: the parent's pid as the caller knew it; if the parent already died before the signal
            was armed (this process was re-parented), exit now.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def exit_with_process(pid: int) -> None:
    """SIGKILL this process as soon as process `pid` exits; for an ancestor other than the parent (a job
    forked by a forkserver watches the runner, since the forkserver outlives the runner while it has
    children). Linux (pidfd); a no-op elsewhere. Exits now if `pid` is already gone."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)

    def watch() -> None:
        select.select([descriptor], [], [])  # readable once the process has exited
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True).start()
