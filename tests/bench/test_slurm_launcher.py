"""`--launcher slurm`: the [slurm] spec table, the flags, the job bookkeeping (no SLURM needed), and end to end
on a real one-node cluster (`slurm_cluster`): same results as the local runner, scancel and re-run, a job
requeued at its time limit resuming exactly, and tuning workers that share one study."""

import json
import os
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
from slurm_fixtures import slurm_cluster  # noqa: F401  (a fixture)

from metricbench.bench import load_spec
from metricbench.bench import slurm as launcher
from metricbench.bench import slurm_queue
from metricbench.bench.grid import cells
from metricbench.bench.jobs import _THREAD_VARIABLES as THREAD_VARIABLES
from metricbench.bench.spec import SlurmSpec
from metricbench.cli import build_parser, slurm_shorthands
from metricbench.config import save_config

SPEC = """
name = "tiny"
datasets = ["digits"]
protocols = ["closed"]
seeds = [0, 1]
threads = 1
[base]
train.epochs = 2
eval.plots = false
eval.export = false
[[losses]]
name = "softmax"
[[losses]]
name = "triplet-semihard"
[slurm]
cpus_per_task = 1
timeout_min = 10
signal_delay_s = 20
"""

TIMING = ["train_seconds"]


# ---- without SLURM -----------------------------------------------------------------------------------------


def test_the_slurm_table_is_typed_and_checked(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC + 'partition = "gpu"\nmem_gb = 8\nsbatch = { qos = "high", exclusive = true }\n')
    spec = load_spec(path)
    assert spec.slurm == SlurmSpec(partition="gpu", cpus_per_task=1, timeout_min=10, signal_delay_s=20, mem_gb=8.0,
                                   sbatch={"qos": "high", "exclusive": True})
    assert load_spec(path, ["slurm.timeout_min=5"]).slurm.timeout_min == 5
    with pytest.raises(ValueError, match="unknown config key.*slurm.partitoin"):
        load_spec(path, ["slurm.partitoin='x'"])
    with pytest.raises(TypeError, match="slurm.cpus_per_task must be int"):
        load_spec(path, ["slurm.cpus_per_task='two'"])
    with pytest.raises(ValueError, match="slurm.timeout_min must be >= 1"):
        load_spec(path, ["slurm.timeout_min=0"])
    with pytest.raises(ValueError, match="slurm.signal_delay_s"):
        load_spec(path, ["slurm.timeout_min=1", "slurm.signal_delay_s=60"])


def test_slurm_flags_override_the_spec_table(tmp_path):
    args = build_parser().parse_args(["bench", "quick", "--launcher", "slurm", "--partition", "cpu", "--time", "30",
                                      "--cpus", "4", "--gpus", "1", "--mem", "7.5", "--account", "lab",
                                      "--sbatch", "qos=high", "--sbatch", "constraint=a100", "--no-wait"])
    assert args.launcher == "slurm" and args.no_wait
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    slurm = load_spec(path, [f"{k}={json.dumps(v)}" for k, v in slurm_shorthands(args).items()]).slurm
    assert slurm == SlurmSpec(partition="cpu", account="lab", timeout_min=30, cpus_per_task=4, gpus_per_node=1,
                              mem_gb=7.5, signal_delay_s=20, sbatch={"qos": "high", "constraint": "a100"})
    local = build_parser().parse_args(["bench", "quick"])
    assert local.launcher == "local" and slurm_shorthands(local) == {}
    with pytest.raises(ValueError, match="--sbatch must be KEY=VALUE"):
        slurm_shorthands(build_parser().parse_args(["bench", "quick", "--launcher", "slurm", "--sbatch", "qos"]))
    with pytest.raises(ValueError, match="--partition.*--launcher slurm"):
        slurm_shorthands(build_parser().parse_args(["bench", "quick", "--partition", "cpu"]))
    tune = build_parser().parse_args(["tune", "quick", "--launcher", "slurm", "--workers", "3", "--time", "5"])
    assert tune.workers == 3 and slurm_shorthands(tune) == {"slurm.timeout_min": 5}


