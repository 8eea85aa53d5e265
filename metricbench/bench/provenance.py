"""What produced a set of results: package versions, git commit, machine."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["provenance"]

_PACKAGES = ("metricbench", "torch", "pytorch-metric-learning", "faiss-cpu", "numpy", "pandas", "scikit-learn",
             "umap-learn", "optuna")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _commit() -> str:
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return "unknown (not a git checkout)"
    # Results being regenerated change files under results/; only code changes make a run "modified".
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(top,exclude)results")
    return commit + (" with uncommitted changes" if changed else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown memory"


def provenance() -> dict[str, str]:
    """`versions`, `commit` and `machine`, as one-line strings."""
    versions = []
    for package in _PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return {
        "versions": ", ".join(versions) + f", Python {platform.python_version()}",
        "commit": _commit(),
        "machine": f"{platform.system()} {platform.machine()}, {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()}",
    }
