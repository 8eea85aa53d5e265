"""A benchmark spec: datasets × split protocols × losses × seeds, everything else shared, from TOML.

    name = "full"
    datasets = ["mnist5k", "digits"]
    protocols = ["closed", "open"]
    seeds = [0, 1, 2]

    [base]                      # one experiment config shared by every cell (see `metricbench train`)
    train.epochs = 8
    eval.metric = "cosine"

    [[losses]]                  # one row of the results per entry
    name = "center"
    options = { update = "paper" }

    [tune]                      # optional: `metricbench tune` rows for these datasets
    datasets = ["mnist5k"]
    trials = 12

    [slurm]                     # optional: each job's resources with `--launcher slurm`
    partition = "gpu"
    gpus_per_node = 1
    timeout_min = 120

A spec is a preset name (`quick`, `full`, `cub200`, `cub200-frozen`, ...: files in `presets/`) or a TOML
file; `--set` overrides apply to it like to an experiment config (`--set seeds=[0] --set base.train.epochs=2`).
`extends = ["cub200"]` starts a spec from presets or files (relative to the spec), merged in order, table by table.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from metricbench.data.splits import PROTOCOLS
from metricbench.losses.registry import build_loss, loss_class
from metricbench.losses.search_space import SearchSpace

from ..config import ExperimentConfig, apply_override
from ..errors import InputTypeError
from ..typed_config import config_from_dict, read_toml

__all__ = ["BenchSpec", "LossEntry", "SlurmSpec", "TuneSpec", "load_spec", "preset_names", "slug"]

PRESETS = Path(__file__).with_name("presets")
_PER_CELL = ("seed", "loss", "data.dataset", "data.protocol")  # what the grid sets; base must not


@dataclass(frozen=True)
class LossEntry:
    """One loss of the grid.

    Attributes:
        name: registered loss name (see `metricbench losses`) or `pml:<LossName>`.
        options: its options; the rest keep their defaults.
        label: the name of its rows in the results (default: `name`); unique within a spec.
        tune: give it a tuned row when the spec tunes (needs a declared search space).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    tune: bool = True

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def search_space(self) -> SearchSpace:
        """The ranges the loss declares (none for `pml:` losses, whose options are PML's)."""
        return {} if self.name.startswith("pml:") else loss_class(self.name).search_space

    @property
    def tunable(self) -> bool:
        return self.tune and bool(self.search_space)


@dataclass(frozen=True)
class TuneSpec:
    """Hyperparameter search of each loss's declared search space (Optuna TPE), on validation rows only.

    Attributes:
        datasets: datasets that get a tuned row per loss and protocol (none: no tuning).
        trials: completed trials per (dataset, protocol, loss) study.
        startup_trials: random trials before TPE models the results.
        seed: seed of the sampler and of every trial's split, weights and batches.
        objective: validation metric to maximise.
        storage: database URL shared by every study (several processes or machines can work on one
            study); default: one SQLite file per study under the runs folder.
    """

    datasets: tuple[str, ...] = ()
    trials: int = 12
    startup_trials: int = 5
    seed: int = 0
    objective: str = "map_at_r"
    storage: str | None = None

    def __post_init__(self) -> None:
        if self.trials < 1 or self.startup_trials < 1:
            raise ValueError(f"tune.trials and tune.startup_trials must be >= 1, got {self.trials}, {self.startup_trials}")
        if self.objective not in ("map_at_r", "precision_at_1", "r_precision"):
            raise ValueError(f"tune.objective must be map_at_r, precision_at_1 or r_precision; got {self.objective!r}")


