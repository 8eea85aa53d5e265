"""metricbench: learn embeddings and compare metric losses honestly."""

__version__ = "0.1.0"
