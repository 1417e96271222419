# Set-up-free entry points: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
FULL := $(VENV)/.installed-full
DEMO_LAT ?= 37.6803
DEMO_LON ?= -75.548

.PHONY: demo test lint docs bench bench-knn bench-eval bench-generate install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(CORE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	touch $@

# Tests need the model, eval, index and cluster extras (torch, open_clip, sklearn, faiss, ray)
# and pytest.
$(FULL): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[models,eval,index,dev,web,cluster]'
	touch $@ $(CORE)

install: $(CORE)

demo: $(CORE)
	$(BIN)/mtquery knn --lat $(DEMO_LAT) --lon $(DEMO_LON) --k 5

test: $(FULL)
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider tests

lint: $(FULL)
	$(BIN)/ruff check .

# The documentation site (mkdocs.yml, docs/) into site/; the tests build it too, strictly.
docs: $(FULL)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Benchmarks print tables with ratios against baselines measured in the same run.
bench: $(FULL)
	$(BIN)/python benchmarks/query_bench.py

bench-knn: $(FULL)
	$(BIN)/python benchmarks/knn_bench.py

bench-eval: $(FULL)
	$(BIN)/python benchmarks/eval_bench.py

bench-generate: $(FULL)
	$(BIN)/python benchmarks/generate_bench.py
