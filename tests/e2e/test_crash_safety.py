"""Crash safety: SIGKILL the real CLI at many points of a sync, re-run it, and get the clean result.

Per backend: a folder is ingested (v1), then changed into v2 (a document grows, one shrinks, one is
deleted, two are added, a broken one stays broken). The reference is a clean v1 → v2 sync. For each
kill point, the v1 index is copied, ``enclave ingest`` on v2 is killed with SIGKILL at that point
(tests/e2e/crash_cli.py), and run again to the end: the index must then equal the reference — the
same point ids, the same payloads (but for ``ingested_at``), chunk numbers 0..n-1 once each per
document, and the same ledger. All CLI runs share the session's real Prefect server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from enclave.indexes import ChunkStore, SyncLedger

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("crash_cli.py")
SOURCE = "docs"

# (label, ENCLAVE_CRASH_AT); the v1 → v2 sync runs three batches of two documents:
# [a.md (changed), c.md (new)], [d.md (new), e.md (same bytes)], [long.md (shrinks)], then deletes b.md
KILL_POINTS = [
    ("while listing the source", "enclave.connectors.filesystem:FilesystemConnector.list_documents:before:1"),
    ("during the first parse", "enclave.indexes.parser:DocumentParser.run:before:1"),
    ("during parsing, mid-batch", "enclave.indexes.parser:DocumentParser.run:after:3"),
    ("during the first embedding", "enclave.indexes.openvino_embedder:OpenVinoEmbedder.embed:before:1"),
    # the points above always come before the run's first write to the index; the ones below may follow it
    ("after embedding, before the upsert", "enclave.indexes.openvino_embedder:OpenVinoEmbedder.embed:after:2"),
    ("after the pending ledger entries", "enclave.indexes.sync_ledger:SyncLedger.put:after:1"),
    ("halfway through an upsert", "enclave.indexes.chunk_store:ChunkStore.upsert:partial:1"),
    ("between upsert and ledger update", "enclave.indexes.chunk_store:ChunkStore.upsert:after:1"),
    ("before deleting stale points", "enclave.indexes.chunk_store:ChunkStore.delete_chunks_from:before:1"),
    ("after deleting stale points, before the ledger", "enclave.indexes.chunk_store:ChunkStore.delete_chunks_from:after:2"),
    ("between two batches", "enclave.indexes.sync_ledger:SyncLedger.put:after:2"),
    ("deleting a removed document, before its ledger entry", "enclave.indexes.chunk_store:ChunkStore.delete_document:after:1"),
    ("after the ledger deletions, before the run record", "enclave.indexes.sync_ledger:SyncLedger.forget:after:1"),
    ("after the run record, before the index is flushed and closed", "enclave.indexes.sync_ledger:SyncLedger.record_run:after:1"),
]


BEFORE_ANY_WRITE = 4  # KILL_POINTS[:4] come before the run's first write to the index
#: the server backend runs these: one after each kind of write (ledger, points, partial points, stale
#: deletion, document deletion, run record). The write order they test is the chunk store's and the
#: ledger's, shared with Edge, which runs every point; six instead of ten keep `make test` inside its 30 minutes.
SERVER_POINTS = (5, 6, 7, 9, 11, 13)


def _paragraphs(topic: str, n: int, words: int = 90) -> str:
    return "\n\n".join(
        f"## {topic} part {i}\n\n" + " ".join(f"{topic}{i}w{j}" if j % 7 else "calibration" for j in range(words))
        for i in range(n)
    )


def _write_v1(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\n" + _paragraphs("alpha", 2), encoding="utf-8")
    (folder / "b.md").write_text("# B\n\n" + _paragraphs("bravo", 2), encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (folder / "e.md").write_text("# E\n\n" + _paragraphs("echo", 1), encoding="utf-8")
    (folder / "long.md").write_text("# Long\n\n" + _paragraphs("lima", 8), encoding="utf-8")


def _change_to_v2(folder: Path) -> None:
    (folder / "a.md").write_text("# A\n\n" + _paragraphs("alpha", 5), encoding="utf-8")  # grows
    (folder / "b.md").unlink()  # removed from the source
    (folder / "c.md").write_text("# C\n\n" + _paragraphs("charlie", 3), encoding="utf-8")  # new
    (folder / "d.md").write_text("# D\n\n" + _paragraphs("delta", 2), encoding="utf-8")  # new
    e = folder / "e.md"  # same bytes, new version
    e.write_bytes(e.read_bytes())
    (folder / "long.md").write_text("# Long\n\n" + _paragraphs("lima", 2), encoding="utf-8")  # shrinks


class Backend:
    """Where a scenario's index lives, how to copy it, and how to read it back."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root

    def config(self, where: Path, folder: Path) -> Path:
        index = {"backend": "server", "url": "http://127.0.0.1:1"} if self.name == "server" else {"backend": "edge"}
        config = where / "enclave.yaml"
        config.write_text(json.dumps({
            "data_dir": str(where / "data"),
            "sources": [{"name": SOURCE, "path": str(folder), "groups": ["staff"]}],
            "ingest": {"batch_documents": 2},
            "index": index,
        }), encoding="utf-8")
        return config

    def state(self, where: Path) -> Path:
        return where / ("qdrant" if self.name == "server" else "data")

    def open(self, where: Path):
        if self.name == "server":
            from qdrant_client import QdrantClient

            from enclave.indexes.server_index import ServerIndex

            return ServerIndex(QdrantClient(path=str(self.state(where))), "enclave")
        from enclave.indexes.edge_index import EdgeIndex

        return EdgeIndex(self.state(where) / "index" / "enclave")


