"""Index generations: a new one built beside the live one, an atomic switch, the old one dropped; on Edge
(the ``.live`` file) and on a Qdrant server (aliases; ``QdrantClient(":memory:")`` stands in for its API)."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from enclave.indexes import Point, ServerIndex, Store, SyncLedger
from enclave.indexes.index_generations import EdgeGenerations, ServerGenerations

DIM = 4

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def _mark(index, text: str) -> None:
    index.upsert(Store.CHUNKS, [Point("00000000-0000-0000-0000-000000000001", {"text": text, "source": "s",
                                                                                "groups": ["everyone"]},
                                      dense=[1.0, 0.0, 0.0, 0.0])])


def _marked(index) -> list[str]:
    return [payload["text"] for _, payload in index.scroll(Store.CHUNKS)]


def test_edge_switch_moves_readers_and_drop_waits_for_the_holder(tmp_path) -> None:
    generations = EdgeGenerations(tmp_path, "enclave")
    assert generations.live() == "enclave"  # before any re-index: the collection's own folder
    first = generations.open("enclave", DIM)
    _mark(first, "old")
    first.close()

    name = generations.new_name()
    assert name.startswith("enclave__") and generations.new_name() > name  # later names sort after
    new = generations.open(name, DIM)
    _mark(new, "new")
    new.close()
    assert generations.live() == "enclave"  # building a generation changes nothing for readers

    generations.switch(name)
    assert generations.live() == name
    reader = generations.open(generations.live())
    assert _marked(reader) == ["new"]
    reader.close()
    assert generations.names() == sorted(["enclave", name])

    with pytest.raises(ValueError, match="live generation"):
        generations.drop(name)
    holder = generations.open("enclave")  # a server still answering from the old generation
    assert generations.drop("enclave", wait=0.3) is False
    assert (tmp_path / "enclave").is_dir()
    holder.close()
    assert generations.drop("enclave", wait=0.3) is True
    assert not (tmp_path / "enclave").exists() and generations.names() == [name]


def test_edge_switch_refuses_a_generation_that_does_not_exist(tmp_path) -> None:
    from enclave.indexes import IndexUnavailable

    with pytest.raises(IndexUnavailable, match="no generation"):
        EdgeGenerations(tmp_path, "enclave").switch("enclave__nothing")
    assert not (tmp_path / "enclave.live").exists()


def test_server_generations_switch_all_three_aliases_at_once() -> None:
    client = QdrantClient(":memory:")
    generations = ServerGenerations(client, "enclave")
    live = generations.open_live(DIM)  # a fresh install starts as a generation behind the aliases
    first = generations.live()
    assert first.startswith("enclave__")
    _mark(live, "old")
    SyncLedger(live).save_manifest({"embedder": {"model": "old"}})

    name = generations.new_name()
    new = generations.open(name, DIM)
    _mark(new, "new")
    SyncLedger(new).save_manifest({"embedder": {"model": "new"}})
    assert _marked(ServerIndex(client, "enclave")) == ["old"]
    new.close()  # as the re-index does before it switches: the generations' client stays open

    generations.switch(name)
    reader = ServerIndex(client, "enclave")  # readers use the aliases: chunks, ledger and runs all moved
    assert generations.live() == name and _marked(reader) == ["new"]
    assert SyncLedger(reader).manifest() == {"embedder": {"model": "new"}}
    assert generations.names() == sorted([first, name])
    generations.drop(first)
    assert generations.names() == [name]
    assert not client.collection_exists(f"{first}_ledger")


def test_server_switch_replaces_a_plain_collection_from_before_generations() -> None:
    client = QdrantClient(":memory:")
    legacy = ServerIndex(client, "enclave", DIM)  # plain collections named like the aliases
    _mark(legacy, "legacy")
    generations = ServerGenerations(client, "enclave")
    assert generations.live() == "enclave"
    name = generations.new_name()
    _mark(generations.open(name, DIM), "new")
    generations.switch(name)
    assert generations.live() == name and _marked(ServerIndex(client, "enclave")) == ["new"]
