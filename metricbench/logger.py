"""Scalars of a run, to a CSV (long format: step, epoch, name, value) and to TensorBoard."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping

from torch.utils.tensorboard import SummaryWriter

from .atomic import write_text
from .run_dir import RunDir

__all__ = ["RunLogger"]

_FIELDS = ["step", "epoch", "name", "value"]


class RunLogger:
    """Append scalars to the run's CSV log and TensorBoard events (`RunDir.log_csv`, `RunDir.tensorboard`).

    Args:
        run_dir: the run directory.
        resume_step: on resume, rows and events after this step (from the interrupted epoch) are
            dropped, so the logs read as if the run had never stopped.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        paths = RunDir(run_dir)
        self.csv_path = paths.log_csv
        if resume_step is not None and self.csv_path.exists():
            with self.csv_path.open(newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= resume_step]
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, _FIELDS)
            writer.writeheader()
            writer.writerows(kept)
            write_text(self.csv_path, text.getvalue())  # a crash here keeps the old log, never half of it
        is_new = not self.csv_path.exists()
        self._file = self.csv_path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, _FIELDS)
        if is_new:
            self._csv.writeheader()
        purge = resume_step + 1 if resume_step is not None else None
        self._tb = SummaryWriter(str(paths.tensorboard), purge_step=purge)

    def log(self, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._csv.writerow({"step": step, "epoch": epoch, "name": name, "value": f"{value:.8g}"})
            self._tb.add_scalar(name, value, step)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        self._tb.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
