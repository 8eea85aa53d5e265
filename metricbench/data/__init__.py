"""Data layer: datasets (built-in, photo benchmarks and user files), the IDX reader, and train/val/test splits."""

from metricbench.data.cars196 import load_cars196
from metricbench.data.cub200 import load_cub200
from metricbench.data.dataset import Dataset, make_dataset
from metricbench.data.folder import list_image_folder, load_image_folder
from metricbench.data.idx import read_idx
from metricbench.data.image_files import ImageFiles, make_image_files
from metricbench.data.image_table import load_image_table
from metricbench.data.inshop import load_inshop
from metricbench.data.sop import load_sop
from metricbench.data.sources import available_datasets, load_dataset
from metricbench.data.splits import Split, load_split, make_split, save_split, validation_split

__all__ = [
    "Dataset",
    "ImageFiles",
    "Split",
    "available_datasets",
    "list_image_folder",
    "load_cars196",
    "load_cub200",
    "load_dataset",
    "load_image_folder",
    "load_image_table",
    "load_inshop",
    "load_sop",
    "load_split",
    "make_dataset",
    "make_image_files",
    "make_split",
    "read_idx",
    "save_split",
    "validation_split",
]
