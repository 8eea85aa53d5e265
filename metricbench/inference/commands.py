"""The command-line side of using a trained run: `embed`, `index`, `search` and `export-model` (see `metricbench.cli`).

Every argument is checked, and every input read and computed, before anything is written; outputs are written
atomically, and an existing one is refused unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from metricbench.output_dir import check_out_dir, make_out_dir

__all__ = ["COMMANDS", "add_commands"]

_DEVICES = ["auto", "cpu", "cuda"]
_SPLITS = ["all", "train", "val", "test"]  # `embed.SPLITS`, without importing torch for --help
_SOURCE_HELP = ("mnist5k | digits | npz:PATH | idx:DIR | csv:PATH | parquet:PATH | cub200:DIR | cars196:DIR | sop:DIR "
                "| inshop:DIR | folder:DIR | files:TABLE (see `metricbench datasets`)")


def _wrap(text: str) -> str:
    """A description wrapped for the raw formatter (which keeps the epilogs' tables as written)."""
    return textwrap.fill(text, width=100)


def _common(p: argparse.ArgumentParser, *, embeds: bool = True) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    if embeds:
        p.add_argument("--batch-size", type=int, default=256, help="rows per forward pass (default 256)")
        p.add_argument("--device", choices=_DEVICES, default="auto", help="where the model runs (default auto: "
                       "CUDA when present)")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers the run's custom loss (repeatable)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Declare the four subcommands on the CLI's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "embed", help="embed a dataset with a trained run's model, into .npy, .npz or .parquet",
        description=_wrap(
        "Embed a dataset with the run's model and preprocessing (eval transform for photos, the run's "
        "input normalisation; a frozen-backbone run embeds the images through its whole model). The .npz and "
        ".parquet files record which model made them (SHA-256 of its weights) and its metric, so that `search` can "
        "check queries against an index."), formatter_class=raw,
        epilog="example: metricbench embed runs/demo --dataset npz:new.npz --out new.npz\n\n"
        "formats (by the suffix of --out):\n"
        "  .npy      the (N, D) float32 embeddings only\n"
        "  .npz      embeddings, labels (class ids), rows, class_names, paths (photos), model_digest, metric, run,\n"
        "            dataset, split (`metricbench eval --embeddings FILE.npz` reads it)\n"
        "  .parquet  one row per item: row, label, class_name, path (photos), embedding (a fixed-size list of D\n"
        "            float32); the provenance is JSON in the schema metadata under 'metricbench'")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `metricbench train`")
    p.add_argument("--dataset", metavar="SOURCE", help=f"dataset to embed: {_SOURCE_HELP} (default: the run's own)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file: .npy, .npz or .parquet")
    p.add_argument("--split", choices=_SPLITS, default="all",
                   help="rows to embed (default all): the run's own split for its dataset; for another dataset, the "
                   "split the run's protocol and seed make of it")
    _common(p)

    p = sub.add_parser(
        "index", help="build a FAISS index of a gallery embedded by a trained run",
        description=_wrap(
        "Embed a gallery (as `embed` does) and write DIR/: index.faiss (FAISS's own format, "
        "faiss.read_index reads it), items.parquet (id = position in the index, dataset row, label, class_name, "
        "path) and index.json (run, model digest, metric, dim, count, index kind, metricbench version). The index "
        "is the one evaluation would search (auto: exact up to 1,000,000 items, IVF above; cosine: L2-normalised "
        "vectors, inner product). DIR appears complete or not at all."), formatter_class=raw,
        epilog="example: metricbench index runs/demo --dataset digits --out gallery/")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `metricbench train`")
    p.add_argument("--dataset", metavar="SOURCE", help=f"the gallery: {_SOURCE_HELP} (default: the run's own)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="index directory to create")
    p.add_argument("--split", choices=_SPLITS, default="all", help="gallery rows (default all; as in `embed`)")
    p.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="auto",
                   help="auto (default: flat up to 1,000,000 items, ivf above), flat (exact), ivf or hnsw")
    _common(p)

    p = sub.add_parser(
        "search", help="search an index with queries: a dataset or an `embed` file",
        description=_wrap(
        "The k nearest gallery items of each query, one row per (query, rank): query_id, query_row, "
        "query_label, query_class, query_path, rank, neighbor_id, neighbor_row, neighbor_label, neighbor_class, "
        "neighbor_path (paths for photos only), distance: evaluation's squared Euclidean distance for l2, "
        "1 - cosine similarity for cosine. When the index's run directory has verification.json (its metric, "
        "threshold), also same_class = distance <= threshold. Neighbours are exactly those of evaluation's search. "
        "Queries embedded by another model or for another metric than the index's are refused."),
        formatter_class=raw,
        epilog="examples: metricbench search gallery/ --query npz:new.npz -k 5 --out hits.csv\n"
        "          metricbench search gallery/ --query new.parquet --out hits.json")
    p.add_argument("index", type=Path, metavar="DIR", help="index directory written by `metricbench index`")
    p.add_argument("--query", required=True, metavar="SOURCE|FILE",
                   help="a dataset spec, embedded with the index's run, or a .npz/.parquet file from `metricbench "
                   "embed` with the same model")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="results: .csv or .json (a list of rows)")
    p.add_argument("--split", choices=_SPLITS, default="all", help="query rows of a dataset spec (default all)")
    _common(p)

    p = sub.add_parser(
        "export-model", help="export a trained run's embedding model to ONNX or TorchScript",
        description=_wrap(
        "Write the run's model, input normalisation baked in, with a dynamic batch axis, and FILE.json "
        "beside it (input shape, dtype and value range, channels, image size, mean/std, metric, normalize, model "
        "digest). Input contract, float32 x: photos (batch, C, H, W) in [0, 1] at the run's image size, prepared "
        "by the run's eval transform (shorter side to size*256/224, centre crop) then divided by 255; images held "
        "in memory as the dataset gives them (in [0, 1]); vectors as raw feature values. Output: float32 "
        "(batch, D) embeddings (L2-normalised when model.normalize). A frozen-backbone run exports its whole "
        "image model. TorchScript is deprecated by PyTorch; prefer ONNX."),
        epilog="example: metricbench export-model runs/demo --format onnx --out demo.onnx")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `metricbench train`")
    p.add_argument("--format", dest="export_format", required=True, choices=["onnx", "torchscript"],
                   help="onnx (torch.onnx dynamo exporter; run with onnxruntime) or torchscript (torch.jit.load)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="model file; FILE.json is written beside it")
    _common(p, embeds=False)


def _check_out_file(out: Path, suffixes: tuple[str, ...], *, overwrite: bool, also: tuple[Path, ...] = ()) -> None:
    """Refuse an --out of the wrong kind, an existing one (without --overwrite) or one that cannot be created."""
    if suffixes and out.suffix.lower() not in suffixes:
        raise ValueError(f"--out must end in {', '.join(suffixes)}, got {str(out)!r}")
    for path in (out, *also):
        if path.is_dir():
            raise ValueError(f"--out {str(path)!r} is a directory; expected a file")
        if path.exists() and not overwrite:
            raise FileExistsError(f"--out {str(path)!r} already exists; pass --overwrite to replace it")
    check_out_dir(out.parent)


def _embed(args: argparse.Namespace) -> int:
    from .embed import embed_dataset, open_run
    from .embedded_files import EMBEDDING_SUFFIXES, write_embedded

    _check_out_file(args.out, EMBEDDING_SUFFIXES, overwrite=args.overwrite)
    run = open_run(args.run, device=args.device)
    embedded = embed_dataset(run, args.run, args.dataset, split=args.split, batch_size=args.batch_size,
                             progress=not args.no_progress)
    make_out_dir(args.out.parent, exist_ok=True)
    write_embedded(embedded, args.out)
    shape = embedded.embeddings.shape
    print(f"wrote {shape[0]} x {shape[1]} embeddings to {args.out} (model {embedded.provenance.model_digest[:12]}, "
          f"metric {embedded.provenance.metric})")
    return 0


def _index(args: argparse.Namespace) -> int:
    from .embed import embed_dataset, open_run
    from .index_dir import write_index_dir

    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"--out {str(args.out)!r} already exists; pass --overwrite to replace it")
    check_out_dir(args.out)
    run = open_run(args.run, device=args.device)
    embedded = embed_dataset(run, args.run, args.dataset, split=args.split, batch_size=args.batch_size,
                             progress=not args.no_progress)
    make_out_dir(args.out.parent, exist_ok=True)
    info = write_index_dir(embedded, args.out, index=args.index, overwrite=args.overwrite)
    print(f"indexed {info['count']} x {info['dim']} ({info['index']}, {info['metric']}) in {args.out}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from .index_dir import read_index_dir
    from .search import RESULT_SUFFIXES, load_queries, search_index_dir, verification_threshold, write_results

    from .embed import is_dataset_spec

    _check_out_file(args.out, RESULT_SUFFIXES, overwrite=args.overwrite)
    if args.split != "all" and not is_dataset_spec(args.query):
        raise ValueError(f"--split applies to a dataset --query, not to the file {args.query!r}")
    gallery = read_index_dir(args.index)
    if not 1 <= args.k <= gallery.info["count"]:
        raise ValueError(f"-k must be in [1, {gallery.info['count']}] (the index's items), got {args.k}")
    queries = load_queries(gallery, args.query, split=args.split, batch_size=args.batch_size, device=args.device,
                           progress=not args.no_progress)
    threshold = verification_threshold(gallery.info["run"], gallery.info["metric"])
    results = search_index_dir(gallery, queries, k=args.k, threshold=threshold)
    make_out_dir(args.out.parent, exist_ok=True)
    write_results(results, args.out)
    print(f"wrote {len(results)} rows ({len(queries)} queries x {args.k} neighbours) to {args.out}")
    return 0


def _export_model(args: argparse.Namespace) -> int:
    from .embed import open_run
    from .model_export import export_model

    sidecar = args.out.with_name(args.out.name + ".json")
    _check_out_file(args.out, (), overwrite=args.overwrite, also=(sidecar,))
    run = open_run(args.run, device="cpu")
    export_model(run, args.run, args.out, export_format=args.export_format)
    print(f"wrote {args.out} and {sidecar}")
    return 0


COMMANDS = {"embed": _embed, "index": _index, "search": _search, "export-model": _export_model}
