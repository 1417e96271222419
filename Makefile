# Set-up-free entry points: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
FULL := $(VENV)/.installed-full
DEMO_LAT ?= 37.6803
DEMO_LON ?= -75.548

.PHONY: demo test lint bench install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(CORE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	touch $@

# Tests need the model, eval and index extras (torch, open_clip, sklearn, faiss) and pytest.
$(FULL): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[models,eval,index,dev]'
	touch $@ $(CORE)

install: $(CORE)

demo: $(CORE)
	$(BIN)/mtquery knn --lat $(DEMO_LAT) --lon $(DEMO_LON) --k 5

test: $(FULL)
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider tests

lint: $(FULL)
	$(BIN)/ruff check .

bench: $(FULL)
	$(BIN)/python benchmarks/query_bench.py
