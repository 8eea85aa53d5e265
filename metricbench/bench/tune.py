"""`metricbench tune`: search each loss's declared hyperparameters on validation rows only (Optuna TPE).

One study per (dataset, protocol, loss). A trial is an ordinary run with the spec's shared config,
the trial's loss options and `data.holdout = "validation"`: it trains on part of the training rows
and is scored on the rest (other classes for `open`), never on the test rows. The chosen options go
to `OUT/tuning/<dataset>/<protocol>/<loss>.toml`, where `bench` reads them for its tuned rows.

Resuming is exact: trial k is sampled by a TPE sampler seeded with (seed, k) from the k trials
completed before it, and a trial cut short by a kill is failed and drawn again, so a study
interrupted at any point ends with the same trials as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import tomllib
import zlib
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import tomli_w

from metricbench.losses.search_space import Choice, FloatRange, IntRange, SearchSpace

from ..atomic import atomic_write, write_text
from ..run import train_run
from .spec import BenchSpec, LossEntry, slug

__all__ = ["best_file", "load_tuned", "studies", "study_done", "tune_study"]


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


def _storage(spec: BenchSpec, runs: Path, name: str) -> tuple[optuna.storages.RDBStorage, bool]:
    """The study's database and whether this process owns it (the default: a private SQLite file)."""
    if spec.tune.storage:
        # Shared with other processes or machines: a trial whose worker stops beating is failed
        # after the grace period and drawn again.
        return optuna.storages.RDBStorage(
            spec.tune.storage, heartbeat_interval=30, grace_period=120,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3)), False
    path = runs / "tuning" / f"{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}"), True


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def tune_study(spec: BenchSpec, dataset: str, protocol: str, entry: LossEntry, *, out: Path, runs: Path,
               progress: bool = False) -> dict[str, Any]:
    """Run the study until it has `spec.tune.trials` completed trials; write and return the best options."""
    space = entry.search_space
    if not space:
        raise ValueError(f"loss {entry.name!r} declares no search space; nothing to tune")
    name = _study_name(spec, dataset, protocol, entry.label)
    storage, private = _storage(spec, runs, name)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    if private:  # trials left RUNNING by a killed process of ours: fail them so they are drawn again
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    tune = spec.tune
    trial_dir = runs / "tuning" / name

    def objective(trial: optuna.Trial) -> float:
        options = _suggest(trial, space)
        config = spec.experiment(dataset, protocol, entry, tune.seed, options)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, holdout="validation"),
                                     eval=dataclasses.replace(config.eval, export=False, plots=False))
        metrics = train_run(config, trial_dir / f"trial-{trial.number}", overwrite=True, progress=progress)
        return float(metrics["test"][tune.objective])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while (done := len(_completed(study))) < tune.trials:
        running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
        # A sampler per trial, seeded by the study and how many trials it conditions on (running ones
        # distinguish processes sharing a study): the same history gives the same next trial after a restart.
        seed = zlib.crc32(f"{tune.seed}/{name}/{done}/{running}".encode())
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials)
        print(f"{name}: trial {done + 1}/{tune.trials}", flush=True)
        study.optimize(objective, n_trials=1)
    return _write_best(study, spec, dataset, protocol, entry, out)


def _write_best(study: optuna.Study, spec: BenchSpec, dataset: str, protocol: str, entry: LossEntry,
                out: Path) -> dict[str, Any]:
    completed = _completed(study)[: spec.tune.trials]  # a shared study may overshoot; keep the budget
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
    if not spec.tune.storage and not (runs / "tuning" / f"{name}.db").is_file():
        return False
    storage, _ = _storage(spec, runs, name)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return len(_completed(study)) >= spec.tune.trials

