"""report.html: one self-contained page per benchmark, built by the aggregation and rendered by a real browser.

One tiny benchmark (mnist5k, closed set, 2 losses, 1 seed, 1 epoch) runs through `metricbench bench` once per
module. Its run directories are used as they are (retrievals.json written by the runs themselves), and in a copy
with retrievals.json files written here, so the side-by-side queries are tested before and whatever the runs write.
"""

import base64
import importlib.util
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metricbench.bench import aggregate, load_spec
from metricbench.bench.html_report import (NO_RETRIEVALS, RETRIEVALS_FILE, RetrievalComparison, render_report,
                                           retrieval_comparisons)
from metricbench.bench.tables import summarize
from metricbench.data import load_dataset
from metricbench.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
name = "tiny"
datasets = ["mnist5k"]
protocols = ["closed"]
seeds = [0]
workers = 2
threads = 1
[base]
train.epochs = 1
eval.export = false
eval.metric = "cosine"
[[losses]]
name = "softmax"
[[losses]]
name = "triplet-semihard"
"""
LOSSES = ("softmax", "triplet-semihard")
DATA_URI = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _load_screenshot_script():
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "experiments" / "report_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = _load_screenshot_script()


# --- a page from made-up inputs: fast, no runs ---

def made_up_summary() -> pd.DataFrame:
    rows = [{"dataset": "d<1>", "protocol": "open", "loss": loss, "seed": seed, "map_at_r": m, "precision_at_1": p}
            for loss, values in [("a&b", [(0.5, 0.9), (0.6, 0.8)]), ("c", [(0.7, 0.7), (0.72, 0.75)])]
            for seed, (m, p) in enumerate(values)]
    return summarize(pd.DataFrame(rows))


def made_up_comparison(class_name: str) -> RetrievalComparison:
    query = {"row": 3, "label": 1, "class_name": class_name, "kind": "fixed", "average_precision": 0.5,
             "neighbors": [{"row": 7, "label": 1, "class_name": class_name, "distance": 0.125, "correct": True},
                           {"row": 9, "label": 2, "class_name": "two", "distance": 0.25, "correct": False}]}
    return RetrievalComparison("d<1>", "open", 0, [query], {"a&b": {3: query}, "c": NO_RETRIEVALS},
                               about={"metric": "cosine", "k": 2, "split": "test"})


def made_up_page(class_name: str = "one") -> str:
    return render_report(title="Benchmark <t>", protocol="Every loss gets `auto` and **closed** sets.",
                         summary=made_up_summary(), figures={}, comparisons=[made_up_comparison(class_name)],
                         provenance={"commit": "abc", "versions": "x 1", "machine": "m"}, command="metricbench bench t")


def test_summary_cells_match_summary_md_formats_and_best_is_bold():
    page = made_up_page()
    assert "<td><strong>0.7100 ± 0.0141</strong>" in page  # loss c has the best MAP@R
    assert "<td>0.5500 ± 0.0707 <span" in page  # the interval below the mean
    half = 12.706204736174694 * 0.0707107 / math.sqrt(2)  # Student-t 97.5% quantile, 1 degree of freedom
    low, high = 0.55 - half, 0.55 + half
    assert f"({low:.3f}–{high:.3f})" in page
    assert "<code>auto</code>" in page and "<strong>closed</strong>" in page


def test_strings_from_data_and_config_are_escaped():
    page = made_up_page(class_name="<script>alert(1)</script>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&amp;b" in page and "d&lt;1&gt;, open set" in page and "Benchmark &lt;t&gt;" in page


def test_vector_data_gets_text_cells_and_a_loss_without_file_gets_a_note():
    page = made_up_page()
    assert "<img" not in page  # no thumbnails, no figures
    assert 'class="nb text ok"' in page and 'class="nb text bad"' in page and "0.125" in page
    assert NO_RETRIEVALS in page and "AP 0.50" in page


# --- a real benchmark ---

def bench_command(spec: Path, out: Path, runs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "metricbench", "bench", str(spec), "--out", str(out), "--runs", str(runs),
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    spec = root / "tiny.toml"
    spec.write_text(SPEC)
    subprocess.run(bench_command(spec, root / "out", root / "runs"), check=True, capture_output=True, cwd=ROOT)
    return root


def write_made_up_retrievals(run: RunDir, seed: int, loss: str) -> None:
    """A retrievals.json as the runs write it: the same fixed queries for every loss of a seed, neighbours
    from the test split (drawn per loss), ranked by a made-up distance."""
    split = np.load(run.split)
    test, labels = split["test"], load_dataset("mnist5k").y
    fixed = np.random.default_rng(seed).choice(test, 8, replace=False)
    rng = np.random.default_rng(len(loss))

    def item(row, **more):
        return {"row": int(row), "label": int(labels[row]), "class_name": str(labels[row]), **more}

    queries = []
    for query in fixed:
        neighbors = rng.choice(test[test != query], 5, replace=False)
        queries.append(item(query, kind="fixed", average_precision=float(rng.random()), neighbors=[
            item(n, distance=float(d), correct=bool(labels[n] == labels[query]))
            for n, d in zip(neighbors, np.sort(rng.random(5)))]))
    queries.append(item(test[0], kind="hardest", average_precision=0.0, neighbors=[]))  # not compared across losses
    run.plots.mkdir(exist_ok=True)
    (run.plots / RETRIEVALS_FILE).write_text(json.dumps({"metric": "cosine", "k": 5, "split": "test",
                                                         "queries": queries}))


@pytest.fixture(scope="module")
def made_up_report(bench):
    """The benchmark re-aggregated (as `--aggregate-only` does) from a copy of its runs with retrievals.json files
    written here, the second loss's left out."""
    root = bench / "made-up"
    shutil.copytree(bench / "runs", root / "runs")
    write_made_up_retrievals(RunDir(root / "runs/mnist5k/closed/softmax/seed-0"), 0, "softmax")
    (root / "runs/mnist5k/closed/triplet-semihard/seed-0/plots" / RETRIEVALS_FILE).unlink(missing_ok=True)
    aggregate(load_spec(bench / "tiny.toml"), out=root / "out", runs=root / "runs", command="metricbench bench tiny")
    return root / "out" / "report.html"


@pytest.mark.slow
def test_report_has_every_loss_panel_number_and_figure_inline(bench):
    out = bench / "out"
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = pd.read_csv(out / "summary.csv")
    for loss in LOSSES:
        assert f"<tr><td>{loss}</td>" in page
        mean = summary[(summary["loss"] == loss) & (summary["metric"] == "map_at_r")]["mean"].iloc[0]
        assert f"{mean:.4f}" in page and f"{mean:.4f}" in (out / "summary.md").read_text()
    assert ">mnist5k, closed set</h2>" in page and 'href="#panel-0"' in page
    assert "commit:" in page and "packages: metricbench" in page and "metricbench bench" in page
    embedded = {base64.b64decode(data) for data in DATA_URI.findall(page)}
    for figure in ("metrics.png", "distances.png", "curves.png", "umap-mnist5k-closed.png"):
        assert (out / figure).read_bytes() in embedded
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing but data URIs and anchors: self-contained


@pytest.mark.slow
def test_aggregate_only_rebuilds_the_report(bench):
    out = bench / "aggregate-only"
    subprocess.run(bench_command(bench / "tiny.toml", out, bench / "runs", "--aggregate-only"), check=True,
                   capture_output=True, cwd=ROOT)
    assert (out / "report.html").read_text(encoding="utf-8").count("<tr><td>softmax</td>") == 1


