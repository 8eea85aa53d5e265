# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# The venv is (re)installed only when pyproject.toml or requirements.lock changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test perf center-figure clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned requirements into $(VENV) (torch is the local CPU wheel)"
	$(PY) -m pip install --quiet --requirement requirements.lock 2> >(grep -v "is ignored: it is neither" >&2)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable . 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

# Train every registered loss family on the built-in mnist5k digits; writes results/quickstart/.
run: $(STAMP)
	$(PY) -m metricbench quickstart --out results/quickstart

test: $(STAMP)
	$(PY) -m pytest

# Speed benchmarks (not part of `make test`); each writes its numbers under results/perf/.
perf: $(STAMP)
	$(PY) -m pytest tests/perf --override-ini addopts= -p no:cacheprovider -q

# The center-loss paper's MNIST 2-D picture; writes results/center-loss-mnist2d/.
center-figure: $(STAMP)
	$(PY) -m metricbench.experiments.center_mnist2d --out results/center-loss-mnist2d

clean:
	rm -rf $(VENV) build *.egg-info runs