def test_executor_parameters_follow_the_spec():
    slurm = SlurmSpec(partition="gpu", gpus_per_node=2, mem_gb=16, sbatch={"qos": "high"}, signal_delay_s=30)
    params = launcher.executor_parameters(slurm, name="metricbench-x", threads=3, nproc=2, parallelism=4)
    assert params == {"name": "metricbench-x", "timeout_min": 60, "cpus_per_task": 6, "mem_gb": 16.0,
                      "gpus_per_node": 2, "slurm_partition": "gpu", "slurm_signal_delay_s": 30,
                      "slurm_additional_parameters": {"qos": "high"}, "slurm_array_parallelism": 4}
    assert launcher.executor_parameters(SlurmSpec(cpus_per_task=2), name="n", threads=1)["cpus_per_task"] == 2


class FakeExecutor:
    """Stands for submitit's executor: numbers jobs 100_0, 100_1, ... and records what it was given."""

    def __init__(self):
        self.submitted = []

    def batch(self):
        import contextlib

        return contextlib.nullcontext()

    def submit(self, function):
        from submitit.slurm.slurm import SlurmJob

        self.submitted.append(function)
        return SlurmJob(folder="/nonexistent/%j", job_id=f"100_{len(self.submitted) - 1}")


def test_the_ledger_attaches_to_live_jobs_and_resubmits_the_rest(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "slurm").mkdir(parents=True)
    ledger = {"a": {"job": "7_0", "identity": "A"}, "b": {"job": "7_1", "identity": "B"},
              "c": {"job": "7_2", "identity": "C"}, "d": {"job": "7_3", "identity": "old D"},
              "done": {"job": "6_0", "identity": "X"}}
    (runs / "slurm" / "jobs.json").write_text(json.dumps(ledger))
    states = {"7_0": "RUNNING", "7_1": "PENDING", "7_2": "CANCELLED", "7_3": "RUNNING"}
    executor, cancelled = FakeExecutor(), []
    monkeypatch.setattr(launcher, "job_states", lambda ids: {i: states[i] for i in ids if i in states})
    monkeypatch.setattr(launcher, "_executor", lambda runs, slurm, params: executor)
    monkeypatch.setattr(launcher.subprocess, "run", lambda argv, check: cancelled.append(argv))
    tasks = {name: (f"task {name}", name.upper()) for name in ("a", "b", "c", "e")}
    tasks["d"] = ("task d", "new D")  # the same run with another config: its old job is cancelled
    tracked = launcher.submit(tasks, runs=runs, slurm=SlurmSpec(), params={})

    assert {t.name: (t.job.job_id, t.attached) for t in tracked} == {
        "a": ("7_0", True), "b": ("7_1", True), "c": ("100_0", False), "e": ("100_1", False), "d": ("100_2", False)}
    assert executor.submitted == ["task c", "task e", "task d"]
    assert cancelled == [["scancel", "7_3"]]
    assert json.loads((runs / "slurm" / "jobs.json").read_text()) == {
        **ledger, "c": {"job": "100_0", "identity": "C"}, "e": {"job": "100_1", "identity": "E"},
        "d": {"job": "100_2", "identity": "new D"}}
    assert launcher.describe(tracked) == "3 submitted (jobs 100_0, 100_1, 100_2); 2 attached to (jobs 7_0, 7_1)"


def test_waiting_reports_results_errors_and_vanished_jobs(tmp_path, monkeypatch):
    from submitit.core.utils import cloudpickle_dump
    from submitit.slurm.slurm import SlurmJob

    folder = tmp_path / "%j"
    jobs = {name: SlurmJob(folder=folder, job_id=f"5_{i}") for i, name in enumerate(["ok", "error", "gone"])}
    for name, outcome in (("ok", ("success", "done")), ("error", ("error", "Traceback\nRuntimeError: exit 1"))):
        jobs[name].paths.result_pickle.parent.mkdir(parents=True)
        cloudpickle_dump(outcome, jobs[name].paths.result_pickle)
    monkeypatch.setattr(launcher, "job_states", lambda ids: {})  # every job has left the queue
    tracked = [launcher.Tracked(name, job, attached=False) for name, job in jobs.items()]
    finished = {f.name: f for f in launcher.wait_for(tracked, desc="t", progress=False, poll_s=0)}
    assert finished["ok"].ok and not finished["error"].ok and not finished["gone"].ok
    assert finished["error"].reason == "RuntimeError: exit 1"
    assert "without a result" in finished["gone"].reason
    assert finished["gone"].log == jobs["gone"].paths.stdout


