"""indexes.retriever: the three modes over a real embedded index and the default embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclave.contracts import Chunk, point_id
from enclave.indexes import Bm25Embedder, ChunkStore, EdgeIndex, Retriever, SearchFilter

CHUNKS = {
    "hr:leave.md": ("Employees earn 2.25 days of paid leave each month.", "md", ["everyone"]),
    "it:passwords.md": ("Passwords must be at least 14 characters long.", "md", ["everyone"]),
    "sales:hx400.pdf": ("The HX-400 pressure sensor works from -40 to 125 degrees Celsius.", "pdf", ["everyone"]),
    "board:merger.md": ("The merger with Fjordlys Optics closes on 14 March.", "md", ["board"]),
}


class CountingEmbedder:
    """The real embedder, counting the texts it embeds."""

    def __init__(self, embedder) -> None:
        self.inner, self.calls = embedder, 0

    def embed(self, texts):
        self.calls += 1
        return self.inner.embed(texts)

    def embed_query(self, texts):
        self.calls += 1
        return self.inner.embed_query(texts)


@pytest.fixture
def retriever(tmp_path: Path, embedder):
    index = EdgeIndex(tmp_path / "index", dimension=embedder.dimension)
    bm25 = Bm25Embedder()
    chunks = [
        Chunk(id=point_id(doc_id, 0), doc_id=doc_id, chunk=0, text=text, section="", source=doc_id.split(":")[0],
              title=doc_id, uri=f"file:///{doc_id}", doc_type=doc_type, modified_at="", groups=tuple(groups),
              classification="internal", content_hash="")
        for doc_id, (text, doc_type, groups) in CHUNKS.items()
    ]
    texts = [c.text for c in chunks]
    store = ChunkStore(index)
    store.upsert(chunks, embedder.embed(texts), bm25.embed(texts))
    yield Retriever(CountingEmbedder(embedder), store, top_k=2, sparse_embedder=bm25)
    index.close()


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_each_mode_finds_the_chunk_that_answers(retriever, mode):
    assert retriever.run("How long must a password be?", ["everyone"], mode=mode)[0].doc_id == "it:passwords.md"
    assert retriever.run("HX-400 temperature range", ["everyone"], mode=mode)[0].doc_id == "sales:hx400.pdf"


def test_sparse_mode_embeds_no_dense_vector(retriever):
    retriever.run("paid leave", ["everyone"], mode="sparse")
    assert retriever.embedder.calls == 0
    retriever.run("paid leave", ["everyone"], mode="hybrid")
    assert retriever.embedder.calls == 1


def test_groups_and_filters_apply_in_every_mode(retriever):
    for mode in ("hybrid", "dense", "sparse"):
        hits = retriever.run("When does the merger with Fjordlys Optics close?", ["everyone"], top_k=10, mode=mode)
        assert "board:merger.md" not in {h.doc_id for h in hits}
        assert retriever.run("Fjordlys merger", ["board"], mode=mode)[0].doc_id == "board:merger.md"
        only_pdf = retriever.run("How long must a password be?", ["everyone"], top_k=10, mode=mode,
                                 where=SearchFilter(doc_types=("pdf",)))
        assert {h.doc_id for h in only_pdf} <= {"sales:hx400.pdf"}
        assert retriever.run("anything", [], mode=mode) == []


def test_llamaindex_retrieve_is_bound_to_groups(retriever):
    nodes = retriever.for_groups(["everyone"]).retrieve("paid leave per month")
    assert nodes[0].node.get_content() == CHUNKS["hr:leave.md"][0]
    assert nodes[0].node.ref_doc_id == "hr:leave.md"
    assert retriever.for_groups([]).retrieve("paid leave per month") == []


def test_unknown_mode_and_missing_sparse_embedder_are_refused(retriever, embedder):
    with pytest.raises(ValueError, match="unknown retrieval mode 'bm42'"):
        retriever.run("x", ["everyone"], mode="bm42")
    with pytest.raises(ValueError, match="needs a sparse embedder"):
        Retriever(embedder, retriever.store)  # hybrid by default
    assert Retriever(embedder, retriever.store, mode="dense").run("paid leave", ["everyone"])[0].doc_id == "hr:leave.md"


def test_concurrent_queries_share_passes_of_the_model_and_find_the_same(retriever):
    """max_batch > 1: queries run at once from several threads are embedded together (dense and BM25) and
    find what each finds alone; for_groups retrievers share the batches."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    class Slow(CountingEmbedder):
        def embed_query(self, texts):
            time.sleep(0.05)  # long enough for the other threads to queue behind the first pass
            return super().embed_query(texts)

    queries = ["How long must a password be?", "HX-400 temperature range", "paid leave per month",
               "password characters", "pressure sensor", "leave days"] * 2
    alone = [[h.doc_id for h in retriever.run(q, ["everyone"])] for q in queries]
    batched = Retriever(Slow(retriever.embedder.inner), retriever.store, top_k=2, sparse_embedder=retriever.sparse_embedder,
                        max_batch=8, max_wait=0.01)
    barrier = threading.Barrier(len(queries))

    def run(i: int) -> list[str]:
        barrier.wait()
        if i % 2:
            return [n.node.ref_doc_id for n in batched.for_groups(["everyone"]).retrieve(queries[i])]
        return [h.doc_id for h in batched.run(queries[i], ["everyone"])]

    with ThreadPoolExecutor(len(queries)) as pool:
        assert list(pool.map(run, range(len(queries)))) == alone
    assert batched.embedder.calls < len(queries)
    assert batched.for_groups(["everyone"]).batcher is batched.batcher
