# Enclave: `make demo` shows it working, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_QUESTION ?= How many days of paid leave do employees earn each month?

.PHONY: install browser demo test serve clean-demo bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: it takes the local CPU build; an unpinned torch pulls GBs of CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium, for the test that drives the web chat page (tests/server/test_chat_page.py, through
# the playwright package's own driver: `playwright install` is never run). Installed only when missing;
# without root it says so and the page test skips.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "warning: no $(CHROMIUM); run 'sudo make browser' (the chat page test skips without it)"; \
	else \
		echo "== installing Debian's chromium (for tests/server/test_chat_page.py) =="; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null && \
		$(CHROMIUM) --version 2>/dev/null; \
	fi

demo: install
	@echo "== ingesting examples/halvard (a fictional company's documents) =="
	$(BIN)/enclave ingest --config examples/enclave.yaml
	@echo "== asking: $(DEMO_QUESTION) =="
	$(BIN)/enclave ask --config examples/enclave.yaml "$(DEMO_QUESTION)"

test: install browser
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

# the ingest benchmark (ratios, not assertions): BENCH_ARGS="--docs 100", "--breakdown", "--corpora"...
bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

serve: install
	$(BIN)/enclave serve --config examples/enclave.yaml

clean-demo:
	rm -rf .enclave/demo
