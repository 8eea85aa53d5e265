"""Validation-based model selection and early stopping (`train.select_by`, `train.patience`) on digits runs.

A constant learning rate of 0.02 makes digits' validation MAP@R peak mid-run and then fall: the runs below
exercise selection and early stopping, and every assertion is a relationship read off the run's own history.
"""


import numpy as np
import pytest
import torch

from metricbench.checkpoint import load_checkpoint
from metricbench.config import load_config
from metricbench.evaluation import evaluate
from metricbench.model_selection import best_epoch, should_stop
from metricbench.run import load_run, train_run
from metricbench.run_dir import RunDir
from test_distributed import ON_TWO_RANKS, torchrun

EPOCHS, PATIENCE = 12, 3
BASE = ["data.dataset=digits", "train.batch_size=64", "optim.lr=0.02", "optim.schedule=constant",
        "eval.plots=false", "eval.export=false"]
SELECTED = [f"train.epochs={EPOCHS}", "train.select_by=map_at_r"]


def _run(out, *overrides, **options):
    return train_run(load_config(None, [*BASE, *overrides]), out, progress=False, **options)


def _without_timing(metrics):
    return {k: v for k, v in metrics.items() if k != "train_seconds_this_call"}


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """A full-length run that selects by validation MAP@R: (its directory, its metrics)."""
    out = tmp_path_factory.mktemp("selected") / "run"
    return out, _run(out, *SELECTED)


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """The same run with a patience: (its directory, its metrics)."""
    out = tmp_path_factory.mktemp("patient") / "run"
    return out, _run(out, *SELECTED, f"train.patience={PATIENCE}")


def _first_stop(history):
    """The epoch after which a run with PATIENCE stops, read off a full-length history (None: it never does)."""
    return next((n for n in range(1, len(history) + 1) if should_stop(history[:n], "map_at_r", PATIENCE)), None)


def test_best_epoch_is_the_earliest_maximum_of_finite_values():
    history = [{"epoch": 1, "val_map_at_r": float("nan")}, {"epoch": 2, "val_map_at_r": 0.4},
               {"epoch": 3, "val_map_at_r": 0.6}, {"epoch": 4, "val_map_at_r": 0.6}, {"epoch": 5}]
    assert best_epoch(history, "map_at_r") == 3
    assert best_epoch(history[:1], "map_at_r") is None and best_epoch([], "map_at_r") is None
    assert [should_stop(history[:n], "map_at_r", 2) for n in range(6)] == [False, False, False, False, False, True]


def test_the_best_validation_epoch_is_tested(selected, tmp_path):
    out, metrics = selected
    values = [h["val_map_at_r"] for h in metrics["history"]]
    assert len(values) == EPOCHS and "stopped_early_at_epoch" not in metrics
    assert metrics["selected_by"] == "map_at_r"
    assert metrics["selected_epoch"] == int(np.argmax(values)) + 1  # argmax: the earliest of equal maxima
    assert metrics["selected_epoch"] < EPOCHS, "this config no longer peaks before the last epoch"
    assert load_checkpoint(RunDir(out).best_model)["epoch"] == metrics["selected_epoch"]
    assert load_checkpoint(RunDir(out).checkpoint)["epoch"] == EPOCHS  # resuming still continues from the last

    # Batches are seeded per epoch and the schedule is constant: a run stopped at the selected epoch has its model.
    shorter = _run(tmp_path / "shorter", f"train.epochs={metrics['selected_epoch']}")
    assert shorter["test"] == metrics["test"]

    # `metricbench eval`/export load the selected model too.
    run = load_run(out, device="cpu")
    rows = run.split.test
    again = evaluate(run.embed(rows), run.data.y[rows], run.eval_config("test")).metrics
    assert again.pop("distances") == pytest.approx(metrics["test"]["distances"])
    assert again == pytest.approx({k: v for k, v in metrics["test"].items() if k != "distances"})


def test_patience_stops_after_that_many_epochs_without_improvement(selected, patient):
    full, (_, metrics) = selected[1], patient
    stop = _first_stop(full["history"])
    assert stop is not None and stop < EPOCHS, "this config no longer stops early"
    assert metrics["history"] == full["history"][:stop]  # the same epochs, cut short
    assert metrics["stopped_early_at_epoch"] == metrics["epochs"] == stop
    assert metrics["selected_epoch"] == best_epoch(full["history"][:stop], "map_at_r") == stop - PATIENCE
    if metrics["selected_epoch"] == full["selected_epoch"]:  # the peak came before the stop: the same model
        assert metrics["test"] == full["test"]


@pytest.mark.parametrize("first_call", [2, 1])
def test_resume_stops_and_selects_like_an_uninterrupted_run(patient, tmp_path, first_call):
    _, uninterrupted = patient
    out = tmp_path / "run"
    metrics = _run(out, *SELECTED, f"train.patience={PATIENCE}", stop_after_epochs=first_call)
    calls = 1
    while not metrics["test"]:  # one epoch per call from then on: every epoch boundary is a resume point
        assert metrics["stopped_after_epoch"] == first_call + calls - 1
        metrics = train_run(None, out, resume=True, stop_after_epochs=1, progress=False)
        calls += 1
    assert calls > 1
    assert _without_timing(metrics) == _without_timing(uninterrupted)
    assert _without_timing(RunDir(out).read_metrics()) == _without_timing(uninterrupted)
    a, b = (load_checkpoint(RunDir(r).best_model)["model"] for r in (out, patient[0]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_select_by_without_validation_rows_fails_before_writing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"train.select_by = 'map_at_r'.*no validation rows.*data.val_fraction"):
        _run(out, *SELECTED, "data.val_fraction=0")
    assert not out.exists()


@pytest.mark.parametrize("overrides, message", [
    (["train.select_by=recall_at_1"], "train.select_by must be one of map_at_r, precision_at_1, r_precision; "
                                      "got 'recall_at_1'"),
    (["train.patience=3"], "train.patience needs train.select_by"),
    (["train.select_by=map_at_r", "train.patience=0"], "train.patience must be >= 1, got 0"),
])
def test_bad_selection_settings_fail_at_config_time(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@ON_TWO_RANKS
@pytest.mark.slow
def test_every_rank_stops_and_loads_the_selected_model_under_torchrun(tmp_path):
    # Rank 0 alone computes the validation values; if rank 1 decided on its own, it would train on (and hang
    # in a collective) or stop at another epoch.
    out = tmp_path / "two"
    args = [f"--set={override}" for override in (*BASE, *SELECTED, f"train.patience={PATIENCE}")]
    result = torchrun("-m", "metricbench", "train", "--no-progress", "--out", str(out), *args, cwd=tmp_path)
    assert result.stdout.count("run written to") == 1
    metrics = RunDir(out).read_metrics()
    history = metrics["history"]
    assert metrics["stopped_early_at_epoch"] == len(history) == _first_stop(history) < EPOCHS
    assert metrics["selected_epoch"] == best_epoch(history, "map_at_r") == len(history) - PATIENCE
    assert load_checkpoint(RunDir(out).best_model)["epoch"] == metrics["selected_epoch"]
