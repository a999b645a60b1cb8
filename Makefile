# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.ragtrim-installed
DEMO_OUT ?= runs/demo
# Tests and the demo never reach a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test test-fast demo bench clean datasets check-scorers

install: $(STAMP)

# torch first, pinned: on this machine 2.13.0 is a local CPU wheel; unpinned it would pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[all]'
	# build the static embedding models (the trained one from its shipped table, ~1 s; the plain
	# one distilled offline from the packaged MiniLM, ~20 s)
	# and the int8 ONNX MiniLM (~10 s) once, into $${RAGTRIM_CACHE:-~/.cache/ragtrim}; idempotent
	$(VENV)/bin/ragtrim models build
	touch $(STAMP)

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not reader"

demo: install
	$(VENV)/bin/ragtrim demo --out $(DEMO_OUT)

datasets: install
	$(PY) datasets/build.py

# The shipped fitted scorers (optimizer/data/scorer-*.json) must be what bench/fit_scorer.py
# fits from the bundled sets and the fit-only extras (built from ../shared/datasets); ~3 min.
check-scorers: install
	$(PY) bench/fit_scorer.py --check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs
