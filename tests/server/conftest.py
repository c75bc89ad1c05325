"""An app over a real embedded index of examples/halvard plus one document only the board may see."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from enclave.settings import GeneratorSettings, Settings, SourceSettings
from flows.answer import AnswerPipeline
from flows.ingest import ingest
from indexes.edge_index import EdgeIndex
from server.app import create_app

CANARY = "CANARY-BOARD-7731 the acquisition of Fjordlys Optics closes on 14 March"


@pytest.fixture(scope="session")
def halvard_settings(tmp_path_factory, examples) -> Settings:
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
    from flows.components import index_path

    index = EdgeIndex(index_path(halvard_settings), embedder.dimension)
    reports = ingest(settings=halvard_settings, index=index, embedder=embedder)
    assert all(r.counts().get("failed", 0) == 0 for r in reports), [r.problems() for r in reports]
    pipeline = AnswerPipeline.from_settings(halvard_settings, embedder=embedder, index=index)
    yield pipeline
    index.close()


@pytest.fixture()
def client(halvard_settings, halvard_pipeline):
    with TestClient(create_app(halvard_settings, pipeline=halvard_pipeline)) as test_client:
        yield test_client
