"""Speed benchmarks (`make perf`, never part of `make test`): each writes results/perf/<name>.json and .md."""

import json
import os
import platform
import time
from pathlib import Path

import pytest
import torch

RESULTS = Path(__file__).resolve().parents[2] / "results" / "perf"


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "processor": platform.processor()}


def best_of(fn, repeats: int = 5) -> float:
    """Fastest wall time of `repeats` calls (the least disturbed by other load), in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.fixture
def record():
    """`record(name, rows, columns, note)` writes the benchmark's table as JSON and Markdown."""

    def write(name: str, rows: list[dict], note: str) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), "rows": rows, "note": note}, indent=2) + "\n")
        cols = list(rows[0])
        lines = [f"# {name}", "", note, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
        lines += ["", f"Machine: {machine()}", "", "Regenerate with `make perf`.", ""]
        (RESULTS / f"{name}.md").write_text("\n".join(lines))

    return write
