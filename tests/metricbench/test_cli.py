"""End-to-end runs of the `metricbench` command line on the built-in data."""

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metricbench.checkpoint import load_checkpoint
from metricbench.cli import main

FAST = ["--no-progress", "--set", "train.batch_size=64", "--set", "eval.plots=false"]


def train(out, *extra):
    return main(["train", "--out", str(out), *FAST, *extra])


@pytest.mark.slow
def test_mnist5k_run_writes_config_checkpoint_metrics_and_export(tmp_path, capsys):
    out = tmp_path / "demo"
    assert train(out, "--dataset", "mnist5k", "--loss", "softmax", "--epochs", "1", "--set", "eval.plots=true") == 0
    assert {p.name for p in out.iterdir()} >= {"config.toml", "split.npz", "checkpoint.pt", "log.csv", "metrics.json",
                                             "class_stats.csv", "export", "plots", "tensorboard"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split_sizes"] == {"train": 3500, "val": 500, "test": 1000}
    assert metrics["test"]["precision_at_1"] > 0.8  # chance is 0.1
    assert 0 < metrics["test"]["nmi"] <= 1 and 0 < metrics["test"]["distances"]["intra_inter_ratio"] < 1
    vectors = np.loadtxt(out / "export" / "vectors.tsv", delimiter="\t")
    assert vectors.shape == (1000, 64)
    metadata = (out / "export" / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == 1001 and metadata[0].startswith("label\tlabel_id\tsplit\trow\tnearest_label")
    assert {"sprite.png", "projector_config.pbtxt", "projector_config.json"} <= {p.name for p in (out / "export").iterdir()}
    assert {"umap.png", "distances.png", "margins.png"} <= {p.name for p in (out / "plots").iterdir()}
    stats = (out / "class_stats.csv").read_text().splitlines()
    assert len(stats) == 11  # header + 10 digits
    assert '"precision_at_1"' in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["softmax", "arcface", "pml:ContrastiveLoss"])
def test_digits_run_with_each_loss_kind(tmp_path, loss):
    out = tmp_path / "run"
    assert train(out, "--dataset", "digits", "--loss", loss, "--epochs", "3") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["precision_at_1"] > 0.5
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]


def test_same_seed_same_metrics(tmp_path):
    args = ["--dataset", "digits", "--epochs", "2", "--seed", "7"]
    assert train(tmp_path / "a", *args) == 0 and train(tmp_path / "b", *args) == 0
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab")
    assert a["test"] == b["test"] and a["history"] == b["history"]
    assert train(tmp_path / "c", "--dataset", "digits", "--epochs", "2", "--seed", "8") == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["test"] != a["test"]


