"""indexes.query_batcher: concurrent queries share passes of the model, within the size and wait bounds; each
caller gets its own rows or the batch's exception; a query alone waits for nothing. A fake encoder records
the batches (no model), except the last test, which checks the real model's batched rows."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from enclave.indexes.index_backend import SparseVector
from enclave.indexes.query_batcher import QueryBatcher

DIM = 8


class FakeEmbedder:
    """The row of query ``q<i>`` is the unit vector along axis i % DIM: (n, DIM) float32, L2-normalised.
    Records each batch (its texts, start and end); takes ``seconds`` per pass; raises ``error`` for a
    batch holding a text of ``fail_on``. With ``gated``, the first pass sets ``entered`` and holds until
    ``gate`` is set (the test queues queries behind it meanwhile)."""

    dimension = DIM

    def __init__(self, seconds: float = 0.0, fail_on: tuple[str, ...] = (), error: BaseException | None = None,
                 gated: bool = False):
        self.seconds, self.fail_on = seconds, fail_on
        self.error = error or RuntimeError("the model broke")
        self.batches: list[tuple[list[str], float, float]] = []
        self._lock = threading.Lock()
        self.entered, self.gate = threading.Event(), threading.Event()
        if not gated:
            self.gate.set()

    def embed_query(self, texts: list[str]) -> np.ndarray:
        started = time.monotonic()
        self.entered.set()
        assert self.gate.wait(10)
        time.sleep(self.seconds)
        with self._lock:
            self.batches.append((list(texts), started, time.monotonic()))
        if any(text in self.fail_on for text in texts):
            raise self.error
        rows = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in zip(rows, texts):
            row[int(text[1:]) % DIM] = 1.0
        return rows

    @property
    def sizes(self) -> list[int]:
        return [len(texts) for texts, _, _ in self.batches]


class FakeBm25:
    def embed_query(self, text: str) -> SparseVector:
        return SparseVector((int(text[1:]),), (1.0,))


def _together(count: int, call, stagger: float = 0.0) -> list:
    """``call(i)`` from ``count`` threads released at once (``stagger`` seconds apart); results (or the
    exceptions raised) in order of i."""
    barrier = threading.Barrier(count)

    def run(i: int):
        barrier.wait()
        time.sleep(stagger * i)
        try:
            return call(i)
        except Exception as exc:  # noqa: BLE001 - returned for the test to look at
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def _queue_behind_a_held_pass(batcher: QueryBatcher, fake: FakeEmbedder, count: int, call) -> list:
    """``call(0)`` starts a pass the fake holds; ``call(1)`` ... ``call(count - 1)`` then queue behind it in that
    order; the pass is let go; results (or the exceptions raised) in order of i."""
    pool = ThreadPoolExecutor(count)

    def run(i: int):
        try:
            return call(i)
        except BaseException as exc:  # noqa: BLE001 - returned for the test to look at
            return exc

    futures = [pool.submit(run, 0)]
    assert fake.entered.wait(10)
    for i in range(1, count):
        futures.append(pool.submit(run, i))
        deadline = time.monotonic() + 10
        while len(batcher._pending) < i:  # queued, in this order
            assert time.monotonic() < deadline
            time.sleep(0.001)
    fake.gate.set()
    try:
        return [future.result(timeout=30) for future in futures]
    finally:
        pool.shutdown()


def test_concurrent_callers_get_their_own_rows_and_share_passes():
    fake = FakeEmbedder(seconds=0.02)
    batcher = QueryBatcher(fake, FakeBm25(), max_batch=64, max_wait=0.005)
    results = _together(40, lambda i: batcher.encode([f"q{i}"]))
    for i, vectors in enumerate(results):
        assert vectors.dense.shape == (1, DIM) and vectors.dense.dtype == np.float32
        assert int(np.argmax(vectors.dense[0])) == i % DIM
        assert vectors.sparse == [SparseVector((i,), (1.0,))]
    assert sum(fake.sizes) == 40 and len(fake.sizes) < 40  # shared passes
    assert sorted(t for texts, _, _ in fake.batches for t in texts) == sorted(f"q{i}" for i in range(40))


def test_several_queries_of_one_caller_come_back_in_order_and_only_what_is_asked_is_computed():
    fake = FakeEmbedder()
    batcher = QueryBatcher(fake, FakeBm25(), max_batch=2)
    vectors = batcher.encode(["q3", "q1", "q2", "q7", "q5"])  # more than one batch's worth
    assert vectors.dense.shape == (5, DIM)
    assert [int(np.argmax(row)) for row in vectors.dense] == [3, 1, 2, 7, 5]
    assert [v.indices[0] for v in vectors.sparse] == [3, 1, 2, 7, 5]
    assert fake.sizes == [2, 2, 1]
    assert batcher.encode(["q1"], dense=False).dense is None and len(fake.batches) == 3  # BM25 only: no pass
    assert batcher.encode(["q1"], sparse=False).sparse is None
    empty = batcher.encode([])
    assert empty.dense.shape == (0, DIM) and empty.sparse == []
    with pytest.raises(ValueError, match="sparse_embedder"):
        QueryBatcher(fake).encode(["q1"])


def test_the_batch_size_bound_holds():
    fake = FakeEmbedder(seconds=0.02)
    batcher = QueryBatcher(fake, max_batch=4, max_wait=0.005)
    _together(30, lambda i: batcher.encode([f"q{i}"], sparse=False))
    assert max(fake.sizes) == 4 and sum(fake.sizes) == 30
    one_by_one = FakeEmbedder(seconds=0.005)
    solo = QueryBatcher(one_by_one, max_batch=1, max_wait=0.005)
    _together(8, lambda i: solo.encode([f"q{i}"], sparse=False))
    assert one_by_one.sizes == [1] * 8


def test_a_waiting_batch_goes_after_max_wait_or_once_full():
    """q1 and q2 queue behind q0's pass. When it ends, q1 leads: another caller's query waits with it, so
    the batch may fill, for max_wait and no longer (no third query comes); with max_batch 2 it is full at once."""
    for max_batch, expected_gap in ((8, 0.3), (2, 0.0)):
        fake = FakeEmbedder(gated=True)
        batcher = QueryBatcher(fake, max_batch=max_batch, max_wait=0.3)
        _queue_behind_a_held_pass(batcher, fake, 3, lambda i, batcher=batcher: batcher.encode([f"q{i}"], sparse=False))
        assert fake.sizes == [1, 2]
        (_, _, first_end), (_, second_start, _) = fake.batches
        assert expected_gap <= second_start - first_end < expected_gap + 0.25


def test_a_query_alone_waits_for_nothing():
    fake = FakeEmbedder()
    batcher = QueryBatcher(fake, FakeBm25(), max_batch=16, max_wait=5.0)
    started = time.monotonic()
    for i in range(20):
        batcher.encode([f"q{i}"])
    assert (time.monotonic() - started) / 20 < 0.05  # far from the 5 s window
    assert fake.sizes == [1] * 20


def test_an_exception_reaches_every_caller_of_the_batch_and_the_next_batch_goes_on():
    fake = FakeEmbedder(fail_on=("q1",), gated=True)
    batcher = QueryBatcher(fake, max_batch=8, max_wait=0.05)
    # q1..q4 queue behind q0's pass and fail together, q1 leading; q5, later, is computed on its own
    results = _queue_behind_a_held_pass(batcher, fake, 5, lambda i: batcher.encode([f"q{i}"], sparse=False))
    late = batcher.encode(["q5"], sparse=False)
    assert fake.sizes == [1, 4, 1]
    assert int(np.argmax(results[0].dense[0])) == 0 and int(np.argmax(late.dense[0])) == 5
    failed = results[1:]
    assert all(isinstance(r, RuntimeError) and str(r) == "the model broke" for r in failed)
    assert len({id(r) for r in failed}) == 4  # each caller raised its own copy...
    assert failed[0] is fake.error  # ...but the leader, which raised the original; the others name it as cause
    assert all(r.__cause__ is fake.error for r in failed[1:])


def test_a_malformed_answer_of_the_model_is_an_error_for_the_batch():
    class Short(FakeEmbedder):
        def embed_query(self, texts):
            return super().embed_query(texts)[:-1]

    with pytest.raises(ValueError, match="shape"):
        QueryBatcher(Short()).encode(["q1", "q2"], sparse=False)


class Interrupt(BaseException):
    """Stands in for KeyboardInterrupt in the leader's thread."""