def test_job_states_read_squeue_then_sacct_and_refuse_to_guess(monkeypatch):
    answers = {"squeue": ("8_0|RUNNING\n8_1|PENDING\n9|COMPLETING\n", ""),
               "sacct": ("7_2|CANCELLED by 0\n7_3|COMPLETED\n", "")}
    asked = []

    def run(argv):
        asked.append(argv)
        return answers[argv[0]]

    monkeypatch.setattr(slurm_queue, "_run", run)
    assert slurm_queue.job_states(["8_0", "8_1", "7_2", "6"]) == {"8_0": "RUNNING", "8_1": "PENDING",
                                                                    "7_2": "CANCELLED"}
    assert asked[1][-1] == "--jobs=6,7"  # only the jobs squeue no longer holds
    assert slurm_queue.workers_gone({"slurm:8_1", "slurm:7_2", "local"}) == {"slurm:7_2"}
    answers["squeue"] = (None, "slurm_load_jobs error: Unable to contact slurm controller")
    with pytest.raises(ConnectionError, match="Unable to contact"):
        slurm_queue.job_states(["8_0"])
    assert slurm_queue.workers_gone({"slurm:8_1"}) == set(), "no trial is failed on a guess"


# ---- on a one-node SLURM cluster ---------------------------------------------------------------------------


def metricbench(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "metricbench", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def bench(spec, root, *flags, **kwargs):
    return metricbench("bench", spec, "--out", root / "out", "--runs", root / "runs", "--no-progress", *flags,
                       **kwargs)


def squeue():
    """job id -> state of this user's jobs that the controller still holds."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.strip().split("|") for line in out.splitlines() if line.strip())


def runs_table(root):
    return pd.read_parquet(root / "out" / "runs.parquet").drop(columns=TIMING)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny grid's spec and its runs table from the local launcher."""
    root = tmp_path_factory.mktemp("local")
    spec = root / "tiny.toml"
    spec.write_text(SPEC)
    result = bench(spec, root)
    assert result.returncode == 0, result.stderr
    return spec, runs_table(root)


@pytest.mark.slow
def test_a_grid_on_slurm_equals_the_local_grid(slurm_cluster, tiny, tmp_path):  # noqa: F811
    spec, expected = tiny
    result = bench(spec, tmp_path, "--launcher", "slurm", "--partition", slurm_cluster.partition)
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(runs_table(tmp_path), expected, check_exact=True)
    ledger = json.loads((tmp_path / "runs" / "slurm" / "jobs.json").read_text())
    assert sorted(ledger) == sorted(f"digits/closed/{loss}/seed-{s}" for loss in ("softmax", "triplet-semihard")
                                    for s in (0, 1))
    assert len({entry["job"].split("_")[0] for entry in ledger.values()}) == 1, "one job array"
    log = tmp_path / "runs" / "slurm" / ledger["digits/closed/softmax/seed-0"]["job"]
    assert "metricbench train --no-progress" in "".join(p.read_text() for p in log.glob("*_log.*"))

    again = bench(spec, tmp_path, "--launcher", "slurm")  # finished runs are never submitted again
    assert again.returncode == 0 and "nothing to submit" in again.stdout + again.stderr
    assert json.loads((tmp_path / "runs" / "slurm" / "jobs.json").read_text()) == ledger


@pytest.mark.slow
def test_scancel_then_rerun_completes_the_grid(slurm_cluster, tiny, tmp_path):  # noqa: F811
    spec, expected = tiny
    result = bench(spec, tmp_path, "--launcher", "slurm", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "run again" in result.stdout and not (tmp_path / "out").exists()
    ledger = json.loads((tmp_path / "runs" / "slurm" / "jobs.json").read_text())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [name for name, entry in ledger.items() if squeue().get(entry["job"]) == "RUNNING"]
        if running:
            break
        time.sleep(0.3)
    else:
        pytest.fail("no job started")
    victim = running[0]
    subprocess.run(["scancel", ledger[victim]["job"]], check=True)
    while squeue().get(ledger[victim]["job"]) in slurm_queue.ACTIVE:
        time.sleep(0.3)

    result = bench(spec, tmp_path, "--launcher", "slurm")
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(runs_table(tmp_path), expected, check_exact=True)
    after = json.loads((tmp_path / "runs" / "slurm" / "jobs.json").read_text())
    changed = {name for name in ledger if after[name] != ledger[name]}
    assert changed == {victim}, "the cancelled run was submitted again, the others attached to or left alone"


LONG = """
[base]
train.epochs = 400
eval.plots = false
eval.export = false
"""


@pytest.mark.slow
def test_a_job_at_its_time_limit_is_requeued_and_resumes_exactly(slurm_cluster, tmp_path):  # noqa: F811
    # 400 epochs of about 0.14 s on one CPU: longer than the one-minute limit less the 10 s warning, so the job
    # is signalled, requeued and resumed from its last epoch checkpoint at least once.
    spec = tmp_path / "long.toml"
    spec.write_text(SPEC.split("[base]")[0].replace("seeds = [0, 1]", "seeds = [0]") + LONG
                    + '[[losses]]\nname = "softmax"\n[slurm]\ncpus_per_task = 1\ntimeout_min = 1\n'
                    + "signal_delay_s = 10\nrequeues = 5\n")
    result = bench(spec, tmp_path, "--launcher", "slurm", "--no-wait")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "reference.toml"
    save_config(cells(load_spec(spec))[0].config, config)
    reference = subprocess.Popen([sys.executable, "-m", "metricbench", "train", "--config", config, "--out",
                                  tmp_path / "reference", "--no-progress"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env={**os.environ, **{v: "1" for v in THREAD_VARIABLES}})
    result = bench(spec, tmp_path, "--launcher", "slurm")  # attaches and follows the job
    assert result.returncode == 0, result.stderr
    assert reference.wait() == 0

    job = json.loads((tmp_path / "runs" / "slurm" / "jobs.json").read_text())["digits/closed/softmax/seed-0"]["job"]
    log = "".join(p.read_text() for p in (tmp_path / "runs" / "slurm" / job).glob("*_log.*"))
    assert log.count("Starting with JobEnvironment") >= 2, log
    assert "Requeued job" in log and "train --no-progress --out" in log and "--resume" in log
    got = json.loads((tmp_path / "runs" / "digits" / "closed" / "softmax" / "seed-0" / "metrics.json").read_text())
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert got["test"] == want["test"] and got["epochs"] == want["epochs"] == 400
    assert got["history"] == want["history"]


TUNE = """
name = "t"
datasets = ["digits"]
protocols = ["open"]
seeds = [0]
threads = 1
[base]
train.epochs = 1
eval.plots = false
eval.export = false
[[losses]]
name = "triplet-semihard"
[tune]
datasets = ["digits"]
trials = 5
startup_trials = 2
[slurm]
cpus_per_task = 1
timeout_min = 10
"""


@pytest.mark.slow
def test_two_tuning_workers_complete_exactly_the_requested_trials(slurm_cluster, tmp_path):  # noqa: F811
    spec = tmp_path / "t.toml"
    spec.write_text(TUNE)
    result = metricbench("tune", spec, "--out", tmp_path / "out", "--runs", tmp_path / "runs", "--launcher", "slurm",
                         "--workers", "2")
    assert result.returncode == 0, result.stderr
    journal = tmp_path / "runs" / "tuning" / "t-digits-open-triplet-semihard.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="t-digits-open-triplet-semihard", storage=storage).get_trials()
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) == 5 and not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len({t.number for t in trials}) == len(trials)
    workers = {t.user_attrs["worker"] for t in completed}
    assert len(workers) == 2 and all(w.startswith("slurm:") for w in workers), "both jobs ran trials"
    chosen = (tmp_path / "out" / "tuning" / "digits" / "open" / "triplet-semihard.toml").read_text()
    assert "trials = 5" in chosen
    table = pd.read_csv(tmp_path / "out" / "tuning" / "digits" / "open" / "triplet-semihard.csv")
    assert sorted(table["trial"]) == sorted(t.number for t in completed)
    assert sorted(p.name for p in (tmp_path / "runs" / "tuning" / "t-digits-open-triplet-semihard").iterdir()) \
        == sorted(f"trial-{t.number}" for t in trials if t.state != optuna.trial.TrialState.PRUNED)
