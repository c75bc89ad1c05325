"""The public API a developer imports: ``from enclave import ...`` and each stage package's names, all
resolving, documented, and loaded only when used (``enclave --help`` imports neither torch nor Prefect)."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import enclave

PACKAGES = ("enclave", "enclave.connectors", "enclave.indexes", "enclave.prompts", "enclave.llms", "enclave.flows")
HEAVY = ("torch", "sentence_transformers", "prefect", "llama_index", "openai", "anthropic", "qdrant_client", "fastapi")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_and_is_documented(package):
    module = importlib.import_module(package)
    assert module.__doc__ and module.__all__
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"
    assert set(module.__all__) <= set(dir(module))


def test_the_curated_api_covers_what_the_issue_names():
    wanted = {"Settings", "load_settings", "IngestPipeline", "AnswerPipeline", "FilesystemConnector", "Retriever",
              "OllamaGenerator", "OpenAIGenerator", "AnthropicGenerator", "ExtractiveGenerator", "FallbackRouter",
              "create_app", "ingest", "answer", "evaluate"}
    assert wanted <= set(enclave.__all__)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        enclave.NoSuchThing  # noqa: B018


def _loaded_by(code: str) -> set[str]:
    """The top-level modules of HEAVY that ``python -c code`` imports."""
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split()) & set(HEAVY)


def test_importing_enclave_and_its_cli_loads_nothing_heavy():
    assert _loaded_by("import enclave, enclave.cli, enclave.flows, enclave.indexes, enclave.llms") == set()


def test_enclave_help_loads_nothing_heavy():
    code = ("import sys; sys.argv = ['enclave', '--help']\nfrom enclave.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass")
    assert _loaded_by(code) == set()


def test_opening_the_ledger_for_status_loads_no_model_llamaindex_or_model_clients():
    code = "from enclave.flows.index_location import open_index\nfrom enclave.indexes.sync_ledger import SyncLedger"
    assert _loaded_by(code) <= {"qdrant_client"}  # the filter models; no torch, no prefect, no llama_index