def test_an_interrupted_leader_hands_its_batch_back_and_nobody_hangs():
    """L (q1), then F1 and F2 (q2, q3) queue behind w's (q0's) pass; L leads the next batch and is interrupted
    in it: L gets the interruption, F1 and F2 are computed by a new leader."""
    fake = FakeEmbedder(fail_on=("q1",), error=Interrupt(), gated=True)
    batcher = QueryBatcher(fake, max_batch=8, max_wait=0.01)
    results = _queue_behind_a_held_pass(batcher, fake, 4, lambda i: batcher.encode([f"q{i}"], sparse=False))
    assert isinstance(results[1], Interrupt)
    assert [int(np.argmax(results[i].dense[0])) for i in (0, 2, 3)] == [0, 2, 3]
    assert fake.sizes == [1, 3, 2]
    assert batcher.encode(["q4"], sparse=False).dense.shape == (1, DIM)  # and the batcher goes on


def test_batched_rows_equal_the_models_own(embedder):
    """The real model: rows of a padded batch match each query embedded alone (cosine 1 - 1e-5)."""
    queries = ["How many leave days?", "What is the minimum password length for staff accounts at Halvard?",
               "HX-400", "Who approves expense claims above the limit for an itemised receipt?"]
    alone = np.stack([embedder.embed_query([q])[0] for q in queries])
    batcher = QueryBatcher(embedder, max_batch=8, max_wait=0.05)
    results = _together(len(queries), lambda i: batcher.encode([queries[i]], sparse=False).dense[0])
    batched = np.stack(results)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(batched * alone, axis=1) > 1 - 1e-5)
