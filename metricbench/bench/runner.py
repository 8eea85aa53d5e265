"""`metricbench bench`: tune, run every cell in parallel (skipping finished ones), aggregate.

Layout:
    RUNS/spec.toml                   the resolved spec the workers read
    RUNS/<dataset>/<protocol>/<loss>/seed-<s>/   one run directory per cell (see metricbench.run_dir)
    RUNS/configs/, RUNS/logs/        each cell's config file and its worker's log
    RUNS/tuning/                     Optuna studies (SQLite, or journal files of SLURM workers) and trial runs
    RUNS/slurm/                      with --launcher slurm: the job of each run (jobs.json), submitit's files and logs
    OUT/runs.csv, runs.parquet       one row per finished run: metrics and the config fields that vary
    OUT/summary.csv, summary.md      mean ± std and 95% CI per (dataset, protocol, loss, metric)
    OUT/headline.md                  MAP@R per loss and (dataset, protocol): the README's results table
    OUT/*.png                        metric bars, UMAP grids, distances, training curves
    OUT/report.html                  all of the above on one self-contained page, and the same queries per loss
    OUT/tuning/                      chosen options and trial tables of each study
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import tomli_w

from ..atomic import write_files_atomically, write_text
from ..config import config_to_dict, save_config
from ..run_dir import RunDir
from .comparison_figures import write_figures
from .grid import Cell, cells
from .html_report import write_report
from .jobs import Job, default_workers, run_jobs
from .markdown import headline_markdown, summary_markdown
from .provenance import provenance
from .spec import BenchSpec, slug
from .tables import collect_runs, summarize
from .tune import load_tuned, studies, study_done

__all__ = ["BenchFailed", "aggregate", "run_bench"]


class BenchFailed(RuntimeError):
    """Some runs or studies failed; the others finished and were aggregated."""


def _metricbench(*args: str, imports: tuple[str, ...], nproc: int = 1) -> tuple[str, ...]:
    launcher = (sys.executable,) if nproc == 1 else (
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}")
    return (*launcher, "-m", "metricbench", *args, *(x for m in imports for x in ("--import", m)))


def _cell_jobs(todo: list[tuple[Cell, str]], runs: Path, imports: tuple[str, ...], nproc: int) -> list[Job]:
    """A `metricbench train` job per unfinished cell, given with its `RunDir.state`."""
    jobs = []
    for cell, state in todo:
        run_dir, name = runs / cell.key, cell.key.replace("/", "--")
        if state == "resume":
            args = ("--resume",)
        else:
            config_file = runs / "configs" / f"{name}.toml"
            config_file.parent.mkdir(parents=True, exist_ok=True)
            save_config(cell.config, config_file)
            args = ("--config", str(config_file), "--overwrite")
        argv = _metricbench("train", "--no-progress", "--out", str(run_dir), *args, imports=imports, nproc=nproc)
        cli = argv[argv.index("metricbench") + 1:] if nproc == 1 else None  # one process: forked, preloaded
        jobs.append(Job(cell.key, argv, runs / "logs" / f"{name}.log", cli))
    return jobs


def _run_cells(grid: list[Cell], runs: Path, spec: BenchSpec, extra: list[Job], *, desc: str,
               progress: bool, launcher: str = "local", wait: bool = True) -> list[Job] | None:
    states = [(cell, RunDir(runs / cell.key).state(cell.config)) for cell in grid]
    todo = [(cell, state) for cell, state in states if state != "done"]
    if launcher == "slurm":
        from .slurm import run_on_slurm  # submitit, imported only when asked for

        return run_on_slurm([cell for cell, _ in todo], extra, runs=runs, spec=spec, desc=desc,
                            done_before=len(grid) - len(todo), progress=progress, wait=wait)
    workers, threads = default_workers(spec.workers, spec.threads)
    jobs = extra + _cell_jobs(todo, runs, spec.imports, spec.nproc_per_run)
    return run_jobs(jobs, workers=workers, threads=threads, desc=desc, done_before=len(grid) - len(todo),
                    progress=progress)


def run_bench(spec: BenchSpec, *, out: Path, runs: Path, command: str, tune: bool = True,
              progress: bool = True, launcher: str = "local", wait: bool = True) -> pd.DataFrame | None:
    """Run the benchmark and aggregate it into `out`; returns the runs table.

    Finished runs are reused, interrupted ones resume from their last checkpoint. Studies run first,
    side by side with the default rows; the tuned rows follow once their study has chosen.

    Args:
        launcher: `local` (worker processes here) or `slurm` (a SLURM job per run and study: see
            `metricbench.bench.slurm`).
        wait: with `slurm`, off: submit what is pending and return None while jobs are under way
            (the same call later attaches to them and aggregates once all are done).

    Raises:
        BenchFailed: after aggregating, when some runs or studies failed (their logs are named).
    """
    started = time.perf_counter()
    runs.mkdir(parents=True, exist_ok=True)
    spec_file = runs / "spec.toml"
    write_text(spec_file, tomli_w.dumps(config_to_dict(spec)))
    study_jobs = []
    if tune:
        for dataset, protocol, entry in studies(spec):
            if study_done(spec, dataset, protocol, entry, runs) and load_tuned(spec, out).get(
                    (dataset, protocol, entry.label)) is not None:
                continue
            name = f"tune {slug(dataset)}/{protocol}/{slug(entry.label)}"
            argv = _metricbench("tune", str(spec_file), "--dataset", dataset, "--protocol", protocol,
                                "--loss", entry.label, "--out", str(out), "--runs", str(runs), imports=spec.imports)
            study_jobs.append(Job(name, argv, runs / "logs" / f"{name.replace(' ', '-').replace('/', '--')}.log"))
    failed = _run_cells(cells(spec), runs, spec, study_jobs, desc=f"{spec.name}: runs", progress=progress,
                        launcher=launcher, wait=wait)
    if failed is None:
        return None
    tuned_grid = [c for c in cells(spec, load_tuned(spec, out)) if c.tuned]
    if tuned_grid:
        more = _run_cells(tuned_grid, runs, spec, [], desc=f"{spec.name}: tuned runs", progress=progress,
                          launcher=launcher, wait=wait)
        if more is None:
            return None
        failed += more
    table = aggregate(spec, out=out, runs=runs, command=command, minutes=(time.perf_counter() - started) / 60)
    if failed:
        raise BenchFailed(f"{len(failed)} job(s) failed: " + "; ".join(f"{j.name} (log {j.log})" for j in failed))
    return table


def aggregate(spec: BenchSpec, *, out: Path, runs: Path, command: str, minutes: float | None = None) -> pd.DataFrame:
    """Tables, figures, summary.md and report.html of the finished runs of `spec` in `runs`, written into `out`.

    `minutes`: how long the run that produced them took (None: rebuilt from existing runs).
    """
    tuned = load_tuned(spec, out)
    grid = cells(spec, tuned)
    table, histories = collect_runs(grid, runs)
    if table.empty:
        raise ValueError(f"no finished runs of spec {spec.name!r} under {str(runs)!r}; run `metricbench bench` first")
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(table)
    write_files_atomically({
        out / "runs.csv": lambda f: table.to_csv(f, index=False, float_format="%.6g"),
        out / "runs.parquet": lambda f: table.to_parquet(f, index=False),
        out / "summary.csv": lambda f: summary.to_csv(f, index=False, float_format="%.6g"),
    })
    figures = [p.name for p in write_figures(table, histories, summary, runs, out)]
    workers, threads = default_workers(spec.workers, spec.threads)
    machine = provenance()
    text = summary_markdown(spec, grid[0].config, summary, cells_total=len(grid), cells_done=len(table), tuned=tuned,
                            figures=figures, provenance=machine, command=command, minutes=minutes,
                            parallel=f"{workers} worker processes × {threads} thread{'s' * (threads > 1)} each")
    write_files_atomically({out / "summary.md": text.encode("utf-8"),
                            out / "headline.md": headline_markdown(summary).encode("utf-8")})
    write_report(out / "report.html", spec=spec, config=grid[0].config, summary=summary, table=table, runs=runs,
                 figures=[out / name for name in figures], provenance=machine, command=command, cells_total=len(grid))
    return table
