"""Peak resident memory of this process since a reset (Linux: VmHWM, reset through /proc/self/clear_refs),
so that a benchmark measures its own step rather than the import-time peak of torch."""

from pathlib import Path


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> float:
    """Reset the peak to the current resident size; returns that size in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """Peak resident size in MB since the last `reset_peak()`."""
    return _status_mb("VmHWM")
