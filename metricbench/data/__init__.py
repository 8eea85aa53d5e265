"""Data layer: datasets (built-in and user files), the IDX reader, and train/val/test splits."""

from metricbench.data.dataset import Dataset, make_dataset
from metricbench.data.idx import read_idx
from metricbench.data.sources import available_datasets, load_dataset
from metricbench.data.splits import Split, load_split, make_split, save_split, validation_split

__all__ = [
    "Dataset",
    "Split",
    "available_datasets",
    "load_dataset",
    "load_split",
    "make_dataset",
    "make_split",
    "read_idx",
    "save_split",
    "validation_split",
]