@pytest.mark.parametrize("loss", ["softmax", "pml:TripletMarginLoss"])
def test_resume_gives_the_uninterrupted_result(tmp_path, loss):
    args = ["--dataset", "digits", "--epochs", "3", "--loss", loss]
    assert train(tmp_path / "full", *args) == 0
    assert train(tmp_path / "split", *args, "--stop-after-epochs", "1") == 0
    assert not (tmp_path / "split" / "metrics.json").exists()
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    assert main(["train", "--out", str(tmp_path / "split"), "--resume", "--no-progress"]) == 0
    full, resumed = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("full", "split"))
    assert resumed["test"] == full["test"] and resumed["history"] == full["history"]
    a, b = (load_checkpoint(tmp_path / r / "checkpoint.pt")["model"] for r in ("full", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert log == (tmp_path / "full" / "log.csv").read_text().splitlines()


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metricbench", "train", "--out", str(out), "--dataset", "mnist5k", "--epochs", "50",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Continue with: metricbench train --resume" in output
    state = load_checkpoint(out / "checkpoint.pt")
    assert 1 <= state["epoch"] < 50
    assert not (out / "metrics.json").exists()


def test_existing_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert train(out, "--dataset", "digits", "--epochs", "1") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert train(out, "--dataset", "digits", "--epochs", "1", "--overwrite") == 0
    assert not (out / "keep.txt").exists() and (out / "metrics.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "npz:/does/not/exist.npz"], "not found: /does/not/exist.npz"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--loss", "tripet"], "unknown loss 'tripet'; available:"),
    (["--set", "loss.options.bogus=1"], r"unknown option\(s\) 'bogus' for loss 'softmax'"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert train(out, "--dataset", "digits", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("metricbench train: error:") and re.search(message, err), err
    assert not out.exists()


def test_resume_without_a_run_fails(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


def test_eval_and_export_reuse_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--dataset", "digits", "--epochs", "1") == 0
    trained = json.loads((out / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again.pop("distances") == pytest.approx(trained.pop("distances"))
    assert again == pytest.approx(trained)
    assert main(["export", str(out), "--split", "val"]) == 0
    vectors = np.loadtxt(out / "export-val" / "vectors.tsv", delimiter="\t")
    assert vectors.shape[0] == json.loads((out / "metrics.json").read_text())["split_sizes"]["val"]


def test_listing_commands(capsys):
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "mnist5k" in listing and "5000" in listing and "digits" in listing and "1797" in listing
    assert main(["losses"]) == 0
    listing = capsys.readouterr().out
    assert "arcface" in listing and "margin=28.6" in listing and "pml:<LossName>" in listing


@pytest.mark.parametrize("command", ["train", "eval", "export", "datasets", "download", "losses", "bench", "tune",
                                     "embed", "index", "search", "export-model"])
def test_every_command_has_help(command):
    result = subprocess.run([sys.executable, "-m", "metricbench", command, "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0 and result.stdout.startswith(f"usage: metricbench {command}")


def test_user_npz_run_and_changed_data_is_detected(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    x = rng.normal(size=(120, 5)) + 4 * np.eye(4, 5)[y]
    data = tmp_path / "mine.npz"
    np.savez(data, x=x, y=y, class_names=np.array(["ant", "bee", "cat", "dog"]))
    out = tmp_path / "run"
    assert train(out, "--dataset", f"npz:{data}", "--epochs", "2", "--protocol", "open") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_classes"] == 4 and metrics["split_sizes"]["test"] == 60  # the unseen half of the classes
    labels = (out / "export" / "metadata.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[0] for line in labels} == {"cat", "dog"}
    np.savez(data, x=x[:100], y=y[:100])
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    assert "covers 120 rows but dataset" in capsys.readouterr().err


def test_tensorboard_reads_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert train(out, "--dataset", "digits", "--epochs", "2", "--set", "train.log_every=5") == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/ce", "train/lr", "val/precision_at_1", "val/map_at_r"} <= tags
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(steps) and steps[0] == 5
    assert len(events.Scalars("val/precision_at_1")) == 2


def _embeddings_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["ant", "bee", "cat"]), 40)
    x = rng.normal(size=(120, 6)).astype(np.float32) + 3 * np.eye(3, 6, dtype=np.float32)[np.repeat(np.arange(3), 40)]
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "l.npy", np.repeat(np.arange(3), 40))
    np.savez(tmp_path / "e.npz", embeddings=x, labels=labels)
    import pandas as pd

    pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(species=labels).to_parquet(tmp_path / "e.parquet")
    return x, labels


@pytest.mark.parametrize("files", [["e.npy", "--labels", "l.npy"], ["e.npz"], ["e.parquet", "--label-column", "species"]])
def test_eval_embeddings_from_any_model(tmp_path, capsys, files):
    x, labels = _embeddings_files(tmp_path)
    args = ["eval", "--embeddings", str(tmp_path / files[0]), *[str(tmp_path / a) if a.endswith(".npy") else a for a in files[1:]]]
    assert main([*args, "--metric", "cosine", "--ks", "1", "5", "--no-plots", "--out", str(tmp_path / "report")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"recall_at_1", "recall_at_5", "map_at_r", "nmi", "ami", "distances"} <= set(printed)
    from metricbench.eval import retrieval_metrics

    expected = retrieval_metrics(x, np.repeat(np.arange(3), 40), ks=(1, 5), metric="cosine")
    assert printed["map_at_r"] == pytest.approx(expected["map_at_r"])
    assert len((tmp_path / "report" / "class_stats.csv").read_text().splitlines()) == 4
    assert (tmp_path / "report" / "export" / "vectors.tsv").exists()


def test_eval_bad_input(tmp_path, capsys):
    _embeddings_files(tmp_path)
    np.save(tmp_path / "one.npy", np.zeros(120, dtype=int))
    cases = [
        (["eval"], "give either a run directory or --embeddings"),
        (["eval", "--embeddings", str(tmp_path / "e.npy")], "--labels is required"),
        (["eval", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "one.npy")], "at least 2"),
        (["eval", "--embeddings", str(tmp_path / "nope.npy"), "--labels", str(tmp_path / "l.npy")], "does not exist"),
    ]
    for args, message in cases:
        assert main(args) == 2
        assert message in capsys.readouterr().err, args


def test_bench_and_tune_errors_name_the_problem(tmp_path, capsys):
    assert main(["bench", "no-such-preset"]) == 2
    assert "neither a file nor a preset (presets: cars196, cars196-frozen, cub200, cub200-frozen, full," in capsys.readouterr().err
    assert main(["bench", "quick", "--set", "protocols=['half']", "--out", str(tmp_path / "o")]) == 2
    assert "protocols must be among closed, open" in capsys.readouterr().err
    assert main(["tune", "quick", "--runs", str(tmp_path / "r")]) == 2  # quick has no [tune] section
    assert "nothing to tune" in capsys.readouterr().err
    assert main(["bench", "quick", "--aggregate-only", "--runs", str(tmp_path / "none")]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def test_a_bug_keeps_its_traceback_but_bad_input_is_a_usage_error(tmp_path, monkeypatch, capsys):
    import metricbench.data

    def buggy():
        raise TypeError("bug")

    monkeypatch.setattr(metricbench.data, "available_datasets", buggy)
    with pytest.raises(TypeError, match="bug"):  # not turned into a usage error
        main(["datasets"])
    out = tmp_path / "run"
    assert train(out, "--dataset", "digits", "--set", "train.epochs='x'") == 2
    assert capsys.readouterr().err == "metricbench train: error: train.epochs must be int, got 'x'\n"
    assert not out.exists()


def test_a_bug_exits_1_with_a_traceback():
    code = ("import sys, metricbench.data as d; from metricbench.cli import main\n"
            "def buggy(): raise TypeError('bug')\n"
            "d.available_datasets = buggy; sys.exit(main(['datasets']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" in result.stderr and "TypeError: bug" in result.stderr


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "somefile"
    path.write_text("not a directory")
    return path


def test_bad_config_loss_option_and_out_fail_clearly_and_write_nothing(tmp_path, a_file, capsys):
    out = tmp_path / "run"
    cases = [
        (["--loss", "triplet-semihard", "--set", "loss.options.margin=abc"],
         "loss.options.margin must be float, got 'abc'"),
        (["--config", str(tmp_path)], f"--config {str(tmp_path)!r} is a directory; expected a TOML file"),
        (["--import", "no_such_module_here"], "--import 'no_such_module_here': no module named"),
    ]
    for args, message in cases:
        assert train(out, "--dataset", "digits", *args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("metricbench train: error: ") and message in err and err.count("\n") == 1, err
        assert not out.exists()
    assert train(a_file / "run", "--dataset", "digits") == 2
    assert capsys.readouterr().err == (f"metricbench train: error: --out {str(a_file / 'run')!r} cannot be created: "
                                       f"Not a directory ({str(a_file)!r} is a file, not a directory)\n")
    assert a_file.read_text() == "not a directory"


@pytest.mark.parametrize("args, flag", [
    (["export", "no-run", "--out", "{file}/x"], "--out"),
    (["bench", "quick", "--out", "{file}/x", "--runs", "{tmp}/runs"], "--out"),
    (["bench", "quick", "--out", "{tmp}/out", "--runs", "{file}/x/y"], "--runs"),
    (["tune", "quick", "--out", "{tmp}/out", "--runs", "{file}/x"], "--runs"),
])
def test_out_under_a_file_is_a_usage_error_for_every_command(tmp_path, a_file, capsys, args, flag):
    args = [a.format(file=a_file, tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} '{a_file}/x" in err and "cannot be created: Not a directory" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somefile"]


def test_out_in_a_read_only_parent(tmp_path):
    """A read-only parent stops only non-root users: the command runs in a child process as `nobody`."""
    import shutil
    import tempfile

    import metricbench.run  # noqa: F401  (everything the command imports, loaded before dropping root)

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    base = Path(tempfile.mkdtemp())  # pytest's tmp_path is private to root
    try:
        base.chmod(0o755)
        (base / "ro").mkdir(mode=0o555)
        (base / "ro").chmod(0o555)
        out = base / "ro" / "run"
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop root if we are root, run the command, report its exit code and stderr
            code = 99
            try:
                import contextlib
                import io

                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    code = main(["train", "--out", str(out), "--dataset", "digits", "--no-progress"])
                os.write(write_end, json.dumps([code, err.getvalue()]).encode())
            except BaseException as exc:  # noqa: BLE001  (report anything to the parent)
                os.write(write_end, json.dumps([code, repr(exc)]).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        code, err = json.loads(report)
        assert code == 2, err
        assert err == (f"metricbench train: error: --out {str(out)!r} cannot be created: Permission denied "
                       f"({str(base / 'ro')!r} is not writable)\n")
        assert list((base / "ro").iterdir()) == []
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base)


TINY_FAST = ["--no-progress", "--set", "train.batch_size=8", "--set", "train.epochs=1", "--set", "eval.plots=false",
             "--set", "eval.export=false", "--set", "eval.ks=[1]"]


def test_relative_dataset_path_works_from_another_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "a" / "data" / "x.npz", x=rng.normal(size=(40, 4)) + 3 * np.eye(4)[y], y=y)
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "--out", "run", "--dataset", "npz:data/x.npz", *TINY_FAST]) == 0
    assert f'dataset = "npz:{tmp_path}/a/data/x.npz"' in (tmp_path / "a" / "run" / "config.toml").read_text()
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    assert main(["eval", "../a/run"]) == 0
    assert "precision_at_1" in json.loads(capsys.readouterr().out)
    assert main(["export", "../a/run", "--out", "exported"]) == 0
    assert len((tmp_path / "b" / "exported" / "vectors.tsv").read_text().splitlines()) == 8  # 20% of 40 test rows
