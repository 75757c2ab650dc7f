# Everything a new machine needs: `make demo` and `make test` create .venv and install the
# pinned stack from requirements-dev.txt (torch 2.13.0 CPU, concrete-python 2.11, setuptools<81).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qfhe-installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/digits_mlp.py

test: $(STAMP)
	$(PY) -m pytest -q --durations=30

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
	rm -rf $(VENV) .pytest_cache
