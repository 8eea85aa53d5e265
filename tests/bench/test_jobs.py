"""Benchmark jobs: a run forked from the preloaded forkserver equals the same run in a new interpreter."""

import sys

from metricbench.bench.jobs import Job, run_jobs
from metricbench.run_dir import RunDir


def test_a_forked_run_equals_a_new_interpreters_run_and_logs_alike(tmp_path):
    def job(name, forked):
        cli = ("train", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out", str(tmp_path / name),
               "--set", "eval.plots=false", "--set", "eval.export=false")
        return Job(name, (sys.executable, "-m", "metricbench", *cli), tmp_path / f"{name}.log", cli if forked else None)

    failed = run_jobs([job("forked", True), job("interpreter", False)], workers=2, threads=1, desc="", progress=False)
    assert failed == []
    forked, fresh = (RunDir(tmp_path / name).read_metrics() for name in ("forked", "interpreter"))
    assert forked["test"] == fresh["test"] and forked["history"] == fresh["history"]
    for name in ("forked", "interpreter"):  # the command line, then the run's own output
        log = (tmp_path / f"{name}.log").read_text()
        assert " -m metricbench train --dataset digits" in log and '"map_at_r"' in log and "run written to" in log


def test_a_forked_job_reports_its_exit_status(tmp_path):
    cli = ("train", "--dataset", "nonexistent", "--out", str(tmp_path / "run"))
    failed = run_jobs([Job("bad", (sys.executable, "-m", "metricbench", *cli), tmp_path / "bad.log", cli)],
                      workers=1, threads=1, desc="", progress=False)
    assert [job.name for job in failed] == ["bad"]
    assert "unknown dataset 'nonexistent'" in (tmp_path / "bad.log").read_text()
    assert not (tmp_path / "run").exists()
