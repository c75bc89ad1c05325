"""Backups of an index (enclave.indexes.index_backup): a round trip on every backend and across backends, the file's
format, damaged and mismatching backups refused, and one point in time while writes go on (Edge: writes wait;
a Qdrant server: documents written during the read are kept as pending)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from backup_cases import BM25, populate, serving, write_document
from qdrant_client import QdrantClient

from enclave.indexes import ChunkStore, EdgeIndex, IndexBackend, RemoteIndex, RunRecord, ServerIndex, Store, SyncLedger
from enclave.indexes.index_backup import (
    DATA_FILES,
    LEDGER_BRACKETED,
    MANIFEST_FILE,
    WRITES_PAUSED,
    BackupCorrupt,
    BackupError,
    BackupIncompatible,
    BackupRefused,
    backup_points,
    load_backup,
    reconcile_ledger,
    verify_backup,
    write_backup,
)
from enclave.indexes.sync_ledger import ledger_point_id

DIM = 4
LABELS = {"backend": "edge", "collection": "enclave", "generation": "enclave"}
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def _contents(backend: EdgeIndex | ServerIndex) -> dict[str, dict[str, tuple]]:
    """Every point of every store: id -> (payload, dense rounded, sparse)."""
    return {str(store): {p.id: (p.payload, None if p.dense is None else tuple(np.round(p.dense, 5)),
                                p.sparse and (p.sparse.indices, tuple(np.round(p.sparse.values, 5))))
                         for p in backend.export_points(store)} for store in Store}


def _search(backend: IndexBackend, rng: np.random.Generator) -> list[tuple[str, float]]:
    query = rng.normal(size=DIM).astype(np.float32)
    hits = ChunkStore(backend).search(query, sparse=BM25.embed(["leave policy part 2"])[0], groups=["everyone"], limit=5)
    return [(h.id, round(h.score, 4)) for h in hits]


@contextmanager
def _served(edge: EdgeIndex) -> Iterator[RemoteIndex]:
    """``edge`` owned by a real uvicorn serving /internal/index (as ``enclave serve`` does), used through it."""
    with serving(edge) as owner:
        remote = RemoteIndex(owner.url, owner.token, DIM)
        try:
            yield remote
        finally:
            remote.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("source", ["edge", "server", "remote"])
def test_a_backup_restores_every_point_and_the_same_search_results(source, tmp_path, rng) -> None:
    path = tmp_path / "backup.tar"
    original = EdgeIndex(tmp_path / "live", DIM) if source != "server" else ServerIndex(QdrantClient(":memory:"), "e", DIM)
    restored = EdgeIndex(tmp_path / "restored", DIM)
    try:
        populate(original, rng)
        if source == "remote":  # `enclave serve` owns the index: its owner writes the backup and streams it
            with _served(original) as remote:
                manifest = write_backup(remote, path, **LABELS)
        else:
            manifest = write_backup(original, path, **LABELS)
        assert manifest.consistency == (WRITES_PAUSED if source != "server" else LEDGER_BRACKETED)
        assert manifest.points == {"chunks": 9, "ledger": 6, "runs": 1} and manifest.pending == []
        assert manifest.documents == {"failed": 1, "indexed": 3}  # the manifest point and the connector state are no documents
        assert manifest.index_manifest == {"embedder": {"backend": "sentence-transformers", "model": "m"}, "dimension": DIM}
        assert load_backup(path, restored) == manifest
        assert _contents(restored) == _contents(original)
        assert _search(restored, np.random.default_rng(1)) == _search(original, np.random.default_rng(1))
        assert SyncLedger(restored).connector_state("wiki") == {"cursor": "abc"}
    finally:
        original.close()
        restored.close()


def test_an_edge_backup_restores_onto_a_qdrant_server(tmp_path, rng) -> None:
    path = tmp_path / "backup.tar"
    original = EdgeIndex(tmp_path / "live", DIM)
    server = ServerIndex(QdrantClient(":memory:"), "enclave", DIM)
    try:
        populate(original, rng)
        write_backup(original, path, **LABELS)
        load_backup(path, server)
        assert _contents(server) == _contents(original)
        assert _search(server, np.random.default_rng(3)) == _search(original, np.random.default_rng(3))
    finally:
        original.close()
        server.close()


def test_the_file_is_a_private_tar_with_the_manifest_first_and_each_members_sha256(written_backup) -> None:
    path = written_backup
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds every chunk's text
    assert sorted(p.name for p in path.parent.iterdir()) == ["backup.tar", "live"]  # no partial file or work folder
    with tarfile.open(path) as tar:
        assert tar.getnames() == [MANIFEST_FILE, *DATA_FILES.values()]
        stored = json.load(tar.extractfile(MANIFEST_FILE))
        for name, meta in stored["files"].items():
            data = tar.extractfile(name).read()
            assert meta == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert stored["format"] == "enclave-index-backup" and stored["format_version"] == 1
    assert (stored["backend"], stored["collection"], stored["generation"], stored["dimension"]) == (
        "edge", "enclave", "enclave", DIM)
    assert stored["enclave_version"] and stored["created_at"].endswith("+00:00")
    assert verify_backup(path).to_json() == stored
    ledger = {p.payload.get("doc_id"): p.payload for p in backup_points(path, Store.LEDGER)}
    assert ledger["hb:a.md"]["chunks"] == 3 and ledger["hb:broken.pdf"]["reason"] == "corrupt"


def _rewrite(path: Path, change) -> None:
    """The tar at ``path`` rewritten with ``change(name, data) -> data | None`` (None: leave the member out)."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            if (data := change(name, data)) is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def written_backup(tmp_path_factory) -> Path:
    """One backup of a populated Edge index, written once for the module."""
    folder = tmp_path_factory.mktemp("backup")
    index = EdgeIndex(folder / "live", DIM)
    try:
        populate(index, np.random.default_rng(7))
        write_backup(index, folder / "backup.tar", **LABELS)
    finally:
        index.close()
    return folder / "backup.tar"


