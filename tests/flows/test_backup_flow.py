"""``enclave backup`` and ``enclave restore`` on the configured index (enclave.flows.backup_flow): through the serving
process that owns it, into a new generation switched to atomically, refusals that leave the live index as it
was, a Qdrant server's generations, and the issue's test: a backup taken while an ingest writes, the data
directory wiped, the backup restored, and the answers, the ledger and an unchanged re-sync as before."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import asdict

import numpy as np
import pytest
from backup_cases import populate, serving, write_document
from qdrant_client import QdrantClient

from enclave.flows import AnswerPipeline, IngestPipeline, index_path, open_index
from enclave.flows.backup_flow import backup_index, restore_index
from enclave.flows.components import build_connector
from enclave.flows.index_location import generations
from enclave.flows.index_manifest import index_manifest
from enclave.indexes import ChunkStore, EdgeIndex, LedgerEntry, ServerGenerations, ServerIndex, Store, SyncLedger
from enclave.indexes.index_backup import (
    LEDGER_BRACKETED,
    WRITES_PAUSED,
    BackupCorrupt,
    BackupIncompatible,
    BackupRefused,
    backup_points,
)
from enclave.settings import GeneratorSettings, IngestSettings, Settings, SourceSettings

DIM = 4
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def _points(index) -> dict[str, dict[str, dict]]:
    return {str(store): dict(index.scroll(store)) for store in Store}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def live(settings, rng) -> dict[str, dict[str, dict]]:
    """An embedded index of the settings (three documents, random vectors, the settings' manifest); its points."""
    index = EdgeIndex(index_path(settings), DIM)
    try:
        populate(index, rng, manifest=index_manifest(settings, DIM))
        return _points(index)
    finally:
        index.close()


def test_restore_refuses_what_does_not_fit_and_with_force_replaces_the_index_as_a_new_generation(settings, live,
                                                                                               tmp_path, rng):
    report = backup_index(settings, tmp_path / "b.tar")
    assert report.manifest.generation == "enclave" and report.manifest.consistency == WRITES_PAUSED
    assert report.bytes == (tmp_path / "b.tar").stat().st_size and report.seconds > 0
    index = EdgeIndex(index_path(settings), DIM)
    write_document(index, "hb:later.md", 2, rng)  # written after the backup
    changed = _points(index)
    index.close()

    with pytest.raises(BackupRefused, match="not empty"):
        restore_index(settings, tmp_path / "b.tar")
    other = settings.model_copy(update={"embedder": settings.embedder.model_copy(update={"model": "intfloat/e5-small"})})
    with pytest.raises(BackupIncompatible, match="embedder.model"):
        restore_index(other, tmp_path / "b.tar", force=True)
    damaged = bytearray((tmp_path / "b.tar").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "damaged.tar").write_bytes(bytes(damaged))
    with pytest.raises(BackupCorrupt):
        restore_index(settings, tmp_path / "damaged.tar", force=True)
    assert generations(settings).names() == ["enclave"]  # nothing written beside the live index, which is as it was
    index = open_index(settings)
    assert _points(index) == changed
    index.close()

    restored = restore_index(settings, tmp_path / "b.tar", force=True, grace=0)
    assert restored.previous == "enclave" and restored.dropped and restored.live.startswith("enclave__")
    assert generations(settings).names() == [restored.live] == [index_path(settings).name]  # `.live` names it
    index = open_index(settings)
    try:
        assert _points(index) == live  # the later document is gone with the replaced generation
    finally:
        index.close()


def test_a_wiped_data_dir_is_restored_and_status_reads_it(settings, live, tmp_path):
    backup_index(settings, tmp_path / "b.tar")
    shutil.rmtree(settings.data_dir)
    restored = restore_index(settings, tmp_path / "b.tar")
    assert restored.previous is None and restored.outdated == {}
    index = open_index(settings)
    try:
        assert _points(index) == live
        [hb, wiki] = SyncLedger(index).summary(["hb", "wiki"])  # what `enclave status` shows
        assert (hb.documents, hb.chunks, hb.last_run.counts, wiki.chunks) == (3, 5, {"indexed": 2}, 4)
    finally:
        index.close()


@pytest.mark.slow  # a uvicorn server and a wait for the switch: ~3 s, over the fast lane's budget
def test_backup_and_restore_while_the_server_owns_the_index_which_lets_go_of_the_old_generation(settings, live, tmp_path):
    edge = EdgeIndex(index_path(settings), DIM)
    with serving(edge):
        report = backup_index(settings, tmp_path / "b.tar")  # through the owner: its writes wait, it streams the file
        assert report.manifest.consistency == WRITES_PAUSED and report.manifest.points["chunks"] == 9

        def follow() -> None:  # what IndexFollower does when the live generation moves: close the old one
            deadline = time.monotonic() + 30
            while generations(settings).live() == "enclave" and time.monotonic() < deadline:
                time.sleep(0.05)
            edge.close()

        follower = threading.Thread(target=follow)
        follower.start()
        restored = restore_index(settings, tmp_path / "b.tar", force=True, grace=20)
        follower.join()
    assert restored.previous == "enclave" and restored.dropped  # dropped as soon as the server let go of it
    assert generations(settings).names() == [restored.live]


def test_a_server_index_round_trips_through_its_generations(tmp_path, rng):
    settings = Settings(index={"backend": "server", "url": "http://qdrant.invalid:6333"})
    client = QdrantClient(":memory:")
    source = ServerGenerations(client, "enclave")
    populate(source.open_live(DIM), rng, manifest=index_manifest(settings, DIM))
    first = source.live()
    original = _points(ServerIndex(client, first))

    report = backup_index(settings, tmp_path / "b.tar", index_generations=source)
    assert report.manifest.consistency == LEDGER_BRACKETED and report.manifest.generation == first

    elsewhere = ServerGenerations(QdrantClient(":memory:"), "enclave")
    restored = restore_index(settings, tmp_path / "b.tar", index_generations=elsewhere)
    assert restored.previous is None
    assert _points(ServerIndex(elsewhere.client, "enclave")) == original  # through the aliases

    with pytest.raises(BackupRefused):
        restore_index(settings, tmp_path / "b.tar", index_generations=source)
    again = restore_index(settings, tmp_path / "b.tar", force=True, grace=0, index_generations=source)
    assert again.previous == first and again.dropped and source.live() == again.live
    assert source.names() == [again.live] and _points(ServerIndex(client, "enclave")) == original


# -- the test: a backup while an ingest writes --------------------------------------------------------------

TOPICS = {
    "aurora": "The Aurora project ships its telemetry gateway on 3 March and is led by Ingrid Solberg.",
    "basalt": "Basalt is the storage cluster in Bergen; it keeps 14 days of snapshots.",
    "cobalt": "Cobalt, the payroll system, pays salaries on the 25th of each month.",
    "dune": "Dune is the travel policy: economy class for flights under six hours.",
    "ember": "Ember is the on-call rota; an engineer is on call for one week in eight.",
    "fjord": "Fjord is the office in Tromsø, open from 8 to 16 on weekdays.",
    "garnet": "Garnet is the laptop programme: a new laptop every four years.",
    "harbor": "Harbor is the visitor policy: guests sign in at reception and wear a badge.",
    "iris": "Iris is the design system; its components use the Inter typeface.",
    "juniper": "Juniper is the wellness budget of 3,000 NOK a year per employee.",
    "krill": "Krill is the data retention rule: logs are deleted after 90 days.",
    "lumen": "Lumen is the lighting upgrade of the Oslo office, finished in 2025.",
}
QUESTIONS = ["How many days of snapshots does Basalt keep?", "When are salaries paid?",
             "How long are logs kept?", "Who leads the Aurora project?"]


class _PausingConnector:
    """A folder source that, when asked for document ``at``, says so and waits for ``resume`` (the ingest's
    batch before it is being written meanwhile)."""

    def __init__(self, inner, at: str) -> None:
        self.inner, self.source, self.at = inner, inner.source, at
        self.reached, self.resume = threading.Event(), threading.Event()

    def list_documents(self):
        return self.inner.list_documents()

    def fetch(self, document):
        if document.doc_id == self.at:
            self.reached.set()
            assert self.resume.wait(300), "the test never resumed the ingest"
        return self.inner.fetch(document)


def _answers(settings: Settings, index, embedder) -> list[tuple]:
    pipeline = AnswerPipeline.from_settings(settings, embedder=embedder, index=index)
    try:
        results = [pipeline.ask(q, groups=["everyone"]) for q in QUESTIONS]
    finally:
        pipeline.close()
    return [(a.text, [c.uri for c in a.citations], [(p.id, round(p.score, 4)) for p in a.passages]) for a in results]


def _ledger(index, *, timeless: bool = False) -> dict[str, dict]:
    entries = {doc_id: asdict(e) for doc_id, e in SyncLedger(index).entries().items()}
    if timeless:
        for entry in entries.values():
            entry.pop("updated_at")
    return entries


def _resync(settings: Settings, index, embedder):
    with IngestPipeline.from_settings(settings, index=index, embedder=embedder) as pipeline:
        return pipeline.run("notes")


@pytest.mark.slow  # two ingests of 12 documents with the real model and parse worker, a server, four restores: ~30 s
def test_a_backup_taken_while_an_ingest_writes_restores_to_a_state_a_resync_completes(tmp_path, embedder):
    docs = tmp_path / "notes"
    docs.mkdir()
    for name, text in TOPICS.items():
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\n{text}\n", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="notes", path=docs, groups=["everyone"])],
                        ingest=IngestSettings(batch_documents=2, batches_in_flight=1),
                        generators=[GeneratorSettings(name="extractive", kind="extractive")])
    connector = build_connector(settings.source("notes"))
    listed = sorted(d.doc_id for d in connector.list_documents())
    pausing = _PausingConnector(connector, at=listed[7])  # the 4th batch of 2 waits; the 3rd is being written

    edge = EdgeIndex(index_path(settings), embedder.dimension)
    with serving(edge):  # `enclave serve` owns the index: the ingest and the backups go through it
        outcome: dict = {}

        def ingest() -> None:
            with IngestPipeline.from_settings(settings, embedder=embedder) as pipeline:  # a RemoteIndex to the owner
                outcome["report"] = pipeline.run(pausing)

        thread = threading.Thread(target=ingest)
        thread.start()
        try:
            assert pausing.reached.wait(300), "the ingest never reached the middle of the folder"
            midway = backup_index(settings, tmp_path / "midway.tar")
        finally:
            pausing.resume.set()
            thread.join(timeout=300)
        assert outcome["report"].counts() == {"indexed": 12}
        final = backup_index(settings, tmp_path / "final.tar")
        original_answers = _answers(settings, edge, embedder)
        original_ledger, original_runs = _ledger(edge), SyncLedger(edge).runs()
        original_chunks = edge.count(Store.CHUNKS)
    edge.close()
    assert all(a[1] for a in original_answers), original_answers  # every question answered with a citation
    assert final.manifest.points == {"chunks": original_chunks, "ledger": 13, "runs": 1}

    # 1. the backup of the finished index: wipe, restore, and everything is as it was; a re-sync embeds nothing
    shutil.rmtree(settings.data_dir)
    assert restore_index(settings, tmp_path / "final.tar").previous is None
    index = open_index(settings)
    try:
        assert _ledger(index) == original_ledger and SyncLedger(index).runs() == original_runs
        assert _answers(settings, index, embedder) == original_answers
        unchanged = _resync(settings, index, embedder)
        assert unchanged.chunks_embedded == 0 and unchanged.counts() == {"unchanged": 12}
    finally:
        index.close()

    # 2. the backup taken mid-ingest: the state at that moment, which a re-sync completes to the full ingest's
    m = midway.manifest
    snapshot = {p.payload["doc_id"]: p.payload for p in backup_points(tmp_path / "midway.tar", Store.LEDGER)
                if "doc_id" in p.payload}
    done = {doc_id for doc_id, entry in snapshot.items() if entry["status"] == "indexed"}
    assert m.consistency == WRITES_PAUSED and 4 <= len(done) < 12 and m.points["runs"] == 0, m
    restored = restore_index(settings, tmp_path / "midway.tar", force=True, grace=0)
    assert restored.dropped
    index = open_index(settings)
    try:
        assert {d: asdict(e) for d, e in SyncLedger(index).entries().items()} == {
            d: asdict(LedgerEntry.from_payload(p)) for d, p in snapshot.items()}
        for doc_id in done:  # each document the ledger calls indexed has its chunks
            assert ChunkStore(index).count(doc_id=doc_id) == snapshot[doc_id]["chunks"]
        assert index.count(Store.CHUNKS) == m.points["chunks"]
        completing = _resync(settings, index, embedder)
        assert completing.chunks_embedded == sum(e["chunks"] for d, e in original_ledger.items() if d not in done) > 0
        assert completing.counts() == {"unchanged": len(done), "indexed": 12 - len(done)}
        assert _ledger(index, timeless=True) == {d: {k: v for k, v in e.items() if k != "updated_at"}
                                                 for d, e in original_ledger.items()}
        assert index.count(Store.CHUNKS) == original_chunks
        assert _answers(settings, index, embedder) == original_answers
        again = _resync(settings, index, embedder)
        assert again.chunks_embedded == 0 and again.counts() == {"unchanged": 12}
    finally:
        index.close()

