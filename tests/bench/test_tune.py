"""Tuning: validation rows only, exact resume after a trial is cut short, chosen options reach bench."""

import numpy as np
import optuna
import pytest

from metricbench.bench import load_spec, tune_study
from metricbench.bench.tune import best_file, load_tuned, studies
from metricbench.data import load_dataset, load_split, make_split, validation_split

SPEC = """
name = "t"
datasets = ["digits"]
protocols = ["open"]
seeds = [0]
[base]
train.epochs = 1
[[losses]]
name = "triplet-semihard"
[[losses]]
name = "pml:ContrastiveLoss"
[tune]
datasets = ["digits"]
trials = 3
startup_trials = 2
"""


def spec_with(tmp_path, *overrides):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return load_spec(path, overrides)


def completed_params(runs, spec):
    storage = f"sqlite:///{runs / 'tuning' / 't-digits-open-triplet-semihard.db'}"
    study = optuna.load_study(study_name="t-digits-open-triplet-semihard", storage=storage)
    return [(t.params, t.value) for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]


@pytest.mark.slow
def test_a_study_cut_short_resumes_to_the_same_trials_and_never_sees_test_rows(tmp_path):
    spec = spec_with(tmp_path)
    assert [(d, p, e.label) for d, p, e in studies(spec)] == [("digits", "open", "triplet-semihard")]  # pml: no space
    (dataset, protocol, entry), = studies(spec)
    whole = tune_study(spec, dataset, protocol, entry, out=tmp_path / "a", runs=tmp_path / "ra")

    runs = tmp_path / "rb"
    tune_study(spec_with(tmp_path, "tune.trials=2"), dataset, protocol, entry, out=tmp_path / "b", runs=runs)
    storage = f"sqlite:///{runs / 'tuning' / 't-digits-open-triplet-semihard.db'}"
    optuna.load_study(study_name="t-digits-open-triplet-semihard", storage=storage).ask()  # a killed trial: RUNNING
    resumed = tune_study(spec, dataset, protocol, entry, out=tmp_path / "b", runs=runs)

    assert completed_params(runs, spec) == completed_params(tmp_path / "ra", spec)
    number = "trial"  # the killed trial took a number, so the numbers after it shift by one
    assert {k: v for k, v in resumed.items() if k != number} == {k: v for k, v in whole.items() if k != number}
    assert whole["trials"] == 3 and 0.05 <= whole["options"]["margin"] <= 2.0
    assert load_tuned(spec, tmp_path / "b") == {("digits", "open", "triplet-semihard"): whole["options"]}
    assert best_file(tmp_path / "b", dataset, protocol, entry.label).with_suffix(".csv").is_file()

    # Every trial trained and scored on the train/val rows of the real split only, the classes of its
    # validation part unseen in its training part.
    labels = load_dataset("digits").y
    test_rows = make_split(labels, protocol="open", seed=0).test
    for trial in (runs / "tuning" / "t-digits-open-triplet-semihard").iterdir():
        used = validation_split(load_split(trial / "split.npz"), labels)
        assert np.intersect1d(np.concatenate([used.train, used.val, used.test]), test_rows).size == 0
        assert not set(labels[used.test]) & set(labels[used.train])
        assert not (trial / "export").exists() and not (trial / "plots").exists()


def test_tuning_a_loss_without_search_space_is_refused(tmp_path):
    spec = spec_with(tmp_path)
    entry = next(e for e in spec.losses if e.name.startswith("pml:"))
    with pytest.raises(ValueError, match="declares no search space"):
        tune_study(spec, "digits", "open", entry, out=tmp_path, runs=tmp_path)


@pytest.mark.slow
def test_workers_sharing_a_study_never_overshoot_and_redraw_the_trials_of_gone_workers(tmp_path, monkeypatch):
    from metricbench.bench import tune as tune_module

    spec = spec_with(tmp_path, "tune.trials=1")
    (dataset, protocol, entry), = studies(spec)
    name, runs = "t-digits-open-triplet-semihard", tmp_path / "runs"
    calls, other = [], []

    def running_then_raced(study):
        # After this worker's loop sees a free place, another worker takes it (asks first): the race
        # that claiming places by trial number settles.
        seen = real_running(study)
        calls.append(len(seen))
        if len(calls) == 2:
            trial = study.ask()
            trial.set_user_attr("worker", "slurm:99")
            other.append(trial.number)
        return seen

    real_running = tune_module._running
    monkeypatch.setattr(tune_module, "_running", running_then_raced)
    monkeypatch.setattr(tune_module, "_WAIT_S", 0)
    gone_asked = []

    def workers_gone(workers):
        gone_asked.append(set(workers))
        return set(workers)  # slurm:99's job has left the queue

    record = tune_study(spec, dataset, protocol, entry, out=tmp_path / "out", runs=runs, worker="slurm:1",
                        workers_gone=workers_gone)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(runs / "tuning" / f"{name}.journal")))
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    state = optuna.trial.TrialState
    assert [(t.number, t.state, t.user_attrs["worker"]) for t in trials] == [
        (0, state.FAIL, "slurm:99"),     # the other worker's trial, failed once its job was gone
        (1, state.PRUNED, "slurm:1"),    # this worker's surplus claim: the place was taken, nothing trained
        (2, state.COMPLETE, "slurm:1")]  # drawn again
    assert other == [0] and gone_asked == [{"slurm:99"}] and record["trials"] == 1
    assert sorted(p.name for p in (runs / "tuning" / name).iterdir()) == ["trial-2"]
