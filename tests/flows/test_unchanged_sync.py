"""An unchanged re-sync loads no embedding model and starts no parse worker: only a document that must be
parsed, chunked or embedded loads them. The manifest check (IndexOutdated) needs no model, and a model that
cannot load still fails a run that has work, losing nothing.

The fast tests ingest first with a stand-in embedder, then sync with the configured one (OpenVINO over
all-MiniLM-L6-v2 by default) while loading a model or starting a parse worker raises. The slow one runs
``enclave ingest`` twice in subprocesses against a real ``prefect server`` and checks what the second,
unchanged one imported and started.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from settings_files import write_settings

import enclave.indexes.embedder as embedder_module
import enclave.indexes.parser as parser_module
from enclave.flows import IndexOutdated, IngestPipeline
from enclave.indexes import ChunkStore, EmbedderError, SyncLedger
from enclave.settings import Settings, SourceSettings

REPO = Path(__file__).resolve().parents[2]


class WordEmbedder:
    """A stand-in Embedder: a word is a token, vectors are a hash's, so ingesting costs no model."""

    model_name = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = 384
    max_tokens = 254
    batch_size = 8

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        words = re.findall(r"\s*\S+\s*", text) or [text]
        return ["".join(words[start : start + max_tokens]) for start in range(0, len(words), max_tokens)]

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dimension) for t in texts]) \
            if texts else np.zeros((0, self.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)).astype(np.float32)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


@pytest.fixture
def indexed(tmp_path) -> tuple[Path, Settings]:
    """A folder of two documents, ingested with the stand-in embedder; the settings are the defaults."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha team ships sensors on Tuesdays.\n", encoding="utf-8")
    (docs / "b.txt").write_text("Calibration records are kept for twelve months.", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="docs", path=docs, groups=["g"])])
    with IngestPipeline.from_settings(settings, embedder=WordEmbedder()) as pipeline:
        assert pipeline.run("docs").counts() == {"indexed": 2}
    return docs, settings


@pytest.fixture
def nothing_heavy(monkeypatch) -> None:
    """Loading an embedding model (sentence-transformers or OpenVINO: both load through ``_load_shared``) or
    starting a parse worker fails the test."""

    def no_model(*args):
        raise AssertionError(f"an embedding model was loaded: {args}")

    def no_worker(*args):
        raise AssertionError("a parse worker was started")

    monkeypatch.setattr(embedder_module, "_load_shared", no_model)
    monkeypatch.setattr(parser_module, "ParseWorker", no_worker)


def _index_state(settings: Settings) -> tuple[int, dict]:
    from enclave.flows import open_index

    index = open_index(settings)
    try:
        return ChunkStore(index).count(source="docs"), SyncLedger(index).entries("docs")
    finally:
        index.close()


def test_an_unchanged_resync_loads_no_model_and_starts_no_parse_worker(indexed, nothing_heavy):
    docs, settings = indexed
    with IngestPipeline.from_settings(settings) as pipeline:  # the configured embedder, not the stand-in
        report = pipeline.run("docs")
        assert pipeline.components.embedder.dimension == 384  # from the model folder's configuration
    assert report.counts() == {"unchanged": 2} and report.chunks_embedded == 0

    # touched, same bytes: fetched and hashed, still nothing to parse or embed
    stat = (docs / "a.md").stat()
    os.utime(docs / "a.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    with IngestPipeline.from_settings(settings) as pipeline:
        report = pipeline.run("docs")
    assert report.counts() == {"unchanged": 2} and report.chunks_embedded == 0

    # gone: deleted, nothing loaded either
    (docs / "b.txt").unlink()
    with IngestPipeline.from_settings(settings) as pipeline:
        assert pipeline.run("docs").counts() == {"unchanged": 1, "deleted": 1}


def test_a_first_ingest_of_an_empty_folder_loads_no_model(tmp_path, nothing_heavy):
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="docs", path=empty)])
    with IngestPipeline.from_settings(settings) as pipeline:  # a new index, at the model's configured dimension
        assert pipeline.run("docs").counts() == {}
        assert pipeline.index.dimension == 384
        assert SyncLedger(pipeline.index).manifest()["dimension"] == 384


def test_the_manifest_check_needs_no_model(indexed, nothing_heavy):
    _, settings = indexed
    changed = settings.model_copy(update={"chunker": settings.chunker.model_copy(update={"overlap_tokens": 16})})
    with pytest.raises(IndexOutdated) as caught:
        IngestPipeline.from_settings(changed)
    assert caught.value.differences == {"chunker.overlap_tokens": (32, 16)}


def test_a_model_that_cannot_load_fails_a_run_with_work_and_loses_nothing(indexed, monkeypatch):
    docs, settings = indexed
    before = _index_state(settings)
    (docs / "a.md").write_text("# Alpha\n\nRewritten: the alpha team ships on Wednesdays.\n", encoding="utf-8")

    def broken(model_name, device):
        raise EmbedderError(f"could not load embedding model {model_name!r}: weights missing")

    monkeypatch.setattr(embedder_module, "_load_shared", broken)
    with IngestPipeline.from_settings(settings) as pipeline:  # nothing loads yet: the model is not needed yet
        with pytest.raises(EmbedderError, match="weights missing"):
            pipeline.run("docs")  # the run fails as a whole: the changed document is not failed and emptied
    assert _index_state(settings) == before


# -- the real thing: `enclave ingest` twice against a prefect server ------------------------------------------------
AUDIT = """
import json, sys, time
import enclave.indexes.parse_worker as parse_worker
started, real_init = [], parse_worker.ParseWorker.__init__
def counting(self, *args, **kwargs):
    started.append(1)
    real_init(self, *args, **kwargs)
parse_worker.ParseWorker.__init__ = counting
from enclave.cli import app
begun = time.perf_counter()
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = ("torch", "sentence_transformers", "transformers", "openvino", "llama_index.core", "nltk")
print("AUDIT " + json.dumps({"exit": code, "seconds": round(time.perf_counter() - begun, 2), "parse_workers": len(started),
                             "imported": sorted(name for name in heavy if name in sys.modules)}))
"""


def _enclave(args: list[str], env: dict[str, str], audit: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", AUDIT, *args] if audit else [str(Path(sys.executable).parent / "enclave"), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_an_unchanged_resync_through_the_cli_loads_nothing_heavy(tmp_path, prefect_api):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha team ships sensors on Tuesdays.\n", encoding="utf-8")
    (docs / "b.txt").write_text("Calibration records are kept for twelve months.", encoding="utf-8")
    config = write_settings(Settings(data_dir=tmp_path / "data"), tmp_path)
    env = {name: value for name, value in os.environ.items() if not name.startswith("ENCLAVE_")}
    env.update({"PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "WARNING"})
    args = ["ingest", str(docs), "--config", config]

    first = _enclave(args, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 indexed" in first.stdout

    started = time.perf_counter()
    second = _enclave(args, env, audit=True)
    wall = time.perf_counter() - started
    assert second.returncode == 0, second.stdout + second.stderr
    [line] = [line for line in second.stdout.splitlines() if line.startswith("AUDIT ")]
    audit = json.loads(line.removeprefix("AUDIT "))
    assert "2 unchanged; 0 chunks embedded" in second.stdout
    assert audit["exit"] == 0 and audit["parse_workers"] == 0
    assert audit["imported"] == [], f"an unchanged re-sync imported {audit['imported']}"
    print(f"unchanged re-sync through the CLI: {wall:.2f} s process wall, {audit['seconds']:.2f} s in the command")
