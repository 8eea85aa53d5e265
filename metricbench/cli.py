"""`metricbench` command line: train, eval, export, datasets, download, losses, bench, tune; embed, index, search and
export-model (using a trained run: `metricbench.inference.commands`)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence

from .errors import InputTypeError
from .inference.commands import COMMANDS as INFERENCE_COMMANDS
from .inference.commands import add_commands as add_inference_commands
from .output_dir import check_out_dir

__all__ = ["build_parser", "main", "slurm_shorthands"]

# Shorthand flags of `train`, each the same as one `--set` override.
_SHORTHANDS = {
    "dataset": "data.dataset",
    "protocol": "data.protocol",
    "loss": "loss.name",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "optim.lr",
    "embedding_dim": "model.embedding_dim",
    "device": "train.device",
    "seed": "seed",
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an embedding model with one loss, evaluate it and export the test embeddings",
        description="Train, evaluate (FAISS leave-one-out retrieval on the test split) and export one run. "
        "Settings come from the defaults, then --config, then the shorthand flags and --set overrides, "
        "in that order; the resolved config is saved as OUT/config.toml.",
        epilog="example: metricbench train --dataset mnist5k --loss softmax --epochs 5 --out runs/demo; "
        "on 2 processes, with the result of one: torchrun --standalone --nproc_per_node=2 -m metricbench train ...",
    )
    p.add_argument("--out", required=True, type=Path, help="run directory to create (refused if it exists)")
    p.add_argument("--config", type=Path, help="TOML experiment config (sections data, model, loss, optim, train, eval)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set optim.lr=3e-4 --set loss.options.margin=0.2 (repeatable; "
                   "values are TOML literals, bare words are strings)")
    p.add_argument("--dataset", help="mnist5k | digits | npz:PATH | idx:DIR | csv:PATH | parquet:PATH | photos streamed "
                   "from disk: cub200:DIR | cars196:DIR | sop:DIR | inshop:DIR | folder:DIR | files:TABLE "
                   "(default mnist5k; see `metricbench datasets`)")
    p.add_argument("--protocol", choices=["auto", "closed", "open", "standard"],
                   help="closed: test on the training classes; open: test on unseen classes; standard: the dataset's "
                   "own split, validated on held-out training classes (default auto: standard for the benchmark "
                   "datasets, closed otherwise)")
    p.add_argument("--loss", help="registered loss name or pml:<LossName> (default softmax; see `metricbench losses`)")
    p.add_argument("--epochs", type=int, help="passes over the training split (default 10)")
    p.add_argument("--batch-size", type=int, help="samples per step (default 128); under torchrun the global batch, "
                   "shared equally by the processes")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3, Adam)")
    p.add_argument("--embedding-dim", type=int, help="embedding size D (default 64)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when present")
    p.add_argument("--seed", type=int, help="seed of the split, the initial weights and the batch order (default 0)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its last checkpoint, with its saved config")
    p.add_argument("--stop-after-epochs", type=int, metavar="N",
                   help="return after N epochs in this invocation (continue later with --resume)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a Python module first, e.g. one that registers a custom loss (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_run_tools(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run, or embeddings from any model",
                       description="Leave-one-out FAISS retrieval metrics (Recall@K, precision@1, R-precision, MAP@R, "
                       "NMI/AMI) and class distance statistics, printed as JSON. Either a run directory (its checkpoint "
                       "embeds a split) or --embeddings from any other model. With --out, also writes metrics.json, "
                       "class_stats.csv, export/ (Embedding Projector) and plots/.",
                       epilog="examples: metricbench eval runs/demo --out runs/demo/eval-val --split val\n"
                       "          metricbench eval --embeddings emb.npy --labels labels.npy --metric cosine --out report/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, nargs="?", help="run directory written by `metricbench train`")
    p.add_argument("--embeddings", type=Path, help="(N, D) embeddings: .npy (with --labels), .npz (embeddings + labels "
                   "or x + y), .parquet or .csv (numeric columns + --label-column)")
    p.add_argument("--labels", type=Path, help="(N,) labels .npy, for a .npy --embeddings")
    p.add_argument("--label-column", default="label", help="label column of a .parquet/.csv --embeddings (default label)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test", help="rows of a run (default test)")
    p.add_argument("--metric", choices=["l2", "cosine"], help="distance (default: the run's eval.metric, else l2)")
    p.add_argument("--ks", type=int, nargs="+", metavar="K", help="the K of Recall@K (default 1 2 4 8)")
    p.add_argument("--full-map", action="store_true", help="also compute map over the whole ranking (O(N²) time)")
    p.add_argument("--out", type=Path, help="also write metrics.json, class_stats.csv, export/ and plots/ here")
    p.add_argument("--overwrite", action="store_true", help="write into --out even if it exists")
    p.add_argument("--no-plots", action="store_true", help="skip the plots (UMAP takes a few seconds)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default auto")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers the run's custom loss (repeatable)")

    p = sub.add_parser("export", help="write Embedding Projector TSVs of a trained run",
                       description="Embed a split with the run's checkpoint and write vectors.tsv and metadata.tsv "
                       "(load them at projector.tensorflow.org or in TensorBoard's projector).")
    p.add_argument("run", type=Path, help="run directory written by `metricbench train`")
    p.add_argument("--split", choices=["train", "val", "test"], default="test", help="which rows (default test)")
    p.add_argument("--out", type=Path, help="output directory (default RUN/export-SPLIT)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default auto")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers the run's custom loss (repeatable)")

    sub.add_parser("datasets", help="list the built-in datasets and the formats of your own data",
                   description="List built-in datasets (no network needed) with their sizes, and the dataset "
                   "specs for your own files.")
    sub.add_parser("losses", help="list the registered losses and their options",
                   description="List every registered loss with its options and defaults.")



def _add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a preset (quick, full; Reality-Check protocol: cub200, cars196, sop, inshop, each "
                   "also -frozen for a CPU) or a benchmark TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one spec value, e.g. --set seeds=[0] --set base.train.epochs=2 (repeatable)")
    p.add_argument("--out", type=Path, help="tables, figures and chosen options (default results/<spec name>)")
    p.add_argument("--runs", type=Path, help="run directories, logs and studies (default runs/bench/<spec name>)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers a custom loss, here and in every run (repeatable)")


# SLURM flags, each the same as one `--set slurm.KEY=VALUE` override of the spec.
_SLURM_SHORTHANDS = {"partition": "partition", "account": "account", "time": "timeout_min", "cpus": "cpus_per_task",
                     "gpus": "gpus_per_node", "mem": "mem_gb"}


def _add_launcher_arguments(p: argparse.ArgumentParser, *, tune: bool = False) -> None:
    p.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local: processes on this machine (default); slurm: one SLURM job per "
                   + ("tuning worker" if tune else "run and study") + ", through submitit")
    g = p.add_argument_group("SLURM (--launcher slurm)", "each job's resources, over the spec's [slurm] table; "
                             "logs in RUNS/slurm/")
    if tune:
        g.add_argument("--workers", type=int, metavar="N", help="SLURM jobs sharing each study, each running trials "
                       "until the study has its trials (default 1)")
    g.add_argument("--partition", help="partition to submit to (default: the cluster's default)")
    g.add_argument("--account", help="account to charge")
    g.add_argument("--time", type=int, metavar="MIN", help="time limit per job in minutes (default 60); a job "
                   "still running then is requeued and resumes from its last checkpoint")
    g.add_argument("--cpus", type=int, metavar="N", help="CPUs (and threads) per process of a run (default: "
                   "--threads, else 1)")
    g.add_argument("--gpus", type=int, metavar="N", help="GPUs per job (default: none)")
    g.add_argument("--mem", type=float, metavar="GB", help="memory per job (default: the cluster's default)")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. --sbatch qos=high --sbatch constraint=a100 (repeatable)")
    g.add_argument("--no-wait", action="store_true", help="submit and return; the same command again attaches to "
                   "the jobs still queued or running, submits what is missing" + ("" if tune else " and aggregates "
                   "once every run is done"))


def slurm_shorthands(args: argparse.Namespace) -> dict[str, object]:
    """The `slurm.KEY` spec overrides the SLURM flags give (none with the local launcher, which refuses them)."""
    given = {flag: getattr(args, flag) for flag in _SLURM_SHORTHANDS if getattr(args, flag) is not None}
    if args.launcher != "slurm":
        flags = [f"--{flag}" for flag in given] + ["--sbatch"] * bool(args.sbatch) + ["--no-wait"] * args.no_wait
        if flags:
            raise ValueError(f"{', '.join(flags)} need --launcher slurm")
        return {}
    shorthands: dict[str, object] = {f"slurm.{_SLURM_SHORTHANDS[flag]}": value for flag, value in given.items()}
    for option in args.sbatch:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--sbatch must be KEY=VALUE, e.g. --sbatch qos=high; got {option!r}")
        shorthands[f"slurm.sbatch.{key.strip()}"] = value
    return shorthands


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="compare losses: a grid of datasets × protocols × losses × seeds, aggregated",
                       description="Run every cell of a benchmark spec (same model, budget and settings for every "
                       "loss; several seeds), in parallel worker processes, then write runs.csv/parquet, summary.md "
                       "(mean ± std and 95% CI per loss), summary.csv and figures. Finished runs are reused and "
                       "interrupted ones resume, so the same command continues an interrupted benchmark. With a "
                       "[tune] section, `metricbench tune` studies run first and add a tuned row per loss.",
                       epilog="examples: metricbench bench quick\n"
                       "          metricbench bench full --workers 2\n"
                       "          metricbench bench my.toml --set seeds=[0,1] --epochs 3 --no-tune\n"
                       "          metricbench bench full --launcher slurm --partition gpu --gpus 1 --no-wait",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_spec_arguments(p)
    p.add_argument("--epochs", type=int, help="shorthand for --set base.train.epochs=N")
    p.add_argument("--datasets", nargs="+", metavar="SPEC",
                   help="shorthand for --set datasets=[...], e.g. --datasets cub200:/data/CUB_200_2011")
    p.add_argument("--seeds", type=int, nargs="+", help="shorthand for --set seeds=[...]")
    p.add_argument("--workers", type=int, help="runs at a time (default: the number of CPU cores; with --launcher "
                   "slurm: jobs of the array at a time, default no limit)")
    p.add_argument("--threads", type=int, help="threads per run (default: cores / workers)")
    p.add_argument("--no-tune", action="store_true", help="skip the studies; tuned rows use options already chosen")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the tables and figures from finished runs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_launcher_arguments(p)

    p = sub.add_parser("tune", help="search a loss's hyperparameters on validation rows only (Optuna TPE)",
                       description="For each (dataset, protocol, loss) of the spec's [tune] section (or the one "
                       "chosen with --dataset/--protocol/--loss): run Optuna TPE trials over the loss's declared "
                       "search space, each trained on part of the training rows and scored on held-out training "
                       "rows (other classes for open), never on the test rows; write the chosen options to "
                       "OUT/tuning/. Studies live in SQLite files under RUNS/tuning/, or in --storage, a database "
                       "URL that several processes or machines can share; rerunning continues a study.",
                       epilog="example: metricbench tune full --dataset mnist5k --protocol open --loss arcface",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_spec_arguments(p)
    p.add_argument("--dataset", help="only this dataset of the spec")
    p.add_argument("--protocol", choices=["closed", "open", "standard"], help="only this protocol")
    p.add_argument("--loss", help="only the loss with this label")
    p.add_argument("--trials", type=int, help="completed trials per study (default: the spec's tune.trials)")
    p.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://host/db (default: SQLite under --runs; "
                   "with --launcher slurm, a journal file there that the workers share)")
    _add_launcher_arguments(p, tune=True)


def _add_download(sub: argparse._SubParsersAction) -> None:
    from .data.download import download_summaries

    names = download_summaries()
    p = sub.add_parser("download", help="download CUB-200-2011 or Stanford Online Products (checked, resumable)",
                       description="Download a benchmark's public archive into DIR (resuming a partial download), "
                       "check its size and SHA-256, extract it, and print the --dataset spec to use. A dataset "
                       "already extracted there is not downloaded again. For datasets without a public archive, "
                       "print where to get them and the layout metricbench expects (exit 2).",
                       epilog="datasets:\n" + "".join(f"  {n:8s} {line}\n" for n, line in names.items())
                       + "\nexample: metricbench download cub200 ~/data   (then --dataset cub200:~/data/CUB_200_2011)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(names), metavar="NAME", help=", ".join(names))
    p.add_argument("directory", type=Path, metavar="DIR", help="folder to download and extract into (created if "
                   "missing); the dataset lands in a sub-folder")
    p.add_argument("--url", help="download from this http(s) mirror instead; the size and SHA-256 checks still apply")
    p.add_argument("--expect", metavar="SIZE:SHA256", help="with --url: the size in bytes and SHA-256 of the "
                   "mirror's archive, when it is not byte-identical to the original (a repack)")
    p.add_argument("--delete-archive", action="store_true",
                   help="delete the archive once extracted (default: keep it, so the folder can be re-extracted "
                   "without downloading)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metricbench",
        description="Learn embeddings and compare metric losses: one trainer, one loss interface, "
        "FAISS retrieval metrics, Embedding Projector exports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_run_tools(sub)
    _add_bench(sub)
    _add_download(sub)
    add_inference_commands(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run import train_run

    overrides = list(args.overrides)
    overrides += [f"{key}={json.dumps(getattr(args, flag))}" for flag, key in _SHORTHANDS.items()
                  if getattr(args, flag) is not None]
    if args.resume:
        if args.config or overrides:
            raise ValueError("--resume continues with the run's saved config; drop --config, --set and shorthand flags")
        config = None
    else:
        config = load_config(args.config, overrides, what="--config")
        if not args.out.exists():  # an existing --out is train_run's to refuse or replace
            check_out_dir(args.out)
    metrics = train_run(config, args.out, resume=args.resume, overwrite=args.overwrite,
                        stop_after_epochs=args.stop_after_epochs, progress=not args.no_progress)
    if not metrics:  # under torchrun, ranks other than 0 report nothing
        return 0
    if metrics["test"]:
        from .atomic import json_text

        print(json_text(metrics["test"]), end="")
        print(f"run written to {args.out}")
    else:
        print(f"stopped after epoch {metrics['stopped_after_epoch']}; continue with --resume --out {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .atomic import json_text, write_json
    from .config import EvalConfig
    from .evaluation import DEFAULT_KS, check_evaluable, evaluate, write_evaluation
    from .output_dir import check_out_dir, make_out_dir
    from .run_dir import RunDir

    if (args.run is None) == (args.embeddings is None):
        raise ValueError("give either a run directory or --embeddings, not both and not neither")
    if args.out is not None:
        if args.out.exists() and not args.overwrite:
            raise FileExistsError(f"--out {str(args.out)!r} already exists; pass --overwrite to write into it")
        check_out_dir(args.out)
    options = {k: v for k, v in (("metric", args.metric), ("ks", tuple(args.ks) if args.ks else None)) if v is not None}
    options.update(full_map=args.full_map, plots=not args.no_plots)
    images, rows, split, seed, queries, columns = None, None, None, 0, None, None
    thumbnails = None  # dataset rows -> their images, for the retrieval gallery
    if args.run is not None:
        from .run import load_run

        run = load_run(args.run, device=args.device)
        config = run.eval_config(args.split, **options)
        rows, split, seed, queries = getattr(run.split, args.split), args.split, run.config.seed, run.queries(args.split)
        labels, class_names = run.data.y[rows], run.data.class_names
        check_evaluable(labels, config.ks, labels_name=f"the run's {args.split} split", ks_name="--ks", queries=queries)
        embeddings = run.embed(rows, progress=True)
        images = run.inputs.thumbnails(rows) if config.export and args.out is not None else None
        columns = run.inputs.metadata(rows)
        thumbnails = run.inputs.thumbnails
    else:
        from .embedding_files import load_embeddings

        data = load_embeddings(args.embeddings, args.labels, label_column=args.label_column)
        config = EvalConfig(**options)
        embeddings, labels, class_names = data.x, data.y, data.class_names
        labels_name = "--labels" if args.labels is not None else f"the labels of --embeddings {str(args.embeddings)!r}"
        check_evaluable(labels, config.ks or DEFAULT_KS, labels_name=labels_name, ks_name="--ks")
    evaluation = evaluate(embeddings, labels, config, queries=queries)  # computed before anything is written
    if args.out is not None:
        make_out_dir(args.out, exist_ok=True)
        write_evaluation(args.out, evaluation, config, class_names=class_names, images=images, rows=rows, split=split,
                         columns=columns, seed=seed, thumbnails=thumbnails)
        write_json(evaluation.metrics, RunDir(args.out).metrics)
    print(json_text(evaluation.metrics), end="")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .run import export_rows, load_run

    out = args.out or args.run / f"export-{args.split}"
    check_out_dir(out)
    run = load_run(args.run, device=args.device)
    paths = export_rows(run, getattr(run.split, args.split), out, metric=run.config.eval.metric,
                        split_name=args.split)
    for path in paths.values():
        print(path)
    return 0


def _datasets(_: argparse.Namespace) -> int:
    from .data import available_datasets

    rows = available_datasets()
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(str(row.get(k, "")).ljust(widths[k]) for k in keys))
    return 0


def _losses(_: argparse.Namespace) -> int:
    from metricbench.losses import available_losses
    from metricbench.losses.registry import loss_class

    for name in available_losses():
        cls = loss_class(name)
        fields = dataclasses.fields(cls.Config)
        options = ", ".join(f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f.name for f in fields)
        summary = next(iter((cls.__doc__ or "").strip().splitlines()), "")
        print(f"{name:16s} {summary}\n{'':16s} options: {options or '(none)'}")
    print(f"{'pml:<LossName>':16s} any pytorch-metric-learning loss; options: its keyword arguments, miner, miner_options")
    return 0


def _spec(args: argparse.Namespace, shorthands: dict[str, object]) -> tuple:
    from .bench import load_spec

    overrides = list(args.overrides) + [f"{key}={json.dumps(value)}" for key, value in shorthands.items()
                                        if value is not None]
    spec = load_spec(args.spec, overrides)
    out, runs = args.out or Path("results") / spec.name, args.runs or Path("runs/bench") / spec.name
    check_out_dir(out, flag="--out")
    check_out_dir(runs, flag="--runs")
    return spec, out, runs


def _bench(args: argparse.Namespace) -> int:
    from .bench import BenchFailed, aggregate, run_bench

    spec, out, runs = _spec(args, {"base.train.epochs": args.epochs, "seeds": args.seeds, "datasets": args.datasets,
                                   "workers": args.workers, "threads": args.threads, "imports": args.imports or None,
                                   **slurm_shorthands(args)})
    # The command that makes these results (what --aggregate-only rebuilds is the same).
    shown = [a for a in args.argv if a not in ("--aggregate-only", "--no-progress", "--no-wait")]
    command = "metricbench " + " ".join(shlex.quote(a) for a in shown)
    if args.aggregate_only:
        aggregate(spec, out=out, runs=runs, command=command)
    else:
        try:
            table = run_bench(spec, out=out, runs=runs, command=command, tune=not args.no_tune,
                              progress=not args.no_progress, launcher=args.launcher, wait=not args.no_wait)
        except (BenchFailed, ConnectionError) as err:  # the finished runs are aggregated all the same
            print(f"metricbench bench: {err}", file=sys.stderr)
            return 1
        if table is None:
            print(f"jobs submitted; to follow them and aggregate, run again: {command}")
            return 0
    print(f"results written to {out} (summary.md, runs.csv); runs in {runs}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .bench.tune import studies, tune_study

    spec, out, runs = _spec(args, {"tune.trials": args.trials, "tune.storage": args.storage,
                                   "imports": args.imports or None, **slurm_shorthands(args)})
    if args.launcher == "local" and args.workers is not None:
        raise ValueError("--workers N starts N SLURM jobs: give --launcher slurm (locally, start `metricbench tune "
                         "... --storage URL` in N shells instead)")
    chosen = [(d, p, e) for d, p, e in studies(spec) if args.dataset in (None, d) and args.protocol in (None, p)
              and args.loss in (None, e.label)]
    if not chosen:
        raise ValueError(f"nothing to tune: spec {spec.name!r} has no study for dataset={args.dataset}, "
                         f"protocol={args.protocol}, loss={args.loss} (tune.datasets = {list(spec.tune.datasets)}, "
                         f"losses with a search space: {sorted({e.label for _, _, e in studies(spec)})})")
    if args.launcher == "slurm":
        from .bench.slurm import tune_on_slurm
        from .bench.tune import study_done

        pending = [(d, p, e) for d, p, e in chosen if not study_done(spec, d, p, e, runs)]
        try:
            finished = tune_on_slurm(spec, pending, out=out, runs=runs, workers=args.workers or 1,
                                     wait=not args.no_wait) if pending else []
        except ConnectionError as err:
            print(f"metricbench tune: {err}", file=sys.stderr)
            return 1
        if finished is None:
            command = "metricbench " + " ".join(shlex.quote(a) for a in args.argv if a != "--no-wait")
            print(f"workers submitted; to follow them, run again: {command}")
            return 0
        if failed := [f for f in finished if not f.ok]:
            print(f"metricbench tune: {len(failed)} worker(s) failed: "
                  + "; ".join(f"{f.name}: {f.reason} (log {f.log})" for f in failed), file=sys.stderr)
            return 1
        chosen = [c for c in chosen if c not in pending]  # the others: their workers wrote the chosen options
    for dataset, protocol, entry in chosen:
        tune_study(spec, dataset, protocol, entry, out=out, runs=runs)
    return 0


def _download(args: argparse.Namespace) -> int:
    from .data.download import download_dataset

    expected = None
    if args.expect is not None:
        if args.url is None:
            raise ValueError("--expect gives the size and SHA-256 of a --url mirror's archive; give --url too")
        size, _, digest = args.expect.partition(":")
        if not (size.isdigit() and digest):
            raise ValueError(f"--expect must be SIZE:SHA256 (bytes, 64 hex digits), got {args.expect!r}")
        expected = (int(size), digest)
    try:
        folder = download_dataset(args.name, args.directory, url=args.url, expected=expected,
                                  keep_archive=not args.delete_archive, progress=not args.no_progress)
    except ConnectionError as err:  # the network, not the input: exit 1, and the part file is kept for a rerun
        print(f"metricbench download: {err}", file=sys.stderr)
        return 1
    print(f"{args.name} is ready in {folder}")
    print(f"use it with: --dataset {shlex.quote(f'{args.name}:{folder}')}")
    return 0


_COMMANDS = {"train": _train, "eval": _eval, "export": _export, "datasets": _datasets, "losses": _losses,
             "bench": _bench, "tune": _tune, "download": _download, **INFERENCE_COMMANDS}


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not (module == err.name or module.startswith(f"{err.name}.")):
            raise  # the module exists but one of its own imports is missing: its traceback says which
        raise ValueError(f"--import {module!r}: no module named {err.name!r} (is it on sys.path?)") from err


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        for module in getattr(args, "imports", []):
            _import(module)
        return _COMMANDS[args.command](args)
    # Bad input, not a bug: one line and exit 2. A plain TypeError is a bug and keeps its traceback (exit 1);
    # wrong types in the user's input raise InputTypeError.
    except (ValueError, InputTypeError, FileNotFoundError, FileExistsError, FloatingPointError) as err:
        print(f"metricbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