@pytest.fixture
def backup_file(written_backup, tmp_path) -> Path:
    """A copy of that backup, this test's to damage."""
    return Path(shutil.copy(written_backup, tmp_path / "backup.tar"))


def test_a_damaged_backup_is_refused_and_nothing_is_written(backup_file, tmp_path) -> None:
    with tarfile.open(backup_file) as tar:
        offset = tar.getmember(DATA_FILES[Store.CHUNKS]).offset_data
    data = bytearray(backup_file.read_bytes())
    data[offset + 100] ^= 0x01  # one bit of the chunks member
    backup_file.write_bytes(bytes(data))
    target = ServerIndex(QdrantClient(":memory:"), "restored", DIM)  # any backend: the check comes before a write
    with pytest.raises(BackupCorrupt, match="does not match the sha256"):
        verify_backup(backup_file)
    with pytest.raises(BackupCorrupt):
        load_backup(backup_file, target)
    assert [target.count(store) for store in Store] == [0, 0, 0]


@pytest.mark.parametrize("damage", ["truncated", "not a tar", "member left out", "member added", "manifest"])
def test_every_kind_of_damage_is_backup_corrupt(backup_file, damage) -> None:
    if damage == "truncated":
        data = backup_file.read_bytes()
        backup_file.write_bytes(data[: len(data) // 2])  # a copy cut short
    elif damage == "not a tar":
        backup_file.write_bytes(b"PK\x03\x04 a zip perhaps" * 100)
    elif damage == "member left out":
        _rewrite(backup_file, lambda name, data: None if name == DATA_FILES[Store.RUNS] else data)
    elif damage == "member added":
        _rewrite(backup_file, lambda name, data: data)
        with tarfile.open(backup_file, "a") as tar:
            info = tarfile.TarInfo("../../etc/evil")
            tar.addfile(info, io.BytesIO(b""))
    else:
        _rewrite(backup_file, lambda name, data: b"{not json" if name == MANIFEST_FILE else data)
    with pytest.raises(BackupCorrupt):
        verify_backup(backup_file)


def test_a_newer_format_another_dimension_or_a_non_empty_index_are_refused(backup_file, tmp_path, rng) -> None:
    with pytest.raises(BackupError, match="no backup file") as missing:
        verify_backup(tmp_path / "nothing.tar")
    assert type(missing.value) is BackupError
    other = ServerIndex(QdrantClient(":memory:"), "other-model", DIM + 1)
    busy = ServerIndex(QdrantClient(":memory:"), "busy", DIM)
    with pytest.raises(BackupIncompatible, match="size 4"):
        load_backup(backup_file, other)
    write_document(busy, "hb:z.md", 1, rng)
    with pytest.raises(BackupRefused, match="not empty"):
        load_backup(backup_file, busy)
    assert busy.count(Store.CHUNKS) == 1

    def newer(name: str, data: bytes) -> bytes:
        return json.dumps({**json.loads(data), "format_version": 99}).encode() if name == MANIFEST_FILE else data

    _rewrite(backup_file, newer)
    with pytest.raises(BackupIncompatible, match="format version 99"):
        verify_backup(backup_file)


def test_a_backup_never_overwrites_a_file(backup_file, tmp_path) -> None:
    before = backup_file.read_bytes()
    with pytest.raises(BackupRefused, match="exists"):
        write_backup(ServerIndex(QdrantClient(":memory:"), "any", DIM), backup_file, **LABELS)
    assert backup_file.read_bytes() == before


def _agrees(path: Path) -> int:
    """Checks that the backup at ``path`` is the state after some prefix of the writer's calls below; returns how
    many run records it holds. No chunk is untracked (a new document's pending entry comes before its chunks); an
    indexed entry has exactly its chunks, unless its document is being rewritten (then only its old and new
    version's chunks); and run ``k``, written after document ``k`` and document ``k - 3``'s rewrite, comes with
    their final entries: a read that took the ledger before the writer's last calls and the runs after them fails."""
    entries = {p.payload["doc_id"]: p.payload for p in backup_points(path, Store.LEDGER) if "doc_id" in p.payload}
    chunks: dict[str, list[dict]] = {}
    for point in backup_points(path, Store.CHUNKS):
        chunks.setdefault(point.payload["doc_id"], []).append(point.payload)
    assert set(chunks) <= set(entries), set(chunks) - set(entries)
    for entry in (e for e in entries.values() if e["status"] == "indexed"):
        mine = chunks.get(entry["doc_id"], [])
        if {c["content_hash"] for c in mine} == {entry["content_hash"]}:
            assert sorted(c["chunk"] for c in mine) == list(range(entry["chunks"])), entry
        else:
            assert {c["content_hash"] for c in mine} <= {f"{entry['doc_id']}-v1", f"{entry['doc_id']}-v2"}, (entry, mine)
    runs = [p.payload for p in backup_points(path, Store.RUNS)]
    for run in runs:
        k = run["counts"]["document"]
        assert entries[f"hb:doc{k}.md"]["status"] == "indexed", run
        assert k < 3 or entries[f"hb:doc{k - 3}.md"]["version"] == "v2", run
    return len(runs)


def test_an_edge_backup_taken_while_a_writer_runs_is_one_point_in_time(tmp_path) -> None:
    """Writes wait while the stores are read: every backup is the state after some prefix of the writer's calls."""
    index = EdgeIndex(tmp_path / "live", DIM)
    stop, written = threading.Event(), [0]

    def writer() -> None:
        local, k = np.random.default_rng(11), 0
        while not stop.is_set():
            write_document(index, f"hb:doc{k}.md", 1 + k % 4, local)
            if k >= 3:  # an earlier document changed and shrank: its new chunk, its stale ones deleted, then its entry
                write_document(index, f"hb:doc{k - 3}.md", 1, local, version="v2", new=False)
            SyncLedger(index).record_run(RunRecord("hb", f"run-{k:06d}", "", 0.0, {"document": k}))
            k += 1
            written[0] = k

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 5:
            time.sleep(0.01)
        runs = []
        for n in range(4):
            manifest = write_backup(index, tmp_path / f"backup{n}.tar", **LABELS)
            assert manifest.consistency == WRITES_PAUSED and manifest.pending == []
            runs.append(_agrees(tmp_path / f"backup{n}.tar"))
        assert runs[-1] > runs[0] >= 5, runs  # the writer went on between the backups
    finally:
        stop.set()
        thread.join(timeout=30)
        index.close()


class _WritesDuringRead:
    """A server index whose chunk scroll lets ``during`` run after the first point: other processes writing."""

    def __init__(self, backend: ServerIndex, during) -> None:
        self.backend, self.during = backend, during

    def __getattr__(self, name: str):
        return getattr(self.backend, name)

    def export_points(self, store: Store):
        for number, point in enumerate(self.backend.export_points(store)):
            yield point
            if store == Store.CHUNKS and number == 0:
                self.during()


def test_a_server_backup_keeps_documents_written_during_its_read_as_pending(tmp_path, rng) -> None:
    server = ServerIndex(QdrantClient(":memory:"), "enclave", DIM)
    populate(server, rng)

    def another_process_ingests() -> None:
        write_document(server, "hb:new.md", 2, rng)                           # a new document
        write_document(server, "hb:a.md", 1, rng, version="v2", new=False)   # a changed one, shorter
        ChunkStore(server).delete_document("hb:b.md")                          # one gone from the source
        SyncLedger(server).forget(["hb:b.md"])
        SyncLedger(server).save_connector_state("wiki", {"cursor": "later"})

    manifest = write_backup(_WritesDuringRead(server, another_process_ingests), tmp_path / "b.tar", **LABELS)
    assert manifest.consistency == LEDGER_BRACKETED
    assert sorted(manifest.pending) == ["hb:a.md", "hb:b.md", "hb:new.md"]
    ledger = {p.id: p.payload for p in backup_points(tmp_path / "b.tar", Store.LEDGER)}
    for doc_id in manifest.pending:  # the next sync redoes them, or deletes them if the source no longer lists them
        entry = ledger[ledger_point_id(doc_id)]
        assert (entry["status"], entry["version"], entry["content_hash"]) == ("pending", "", ""), entry
    assert ledger[ledger_point_id("wiki:c.md")]["status"] == "indexed"  # untouched documents stay as they were
    assert any(p.get("state") == {"cursor": "abc"} for p in ledger.values())  # the state from before the read
    assert manifest.documents == {"failed": 1, "indexed": 1, "pending": 3}
    server.close()


def test_reconcile_ledger_turns_entries_that_moved_into_pending_ones() -> None:
    def entry(doc_id: str, version: str, status: str = "indexed") -> dict:
        return {"doc_id": doc_id, "source": "hb", "version": version, "content_hash": "h" + version, "chunks": 2,
                "status": status, "uri": f"file:///{doc_id}"}

    before = {"1": entry("hb:same", "1"), "2": entry("hb:changed", "1"), "3": entry("hb:forgotten", "1"),
              "m": {"point_kind": "manifest", "manifest": {"dimension": 4}}, "s": {"state_of": "hb", "state": {"k": 1}}}
    after = {"1": entry("hb:same", "1"), "2": entry("hb:changed", "2"), "4": entry("hb:added", "", "pending"),
             "m": {"point_kind": "manifest", "manifest": {"dimension": 4}}, "s": {"state_of": "hb", "state": {"k": 2}}}
    ledger, pending = reconcile_ledger(before, after)
    assert sorted(pending) == ["hb:added", "hb:changed", "hb:forgotten"]
    assert ledger["1"] == before["1"] and ledger["s"] == before["s"] and ledger["m"] == before["m"]
    assert {ledger[k]["status"] for k in ("2", "3", "4")} == {"pending"}
    assert ledger["2"]["version"] == "" and ledger["2"]["uri"] == "file:///hb:changed"
    assert reconcile_ledger(before, before) == (before, [])