def _run_cli(backend: Backend, where: Path, api_url: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update({"PREFECT_API_URL": api_url, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if backend.name == "server":
        env["ENCLAVE_TEST_QDRANT_PATH"] = str(backend.state(where))
    if crash_at:
        env["ENCLAVE_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, str(HARNESS), "ingest", "--source", SOURCE, "--config", str(where / "enclave.yaml")],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
    )


def _snapshot(backend: Backend, where: Path) -> dict:
    """Point ids with their payload hashes (``ingested_at`` aside), and the ledger without timestamps."""
    index = backend.open(where)
    try:
        points = {}
        store = ChunkStore(index)
        for pid, payload in store.points():
            kept = {k: v for k, v in payload.items() if k != "ingested_at"}
            points[pid] = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
        chunk_numbers = Counter((p["doc_id"], p["chunk"]) for _, p in store.points())
        ledger = {doc_id: (e.version, e.content_hash, e.chunks, e.status, e.reason)
                  for doc_id, e in SyncLedger(index).entries(SOURCE).items()}
    finally:
        index.close()
    return {"points": points, "ledger": ledger, "chunk_numbers": chunk_numbers}


def _assert_whole(snapshot: dict) -> None:
    """No duplicates, nothing missing: each indexed document has chunks 0..n-1 exactly once, n from the ledger."""
    per_doc = Counter(doc for doc, _ in snapshot["chunk_numbers"])
    assert all(count == 1 for count in snapshot["chunk_numbers"].values())
    for sid, (_, _, chunks, status, _) in snapshot["ledger"].items():
        assert per_doc.get(sid, 0) == (chunks if status == "indexed" else 0), sid
        assert {n for d, n in snapshot["chunk_numbers"] if d == sid} == set(range(per_doc.get(sid, 0)))
    assert set(per_doc) <= set(snapshot["ledger"]), "points of a document the ledger does not know"


def _assert_finished(run: subprocess.CompletedProcess, what: str) -> None:
    """The run ended normally: its summary printed, exit 1 for broken.pdf (0 would mean it went unnoticed)."""
    summary = f"{SOURCE}: " in run.stdout and "chunks embedded in" in run.stdout
    assert run.returncode == 1 and summary and "Traceback" not in run.stderr, (
        f"{what}: exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")


@pytest.mark.parametrize("backend_name", ["edge", "server"])
def test_a_sync_killed_anywhere_converges_on_re_run(backend_name, tmp_path, prefect_api):
    folder = tmp_path / "source"
    _write_v1(folder)
    baseline = tmp_path / "v1"
    baseline.mkdir()
    backend = Backend(backend_name, tmp_path)
    backend.config(baseline, folder)
    first = _run_cli(backend, baseline, prefect_api)
    _assert_finished(first, "v1")
    _change_to_v2(folder)

    def prepared(name: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        backend.config(where, folder)
        shutil.copytree(backend.state(baseline), backend.state(where))
        return where

    reference_dir = prepared("reference")
    clean = _run_cli(backend, reference_dir, prefect_api)
    _assert_finished(clean, "v2")
    reference = _snapshot(backend, reference_dir)
    _assert_whole(reference)
    assert {sid.split(":")[1]: e[3] for sid, e in reference["ledger"].items()} == {
        "a.md": "indexed", "broken.pdf": "failed", "c.md": "indexed", "d.md": "indexed", "e.md": "indexed",
        "long.md": "indexed"}

    # before its first write a run has not touched the backend: those kill points run on Edge only (14 vs 6)
    points = range(len(KILL_POINTS)) if backend_name == "edge" else SERVER_POINTS

    def scenario(number: int) -> tuple[str, subprocess.CompletedProcess, subprocess.CompletedProcess, dict]:
        label, crash_at = KILL_POINTS[number]
        where = prepared(f"kill-{number}")
        crashed = _run_cli(backend, where, prefect_api, crash_at)
        rerun = _run_cli(backend, where, prefect_api)
        return label, crashed, rerun, _snapshot(backend, where)

    with ThreadPoolExecutor(max_workers=3) as pool:  # CLI start-up is mostly imports: 3 keep 2 cores busy
        results = list(pool.map(scenario, points))

    assert len(results) == len(points)
    for label, crashed, rerun, snapshot in results:
        # the kill point was reached: the process died of SIGKILL, not of an error or a clean exit
        assert crashed.returncode == -signal.SIGKILL, f"{label}: exit {crashed.returncode}\n{crashed.stderr[-3000:]}"
        _assert_finished(rerun, f"re-run after a kill {label}")
        _assert_whole(snapshot)
        assert snapshot["ledger"] == reference["ledger"], label
        assert snapshot["points"].keys() == reference["points"].keys(), label
        assert snapshot["points"] == reference["points"], label
