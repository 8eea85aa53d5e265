"""report.html: a benchmark on one self-contained page (tables, figures, the same queries answered by every loss).

Everything is inline: figures and thumbnails are base64 PNG data URIs and the style sheet is in the page, so it
opens from file:// with no network and can be copied anywhere alone. No JavaScript. The tables come from the
summary DataFrame that summary.md is written from, with the same number formats (`cell_parts`).

`retrieval_comparisons` reads each (dataset, protocol)'s first-seed run of every loss (its
plots/retrievals.json and the thumbnails of the rows shown); `render_report` is pure and returns the page;
`write_report` reads the figures and writes the page atomically.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metricbench.eval import GALLERY_FILES
from metricbench.eval.sprite import png_bytes, uint8_images

from ..atomic import write_text
from ..config import ExperimentConfig, load_config
from ..run_dir import RunDir
from .markdown import TABLE_METRICS, cell_parts, protocol_paragraph
from .spec import BenchSpec, slug
from .tables import best_rows

__all__ = ["MAX_QUERIES", "NO_RETRIEVALS", "RETRIEVALS_FILE", "RetrievalComparison", "render_report",
           "retrieval_comparisons", "write_report"]

RETRIEVALS_FILE = GALLERY_FILES["json"]  # in a run's plots/: its queries and their top-k neighbours
MAX_QUERIES = 6  # fixed queries shown per (dataset, protocol)
NO_RETRIEVALS = "no retrievals.json (plots off or an older run)"
_CAPTIONS = {"metrics.png": "MAP@R, P@1 and R-Precision per loss: mean ± std over seeds",
             "distances.png": "Mean squared distance within vs between classes, one point per run",
             "curves.png": "Training loss and validation MAP@R by epoch, mean over seeds"}
_CSS = """
body{margin:0;background:#fff;color:#1d1d1f;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1240px;margin:0 auto;padding:12px 20px 48px}
h1{font-size:24px;margin:12px 0 4px}h2{font-size:19px;margin:36px 0 8px;padding-bottom:4px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:20px 0 6px}code{background:#f3f3f3;padding:0 3px;border-radius:3px}
nav ul{margin:4px 0;padding-left:20px}.muted,.ci{color:#6e6e73}.ci{display:block;font-size:11px}
table.scores{border-collapse:collapse;margin:6px 0}
table.scores th,table.scores td{padding:4px 10px;border-bottom:1px solid #e5e5e5;text-align:right;white-space:nowrap}
table.scores th:first-child,table.scores td:first-child{text-align:left}
table.scores thead th{border-bottom:2px solid #bbb}
img.figure{display:block;max-width:min(100%,1000px);height:auto;margin:6px 0 14px}
.queries{display:grid;grid-template-columns:repeat(auto-fill,minmax(590px,1fr));gap:14px}
.query{border:1px solid #ddd;border-radius:6px;padding:8px 10px}.query p{margin:0 0 6px}
.query table{border-collapse:collapse}
.query th{text-align:left;font-weight:600;padding:2px 10px 2px 0;white-space:nowrap}
.query td{padding:2px 3px;vertical-align:middle}
.nb{display:inline-block;border:3px solid #999;text-align:center;font-size:11px;line-height:1.3}
.ok{border-color:#2e7d32}.bad{border-color:#c62828}.qry{border-color:#1f5fbf}
.nb img{display:block;width:52px;height:52px;object-fit:contain;background:#000}img.px{image-rendering:pixelated}
.nb.text{width:62px;padding:6px 0;overflow:hidden}.note{color:#6e6e73;font-style:italic}
"""


@dataclass(frozen=True)
class RetrievalComparison:
    """The same fixed queries answered by every loss of one (dataset, protocol).

    Attributes:
        queries: the queries shown (from the first loss with a retrievals.json), each a dict as in that file.
        answers: per loss (report order), its query dicts by query row, or a note saying why there are none.
        thumbnails: data URI per dataset row shown; empty for vector data (text cells instead).
        pixelated: the thumbnails are small (MNIST's 28 px): enlarge them without smoothing.
        about: the reference file's metric, k and split; note: why thumbnails are missing, if they are.
    """

    dataset: str
    protocol: str
    seed: int
    queries: list[dict[str, Any]]
    answers: dict[str, dict[int, dict[str, Any]] | str]
    thumbnails: dict[int, str] = field(default_factory=dict)
    about: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    pixelated: bool = False


def _read_retrievals(run: RunDir) -> dict[str, Any] | str:
    path = run.plots / RETRIEVALS_FILE
    if not path.is_file():
        return NO_RETRIEVALS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"unreadable {RETRIEVALS_FILE}: {err}"


def _fixed(records: dict[str, Any]) -> list[dict[str, Any]]:
    """The queries chosen from the seed and split alone: the same rows in every loss's file."""
    return [q for q in records.get("queries", []) if q.get("kind") == "fixed"]


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail_uris(config: ExperimentConfig, rows: list[int]) -> tuple[dict[int, str], int]:
    """A PNG data URI per dataset row (empty for vector data), and the images' height in px."""
    from ..run_inputs import load_inputs  # torch and the data loaders: only when there are queries to show

    images = load_inputs(config).thumbnails(np.asarray(rows, dtype=np.int64))
    if images is None:
        return {}, 0
    tiles = uint8_images(images, len(rows)).transpose(0, 2, 3, 1)
    uris = {row: _data_uri(png_bytes(tile[..., 0] if tile.shape[-1] == 1 else tile)) for row, tile in zip(rows, tiles)}
    return uris, tiles.shape[1]


def retrieval_comparisons(table: pd.DataFrame, runs: Path, max_queries: int = MAX_QUERIES) -> list[RetrievalComparison]:
    """Per (dataset, protocol) of the runs table (from `collect_runs`): the first `max_queries` fixed queries of
    its lowest seed, answered by that seed's run of every loss; thumbnails read once per (dataset, protocol)."""
    comparisons = []
    for (dataset, protocol), part in table.groupby(["dataset", "protocol"], sort=False):
        seed = int(part["seed"].min())
        first = {row.loss: RunDir(runs / row.run) for row in part[part["seed"] == seed].itertuples()}
        files = {loss: _read_retrievals(first[loss]) if loss in first else f"no finished run with seed {seed}"
                 for loss in dict.fromkeys(part["loss"])}
        reference = next((f for f in files.values() if isinstance(f, dict)), None)
        if reference is None:
            comparisons.append(RetrievalComparison(dataset, protocol, seed, [], files))
            continue
        queries = _fixed(reference)[:max_queries]
        answers = {loss: f if isinstance(f, str) else {q["row"]: q for q in _fixed(f)} for loss, f in files.items()}
        shown = {q["row"] for q in queries}
        rows = sorted(shown | {n["row"] for a in answers.values() if isinstance(a, dict)
                               for row, q in a.items() if row in shown for n in q.get("neighbors", [])})
        run = next(first[loss] for loss, f in files.items() if isinstance(f, dict))
        try:
            (thumbnails, height), note = _thumbnail_uris(load_config(run.config), rows), ""
        except (OSError, ValueError, TypeError) as err:  # the data moved or changed since the runs: text cells
            (thumbnails, height), note = ({}, 0), f"thumbnails unavailable ({err}); classes and distances shown as text"
        about = {k: reference.get(k) for k in ("metric", "k", "split")}
        comparisons.append(RetrievalComparison(dataset, protocol, seed, queries, answers, thumbnails, about, note,
                                               pixelated=0 < height <= 32))
    return comparisons


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _inline_markdown(text: str) -> str:
    """Escaped `text` with the two inline forms our Markdown paragraphs use: `code` and **bold**."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _scores_table(part: pd.DataFrame, best: pd.Series) -> str:
    metrics = [m for m in TABLE_METRICS if m in set(part["metric"])]
    head = "".join(f"<th>{_e(TABLE_METRICS[m])}</th>" for m in metrics)
    lines = [f'<table class="scores"><thead><tr><th>loss</th><th>n</th>{head}</tr></thead><tbody>']
    for loss, group in part.groupby("loss", sort=False):
        by_metric = {row.metric: row for row in group.itertuples()}
        cells = []
        for metric in metrics:
            row = by_metric.get(metric)
            if row is None:
                cells.append("<td></td>")
                continue
            text, interval = (_e(s) for s in cell_parts(row))
            text = f"<strong>{text}</strong>" if bool(best[row.Index]) else text
            cells.append(f'<td>{text} <span class="ci">{interval}</span></td>')
        lines.append(f"<tr><td>{_e(loss)}</td><td>{_e(group['n'].iloc[0])}</td>{''.join(cells)}</tr>")
    return "\n".join(lines + ["</tbody></table>"])


def _tile(item: dict[str, Any], comparison: RetrievalComparison, frame: str, caption: str) -> str:
    title = _e(f"row {item['row']} · class {item.get('class_name', item.get('label'))}" + (
        f" · distance {item['distance']:.4f}" if "distance" in item else ""))
    uri = comparison.thumbnails.get(item["row"])
    if uri is None:
        return (f'<div class="nb text {frame}" title="{title}">{_e(item.get("class_name", item.get("label")))}'
                f"<br>{_e(caption)}</div>")
    pixelated = ' class="px"' if comparison.pixelated else ""
    return f'<div class="nb {frame}" title="{title}"><img{pixelated} src="{uri}" alt="{title}">{_e(caption)}</div>'


def _query_block(query: dict[str, Any], comparison: RetrievalComparison) -> str:
    lines = [f'<div class="query"><p>{_tile(query, comparison, "qry", "query")} row {_e(query["row"])}, class '
             f'<strong>{_e(query.get("class_name", query.get("label")))}</strong></p><table>']
    for loss, answer in comparison.answers.items():
        found = answer.get(query["row"]) if isinstance(answer, dict) else None
        if found is None:
            note = answer if isinstance(answer, str) else "this query is not among the run's retrievals"
            lines.append(f'<tr><th>{_e(loss)}</th><td class="note">{_e(note)}</td></tr>')
            continue
        tiles = "".join(f"<td>{_tile(n, comparison, 'ok' if n.get('correct') else 'bad', format(n['distance'], '.3f'))}"
                        "</td>" for n in found.get("neighbors", []))
        ap = found.get("average_precision")
        ap = "" if ap is None else f'<td class="muted">AP {ap:.2f}</td>'
        lines.append(f"<tr><th>{_e(loss)}</th>{tiles}{ap}</tr>")
    return "\n".join(lines + ["</table></div>"])


def _retrievals(comparison: RetrievalComparison) -> str:
    if not comparison.queries:
        notes = "; ".join(f"{loss}: {note}" for loss, note in comparison.answers.items() if isinstance(note, str))
        return f'<p class="note">No retrievals to compare ({_e(notes or "no fixed queries in the files")}).</p>'
    about = comparison.about
    lines = [f"<p>The first {len(comparison.queries)} fixed queries of seed {comparison.seed} (chosen from the seed "
             "and split only, so every loss answers the same ones), each loss's top "
             f"{_e(about.get('k'))} neighbours in the {_e(about.get('split'))} split by the "
             f"{_e(about.get('metric'))} metric, their distance under each: a green frame is the query's class, a red "
             "one another class; AP: the query's average precision.</p>"]
    if comparison.note:
        lines.append(f'<p class="note">{_e(comparison.note)}</p>')
    return "\n".join(lines + ['<div class="queries">', *(_query_block(q, comparison) for q in comparison.queries),
                              "</div>"])


def _figure(name: str, png: bytes, caption: str) -> str:
    return f'<img class="figure" src="{_data_uri(png)}" alt="{_e(caption)}" title="{_e(name)}">'


def render_report(*, title: str, protocol: str, summary: pd.DataFrame, figures: dict[str, bytes],
                  comparisons: list[RetrievalComparison], provenance: dict[str, str], command: str,
                  notes: tuple[str, ...] | list[str] = ()) -> str:
    """The whole page.

    Args:
        title: the page's heading; protocol: the Markdown paragraph of what every loss shares.
        summary: from `summarize`, as summary.md gets it; figures: PNG bytes by file name (umap-<dataset>-<protocol>.png
            go to their (dataset, protocol), the others to Figures); comparisons: from `retrieval_comparisons`.
        provenance: from `provenance()`; command: what made the results; notes: Markdown lines shown first.
    """
    best, figures = best_rows(summary), dict(figures)
    by_panel = {(c.dataset, c.protocol): c for c in comparisons}
    panels = list(summary.groupby(["dataset", "protocol"], sort=False))
    toc = [f'<li><a href="#panel-{i}">{_e(d)}, {_e(p)} set</a></li>' for i, ((d, p), _) in enumerate(panels)]
    body = [f"<h1>{_e(title)}</h1>", f"<p class=\"muted\">Made by <code>{_e(command)}</code>; every number comes from "
            "runs.csv and summary.csv beside this page.</p>",
            '<nav><strong>Contents</strong><ul>', *toc, '<li><a href="#figures">Figures</a></li>',
            '<li><a href="#provenance">Provenance</a></li></ul></nav>',
            *(f"<p><strong>{_inline_markdown(n)}</strong></p>" for n in notes),
            f"<p>{_inline_markdown(protocol)}</p>", "<p>Entries: mean ± std over seeds, then the 95% Student-t "
            "interval of the mean; the best mean of each column in bold (lowest for intra/inter, highest "
            "otherwise).</p>"]
    for i, ((dataset, protocol_name), part) in enumerate(panels):
        body += [f'<h2 id="panel-{i}">{_e(dataset)}, {_e(protocol_name)} set</h2>', _scores_table(part, best)]
        if (dataset, protocol_name) in by_panel:
            body += ["<h3>The same queries, every loss</h3>", _retrievals(by_panel[dataset, protocol_name])]
        umap = f"umap-{slug(dataset)}-{protocol_name}.png"
        if umap in figures:
            body += ["<h3>UMAP of the test embeddings, one panel per loss</h3>",
                     _figure(umap, figures.pop(umap), "UMAP per loss")]
    body.append('<h2 id="figures">Figures</h2>')
    for name, png in figures.items():
        caption = _CAPTIONS.get(name, name)
        body += [f"<h3>{_e(caption)}</h3>", _figure(name, png, caption)]
    body += ['<h2 id="provenance">Provenance</h2><ul>', f"<li>commit: {_e(provenance['commit'])}</li>",
             f"<li>packages: {_e(provenance['versions'])}</li>", f"<li>machine: {_e(provenance['machine'])}</li>",
             f"<li>command: <code>{_e(command)}</code></li></ul>"]
    return "\n".join(['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{_e(title)}</title><style>{_CSS}</style></head>", "<body><main>", *body,
                      "</main></body></html>", ""])


def write_report(path: Path, *, spec: BenchSpec, config: ExperimentConfig, summary: pd.DataFrame,
                 table: pd.DataFrame, runs: Path, figures: list[Path], provenance: dict[str, str], command: str,
                 cells_total: int) -> Path:
    """Write report.html of an aggregation (the arguments summary.md is made from, and the figure files)."""
    notes = [] if len(table) == cells_total else [
        f"Incomplete: {len(table)} of {cells_total} runs finished; the tables cover those."]
    page = render_report(title=f"Benchmark {spec.name}: which loss gives the best embedding?",
                         protocol=protocol_paragraph(spec, config), summary=summary,
                         figures={p.name: p.read_bytes() for p in figures},
                         comparisons=retrieval_comparisons(table, runs), provenance=provenance, command=command,
                         notes=notes)
    write_text(path, page)
    return path