@pytest.mark.slow
def test_the_same_fixed_queries_side_by_side_with_thumbnails(made_up_report):
    page = made_up_report.read_text(encoding="utf-8")
    saved = json.loads((made_up_report.parents[1] / "runs/mnist5k/closed/softmax/seed-0/plots" /
                        RETRIEVALS_FILE).read_text())
    fixed = [q for q in saved["queries"] if q["kind"] == "fixed"]
    assert page.count('<div class="query">') == 6  # at most 6 of the 8 fixed queries; the "hardest" one not
    for query in fixed[:6]:
        assert f"row {query['row']}, class" in page
    assert f"row {fixed[6]['row']}, class" not in page
    assert page.count(NO_RETRIEVALS) == 6  # triplet-semihard's line of each query
    thumbnails = [Image.open(io.BytesIO(base64.b64decode(d))) for d in DATA_URI.findall(page)]
    assert sum(t.size == (28, 28) for t in thumbnails) == 6 * (1 + 5)  # queries and softmax's neighbours
    assert page.count('class="nb ok"') + page.count('class="nb bad"') == 6 * 5


@pytest.mark.slow
def test_runs_own_retrievals_are_compared(bench):
    comparisons = retrieval_comparisons(pd.read_csv(bench / "out" / "runs.csv"), bench / "runs")
    assert [len(c.queries) > 0 for c in comparisons] == [True]
    answers = comparisons[0].answers
    assert list(answers) == list(LOSSES) and all(isinstance(a, dict) for a in answers.values())
    assert all(set(a) >= {q["row"] for q in comparisons[0].queries} for a in answers.values())  # same fixed rows
    page = (bench / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count('<div class="query">') == len(comparisons[0].queries) and NO_RETRIEVALS not in page


# --- a real browser ---

@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, installed with apt-get when missing and we may (root, apt-get present)."""
    if shutil.which("chromium") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("headless rendering needs Debian's chromium package (apt-get install chromium, as root)")
        for step in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
            done = subprocess.run(step, capture_output=True, text=True, timeout=900,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if done.returncode != 0:
                pytest.skip(f"could not install chromium ({' '.join(step)}: {done.stderr.strip()[-300:]})")
    return screenshots.chromium


def processes_naming(text: str) -> list[int]:
    """Live processes whose command line names `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def alone(report: Path, directory: Path) -> Path:
    """A copy of the page in an empty directory: nothing beside it to load."""
    directory.mkdir()
    return Path(shutil.copy(report, directory / "report.html"))


@pytest.mark.slow
def test_chromium_renders_a_page_that_is_not_blank(chromium, made_up_report, tmp_path):
    page, shot = alone(made_up_report, tmp_path / "alone"), tmp_path / "shot.png"
    started = time.perf_counter()
    screenshots.screenshot(page, shot, width=1280, height=2000)
    print(f"screenshot: {time.perf_counter() - started:.1f} s")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20 and (pixels < 250).mean() > 0.02
    assert processes_naming("chromium-profile-") == []  # the browser's whole process group is gone


@pytest.mark.slow
def test_every_image_loads_in_chromium(chromium, made_up_report, tmp_path):
    page = made_up_report.read_text(encoding="utf-8")
    probe = ("<script>window.addEventListener('load', () => { const images = Array.from(document.images); "
             "const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length; "
             "const out = document.createElement('pre'); out.id = 'probe'; "
             "out.textContent = `images=${images.length} broken=${broken}`; document.body.appendChild(out); });"
             "</script>")
    checked = alone(made_up_report, tmp_path / "alone")
    checked.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    started = time.perf_counter()
    done = chromium("--virtual-time-budget=5000", "--dump-dom", checked.as_uri(), timeout=120)
    print(f"dump-dom: {time.perf_counter() - started:.1f} s")
    found = re.search(r'<pre id="probe">images=(\d+) broken=(\d+)</pre>', done.stdout)
    assert found, f"no probe output (exit {done.returncode}): {done.stderr[-1000:]}"
    assert int(found[2]) == 0
    assert int(found[1]) == page.count("<img ") == len(DATA_URI.findall(page)) > 30
    assert "<script" not in page  # the report itself runs no script
    assert processes_naming("chromium-profile-") == []