@dataclass(frozen=True)
class SlurmSpec:
    """Resources of each SLURM job of `--launcher slurm` (one job per run, study or tuning worker).

    Attributes:
        partition: partition to submit to (default: the cluster's default).
        account: account to charge (default: the user's default).
        timeout_min: time limit of a job in minutes; a job still running `signal_delay_s` before it stops
            and is requeued, and resumes from its last checkpoint.
        cpus_per_task: CPUs per process of a run, and its torch/BLAS threads (default: `threads`, else 1).
        gpus_per_node: GPUs per job (default: none); with `nproc_per_run = N`, N gives each process one.
        mem_gb: memory per job in GB (default: the cluster's default).
        signal_delay_s: seconds before the time limit at which SLURM tells the job to stop and requeue.
        requeues: how many times a job that reaches its time limit is requeued (preemptions do not count).
        sbatch: any other sbatch options, e.g. `{ qos = "high", constraint = "a100" }` (`true`: a bare flag).
    """

    partition: str | None = None
    account: str | None = None
    timeout_min: int = 60
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    signal_delay_s: int = 90
    requeues: int = 3
    sbatch: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("timeout_min", "cpus_per_task", "signal_delay_s"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"slurm.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("gpus_per_node", "mem_gb", "requeues"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise ValueError(f"slurm.{key} must be >= 0, got {getattr(self, key)}")
        if self.signal_delay_s >= self.timeout_min * 60:
            raise ValueError(f"slurm.signal_delay_s must be shorter than the time limit (slurm.timeout_min = "
                             f"{self.timeout_min} min), got {self.signal_delay_s} s")


@dataclass(frozen=True)
class BenchSpec:
    """A benchmark: every combination of datasets, protocols, losses and seeds, sharing `base`.

    Attributes:
        name: names the default output folders (`results/<name>`, `runs/bench/<name>`).
        datasets: dataset specs (as `data.dataset`).
        protocols: `closed` and/or `open`.
        seeds: one run per seed; the seed fixes the split, the initial weights and the batch order.
        losses: the losses compared.
        base: the experiment config shared by every cell, without the per-cell keys (dataset,
            protocol, loss, seed).
        tune: the hyperparameter search (optional).
        workers: runs at a time (default: the number of CPU cores).
        threads: torch/BLAS/OpenMP threads per run (default: cores / workers, at least 1).
        imports: modules each run imports first (e.g. one registering a custom loss).
        nproc_per_run: processes per run; above 1 each run is launched with `torchrun --standalone`
            (DistributedDataParallel on this machine; `threads` is per process). Runs stay resumable.
        slurm: the jobs' resources with `--launcher slurm` (optional).
    """

    name: str
    datasets: tuple[str, ...]
    losses: tuple[LossEntry, ...]
    protocols: tuple[str, ...] = ("closed", "open")
    seeds: tuple[int, ...] = (0, 1, 2)
    base: dict[str, Any] = field(default_factory=dict)
    tune: TuneSpec = field(default_factory=TuneSpec)
    workers: int | None = None
    threads: int | None = None
    imports: tuple[str, ...] = ()
    nproc_per_run: int = 1
    slurm: SlurmSpec = field(default_factory=SlurmSpec)

    def __post_init__(self) -> None:
        for key in ("datasets", "losses", "protocols", "seeds"):
            if not getattr(self, key):
                raise ValueError(f"{key} must not be empty")
            if key != "losses" and len(set(getattr(self, key))) != len(getattr(self, key)):
                raise ValueError(f"{key} has duplicates: {list(getattr(self, key))}")
        labels = [entry.label for entry in self.losses]
        if len(set(map(slug, labels))) != len(labels):
            raise ValueError(f"losses need distinct labels (give `label = ...`), got {labels}")
        if bad := [p for p in self.protocols if p not in PROTOCOLS]:
            raise ValueError(f"protocols must be among {', '.join(PROTOCOLS)}; got {bad}")
        if bad := [d for d in self.tune.datasets if d not in self.datasets]:
            raise ValueError(f"tune.datasets must be among datasets {list(self.datasets)}; got {bad}")
        for key in ("workers", "threads", "nproc_per_run"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in _PER_CELL:
            node: Any = self.base
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                raise ValueError(f"base.{key} is set per cell by the grid; remove it from [base]")
        # Every cell's config must be valid before anything runs: [base] first, then each loss, named.
        base = copy.deepcopy(self.base)
        base.setdefault("data", {}).update(dataset=self.datasets[0], protocol=self.protocols[0])
        config_from_dict(ExperimentConfig, base)
        for i, entry in enumerate(self.losses):
            try:
                self.experiment(self.datasets[0], self.protocols[0], entry, self.seeds[0])
            except (ValueError, InputTypeError) as err:
                raise type(err)(f"losses[{i}] ({entry.label!r}): {err}") from err

    def experiment(self, dataset: str, protocol: str, entry: LossEntry, seed: int,
                   options: dict[str, Any] | None = None) -> ExperimentConfig:
        """The experiment config of one cell (`options` replace the entry's, e.g. tuned values)."""
        tree = copy.deepcopy(self.base)
        tree.setdefault("data", {}).update(dataset=dataset, protocol=protocol)
        tree["loss"] = {"name": entry.name, "options": {**entry.options, **(options or {})}}
        tree["seed"] = seed
        config = config_from_dict(ExperimentConfig, tree)
        # Checks the loss name and options now, not in a worker.
        build_loss(entry.name, num_classes=2, embedding_dim=config.model.embedding_dim, **config.loss.options)
        return config


def slug(text: str) -> str:
    """A file-name-safe form of a label or dataset spec: `center (tuned)` → `center-tuned`."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "x"


def preset_names() -> list[str]:
    """Runnable presets; `_name.toml` files are shared parts that presets extend."""
    return sorted(p.stem for p in PRESETS.glob("*.toml") if not p.stem.startswith("_"))


def _spec_path(source: str | os.PathLike, relative_to: Path | None = None) -> Path:
    path = Path(source)
    if not path.suffix and (PRESETS / f"{source}.toml").is_file():
        return PRESETS / f"{source}.toml"
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.exists():
        raise FileNotFoundError(f"bench spec {str(source)!r} is neither a file nor a preset "
                                f"(presets: {', '.join(preset_names())})")
    return path


def _merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`: tables merge key by key, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_spec(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The spec tree at `path` with its `extends` resolved."""
    if path.resolve() in chain:
        raise ValueError(f"bench spec {str(path)!r} extends itself (through {' -> '.join(map(str, chain))})")
    tree = read_toml(path, what="bench spec")
    parents = tree.pop("extends", [])
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ValueError(f"extends in {str(path)!r} must be a list of preset names or spec files, got {parents!r}")
    merged: dict[str, Any] = {}
    for parent in parents:
        inherited = _read_spec(_spec_path(parent, path.parent), (*chain, path.resolve()))
        inherited.pop("name", None)  # a spec is named by itself (or its file), never by its parent
        merged = _merged(merged, inherited)
    return _merged(merged, tree)


def load_spec(source: str | os.PathLike, overrides: Sequence[str] = ()) -> BenchSpec:
    """A preset name or a TOML file, then `KEY=VALUE` overrides (TOML literals), validated."""
    path = _spec_path(source)
    tree = _read_spec(path)
    tree.setdefault("name", path.stem)
    for assignment in overrides:
        apply_override(tree, assignment)
    for module in tree.get("imports", []):  # custom losses must be registered before the cells are checked
        importlib.import_module(module)
    return config_from_dict(BenchSpec, tree)
