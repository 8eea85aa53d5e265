"""Make a child process die with its parent (Linux), so that no orphan keeps writing a run directory."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["exit_with_parent"]

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
