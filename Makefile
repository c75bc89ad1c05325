# Enclave: `make demo` shows it working, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_QUESTION ?= How many days of paid leave do employees earn each month?

.PHONY: install demo test serve clean-demo bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: it takes the local CPU build; an unpinned torch pulls GBs of CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@echo "== ingesting examples/halvard (a fictional company's documents) =="
	$(BIN)/enclave ingest --config examples/enclave.yaml
	@echo "== asking: $(DEMO_QUESTION) =="
	$(BIN)/enclave ask --config examples/enclave.yaml "$(DEMO_QUESTION)"

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

# the ingest benchmark (ratios, not assertions): BENCH_ARGS="--docs 100", "--breakdown", "--corpora"...
bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

serve: install
	$(BIN)/enclave serve --config examples/enclave.yaml

clean-demo:
	rm -rf .enclave/demo
