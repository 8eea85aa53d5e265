"""Benchmarks across loss functions: a grid spec, a parallel resumable runner, tuning, aggregation."""

from .runner import BenchFailed, aggregate, run_bench
from .spec import BenchSpec, LossEntry, TuneSpec, load_spec, preset_names
from .tune import tune_study

__all__ = ["BenchFailed", "BenchSpec", "LossEntry", "TuneSpec", "aggregate", "load_spec", "preset_names", "run_bench",
           "tune_study"]
