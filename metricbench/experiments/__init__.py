"""Reproductions of published figures; each module runs with `python -m metricbench.experiments.<name>`."""
