# Everything a new machine needs: `make demo` and `make test` create .venv and install the
# pinned stack from requirements-dev.txt (torch 2.13.0 CPU, concrete-python 2.11, setuptools<81).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qfhe-installed

.PHONY: demo test lint docs wheel-check bench venv clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/digits_mlp.py

# lint and the docs build first: they take seconds and fail on what a reviewer would reject
test: lint docs
	$(PY) -m pytest -q --durations=30

LINTED := qfhe tests benchmarks examples docs/_ext docs/conf.py .ci

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

# warnings are errors: a broken reference, a stale generated table or a malformed docstring fails
docs: $(STAMP)
	$(PY) -m sphinx -E -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# the wheel, installed with its dependencies (pinned by requirements-dev.txt: torch stays the CPU wheel) into a
# fresh virtual environment, imported and run outside the source tree
wheel-check: $(STAMP)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m pip wheel --disable-pip-version-check -q --no-deps -w "$$tmp/dist" . && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --disable-pip-version-check -q -c requirements-dev.txt "$$tmp"/dist/qfhe-*.whl && \
	cd "$$tmp" && "$$tmp/venv/bin/python" $(CURDIR)/.ci/wheel_smoke.py

bench: $(STAMP)
	$(PY) benchmarks/tfhe_mlp.py
	$(PY) benchmarks/qat_vs_ptq.py
	$(PY) benchmarks/ckks_pipelines.py
	$(PY) benchmarks/pruning.py
	$(PY) benchmarks/builtin_nn.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/maxpool.py
	$(PY) benchmarks/trees.py
	$(PY) benchmarks/builtin_models.py
	$(PY) benchmarks/knn.py
	$(PY) benchmarks/encrypted_training.py

clean:
	rm -rf $(VENV) .pytest_cache docs/_build
