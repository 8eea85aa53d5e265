"""`metricbench tune`: search each loss's declared hyperparameters on validation rows only (Optuna TPE).

One study per (dataset, protocol, loss). A trial is an ordinary run with the spec's shared config,
the trial's loss options and `data.holdout = "validation"`: it trains on part of the training rows
and is scored on the rest (other classes for `open`), never on the test rows. The chosen options go
to `OUT/tuning/<dataset>/<protocol>/<loss>.toml`, where `bench` reads them for its tuned rows.

Resuming is exact: trial k is sampled by a TPE sampler seeded with (seed, k) from the k trials
completed before it, and a trial cut short by a kill is failed and drawn again, so a study
interrupted at any point ends with the same trials as an uninterrupted one.

Several processes can share a study (`--storage`, or the workers of `tune --launcher slurm`, which share
a journal file). Each trial claims a place by its number: the trials completed or running before it
come first, and a trial with no place left is pruned before it trains, so the study never completes
more than `trials` trials and none is counted twice. A process with nothing left to draw waits for the
others' running trials, and draws again any that fail or whose worker is gone.
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import optuna
import pandas as pd
import tomli_w

from metricbench.losses.search_space import Choice, FloatRange, IntRange, SearchSpace

from ..atomic import atomic_write, write_text
from ..run import train_run
from .spec import BenchSpec, LossEntry, slug

__all__ = ["best_file", "load_tuned", "release_trials", "studies", "study_done", "tune_study"]

_WAIT_S = 5.0  # between two looks at a study whose remaining trials other processes are running


def studies(spec: BenchSpec) -> list[tuple[str, str, LossEntry]]:
    """(dataset, protocol, loss) of every study the spec asks for."""
    return [(d, p, e) for d in spec.tune.datasets for p in spec.protocols for e in spec.losses if e.tunable]


def best_file(out: Path, dataset: str, protocol: str, label: str) -> Path:
    return out / "tuning" / slug(dataset) / protocol / f"{slug(label)}.toml"


def _study_name(spec: BenchSpec, dataset: str, protocol: str, label: str) -> str:
    return f"{spec.name}-{slug(dataset)}-{protocol}-{slug(label)}"


def _suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    values = {}
    for name, param in space.items():
        if isinstance(param, FloatRange):
            values[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
        elif isinstance(param, IntRange):
            values[name] = trial.suggest_int(name, param.low, param.high, log=param.log)
        elif isinstance(param, Choice):
            values[name] = trial.suggest_categorical(name, list(param.values))
    return values


def _storage(spec: BenchSpec, runs: Path, name: str, *,
             shared: bool = False) -> tuple[optuna.storages.BaseStorage, bool]:
    """The study's storage and whether this process owns it.

    `tune.storage` when set; else the study's journal file under the runs folder when it has one, or when
    `shared` (workers of `tune --launcher slurm`: a journal file is safe on a shared file system, where
    SQLite's locks are not); else a private SQLite file.
    """
    if spec.tune.storage:
        # Shared with other processes or machines: a trial whose worker stops beating is failed
        # after the grace period and drawn again.
        return optuna.storages.RDBStorage(
            spec.tune.storage, heartbeat_interval=30, grace_period=120,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3)), False
    journal = runs / "tuning" / f"{name}.journal"
    if shared or journal.is_file():
        journal.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))), not shared
    path = runs / "tuning" / f"{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}"), True


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def _fail(storage: optuna.storages.BaseStorage, trials: Iterable[optuna.trial.FrozenTrial]) -> None:
    """Fail trials left RUNNING by processes that are gone, so that they are drawn again."""
    for trial in trials:
        try:
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it finished, or another process failed it, meanwhile


def tune_study(spec: BenchSpec, dataset: str, protocol: str, entry: LossEntry, *, out: Path, runs: Path,
               progress: bool = False, worker: str | None = None,
               workers_gone: Callable[[set[str]], set[str]] | None = None) -> dict[str, Any]:
    """Run the study until it has `spec.tune.trials` completed trials; write and return the best options.

    Args:
        worker: this process's name when it is one of several workers sharing the study (`tune
            --launcher slurm`); its trials carry it, and a trial it left running (it was stopped and
            requeued) is failed when it starts again.
        workers_gone: which of the given worker names no longer run; their running trials are failed.
    """
    space = entry.search_space
    if not space:
        raise ValueError(f"loss {entry.name!r} declares no search space; nothing to tune")
    name = _study_name(spec, dataset, protocol, entry.label)
    storage, private = _storage(spec, runs, name, shared=worker is not None)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    if private:  # trials left RUNNING by a killed process of ours: fail them so they are drawn again
        _fail(storage, _running(study))
    elif worker is not None:
        _fail(storage, [t for t in _running(study) if t.user_attrs.get("worker") == worker])
    tune = spec.tune
    trial_dir = runs / "tuning" / name

    def objective(trial: optuna.Trial) -> float:
        if worker is not None:
            trial.set_user_attr("worker", worker)
        # The trial's place: after the trials completed or running before it (other processes' included).
        before = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                      optuna.trial.TrialState.RUNNING))
                  if t.number < trial.number]
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in before)
        if len(before) >= tune.trials:
            raise optuna.TrialPruned(f"all {tune.trials} trials are taken")
        # A sampler per trial, seeded by the study and how many trials it conditions on (running ones
        # distinguish processes sharing a study): the same history gives the same next trial after a restart.
        seed = zlib.crc32(f"{tune.seed}/{name}/{done}/{len(before) - done}".encode())
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials)
        options = _suggest(trial, space)
        config = spec.experiment(dataset, protocol, entry, tune.seed, options)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, holdout="validation"),
                                     eval=dataclasses.replace(config.eval, export=False, plots=False))
        metrics = train_run(config, trial_dir / f"trial-{trial.number}", overwrite=True, progress=progress)
        return float(metrics["test"][tune.objective])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while (done := len(_completed(study))) < tune.trials:
        running = _running(study)
        if done + len(running) >= tune.trials:  # the remaining trials run in other processes
            gone = workers_gone({t.user_attrs.get("worker") for t in running} - {None}) if workers_gone else set()
            _fail(storage, [t for t in running if t.user_attrs.get("worker") in gone])
            if spec.tune.storage:  # a database: trials whose process stopped beating
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
            time.sleep(_WAIT_S)
            continue
        print(f"{name}: trial {done + 1}/{tune.trials}", flush=True)
        study.optimize(objective, n_trials=1)
    return _write_best(study, spec, dataset, protocol, entry, out)


def _write_best(study: optuna.Study, spec: BenchSpec, dataset: str, protocol: str, entry: LossEntry,
                out: Path) -> dict[str, Any]:
    completed = _completed(study)[: spec.tune.trials]  # studies shared before trials claimed places may overshoot
    best = max(completed, key=lambda t: (t.value, -t.number))
    path = best_file(out, dataset, protocol, entry.label)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"loss": entry.name, "label": entry.label, "dataset": dataset, "protocol": protocol,
              "objective": spec.tune.objective, "value": best.value, "trial": best.number,
              "trials": len(completed), "seed": spec.tune.seed, "options": best.params}
    write_text(path, tomli_w.dumps(record))
    trials = pd.DataFrame([{"trial": t.number, "value": t.value, **t.params} for t in completed])
    atomic_write(path.with_suffix(".csv"), lambda f: trials.to_csv(f, index=False, float_format="%.6g"))
    print(f"{study.study_name}: best {spec.tune.objective} {best.value:.4f} with {best.params} -> {path}")
    return record


def load_tuned(spec: BenchSpec, out: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The chosen options of every study of `spec` found under `out`, by (dataset, protocol, label)."""
    tuned = {}
    for dataset, protocol, entry in studies(spec):
        path = best_file(out, dataset, protocol, entry.label)
        if path.is_file():
            record = tomllib.loads(path.read_text(encoding="utf-8"))
            if record.get("trials") == spec.tune.trials and record.get("loss") == entry.name:
                tuned[dataset, protocol, entry.label] = dict(record["options"])
    return tuned


def study_done(spec: BenchSpec, dataset: str, protocol: str, entry: LossEntry, runs: Path) -> bool:
    """Whether the study already has its trials (then `tune_study` only rewrites the best file)."""
    name = _study_name(spec, dataset, protocol, entry.label)
    if not spec.tune.storage and not any((runs / "tuning" / f"{name}{suffix}").is_file()
                                         for suffix in (".db", ".journal")):
        return False
    storage, _ = _storage(spec, runs, name)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return len(_completed(study)) >= spec.tune.trials



def release_trials(spec: BenchSpec, dataset: str, protocol: str, entry: LossEntry, runs: Path, *,
                   shared: bool = False) -> None:
    """Fail the study's RUNNING trials; call it only when no process works on the study (they are drawn again)."""
    name = _study_name(spec, dataset, protocol, entry.label)
    storage, _ = _storage(spec, runs, name, shared=shared)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return
    _fail(storage, _running(study))
