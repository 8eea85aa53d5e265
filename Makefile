# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# The venv is (re)installed only when pyproject.toml or requirements.lock changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test perf bench center-figure clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned requirements into $(VENV) (torch and torchvision: the CUDA builds, which also run on the CPU)"
	$(PY) -m pip install --quiet --requirement requirements.lock 2> >(grep -v "is ignored: it is neither" >&2)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable . 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

# The benchmark in miniature (`quick` preset: mnist5k, 5 losses, 2 seeds, both protocols); writes results/quick/.
run: $(STAMP)
	$(PY) -m metricbench bench quick

# The committed benchmark (`full` preset, tuning included; under an hour on 2 cores); writes results/full/.
bench: $(STAMP)
	$(PY) -m metricbench bench full

test: $(STAMP)
	$(PY) -m pytest

# Speed benchmarks (not part of `make test`); each writes its numbers under results/perf/.
perf: $(STAMP)
	$(PY) -m pytest tests/perf --override-ini addopts= -p no:cacheprovider -q

# The center-loss paper's MNIST 2-D picture; writes results/center-loss-mnist2d/.
center-figure: $(STAMP)
	$(PY) experiments/center_mnist2d.py --out results/center-loss-mnist2d

clean:
	rm -rf $(VENV) build *.egg-info runs
