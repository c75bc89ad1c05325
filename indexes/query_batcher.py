"""Micro-batching of query encodings: questions asked at the same time share one pass of the embedding model.

Under many concurrent requests the serving process would embed queries one at a time, each waiting for
the model behind its process-wide lock; batched, the model's per-call cost is paid once per batch.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from enclave.indexes.embedder_contract import Embedder
from enclave.indexes.index_backend import SparseVector
from enclave.indexes.sparse_embedder import Bm25Embedder


class QueryVectors(NamedTuple):
    """What [QueryBatcher.encode][enclave.indexes.query_batcher.QueryBatcher.encode] returns for ``n`` queries."""

    dense: np.ndarray | None
    """``(n, d)`` float32, each row L2-normalised (the embedder's ``embed_query``); None when not asked for."""
    sparse: list[SparseVector] | None
    """The BM25 query vector of each query, in order; None when not asked for."""


class QueryBatcher:
    """Encodes queries, dense and BM25, for many threads at once: queries that arrive together are embedded
    in one call of the model.

    Usage::

        batcher = QueryBatcher(DenseEmbedder(), Bm25Embedder(), max_batch=16, max_wait=0.002)
        vectors = batcher.encode(["How many leave days?"])    # from any number of threads at once
        vectors.dense                  # (1, 384) float32, L2-normalised: the rows embedder.embed_query gives
        vectors.sparse                 # [SparseVector]: what sparse_embedder.embed_query gives
        batcher.encode(["leave"], dense=False).dense          # None: only what is asked for is computed

    No thread of its own: the first caller to find no batch in progress leads. It takes what is waiting
    (at most ``max_batch`` queries, oldest first, its own among them), computes it with one
    ``embedder.embed_query`` call (and ``sparse_embedder.embed_query`` per query), hands every caller its
    rows, and passes the lead to the oldest query still waiting, whose caller does the same. Callers
    that arrive while a batch is computed wait and form the next one, so batches grow with the load by
    themselves. A leader whose query is alone goes at once, so a query on its own waits for nothing;
    one that finds other callers' queries waiting lets the batch fill for up to ``max_wait`` seconds
    (or until ``max_batch``), as more of a crowd tends to arrive within milliseconds. ``max_batch=1``
    encodes queries one at a time, as without a batcher.

    An exception raised while a batch is computed reaches every caller with a query in it (the leader
    gets it as raised; each other caller a copy of it, the original as its ``__cause__``); the queries
    waiting behind form the next batch. A caller interrupted (KeyboardInterrupt) while waiting or leading
    withdraws its queries and passes on the lead; the other queries of a batch it was computing go back
    to the head of the queue. So nobody waits for a leader that will not come.
    Nothing needs closing: with no caller in ``encode`` the batcher holds nothing but its settings.
    Raises ValueError for ``max_batch`` < 1 or ``max_wait`` < 0, and from ``encode`` for BM25 asked of a
    batcher without a ``sparse_embedder``.
    """

    def __init__(self, embedder: Embedder, sparse_embedder: Bm25Embedder | None = None, max_batch: int = 16,
                 max_wait: float = 0.002) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be at least 1 and max_wait at least 0 seconds")
        self.embedder = embedder
        self.sparse_embedder = sparse_embedder
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Query] = []
        self._leading = False  # a caller holds the lead (gathering or computing a batch, or appointed to)

    def encode(self, queries: Sequence[str], dense: bool = True, sparse: bool = True) -> QueryVectors:
        """The dense rows and/or BM25 vectors of ``queries``, computed in batches with other callers' queries."""
        if sparse and self.sparse_embedder is None:
            raise ValueError("BM25 query vectors need a sparse_embedder (Bm25Embedder)")
        if not queries or not (dense or sparse):
            empty = np.zeros((0, self.embedder.dimension), dtype=np.float32) if dense and not queries else None
            return QueryVectors(empty, [] if sparse else None)
        caller = _Caller()
        mine = [_Query(text, dense, sparse, caller) for text in queries]
        with self._cond:
            self._pending.extend(mine)
            if self._leading:
                self._cond.notify()  # a leader letting its batch fill
            else:
                self._leading = caller.lead = True
        try:
            while True:
                with self._cond:
                    caller.wake.clear()
                    lead, caller.lead = caller.lead, False
                    if not lead and all(query.done for query in mine):
                        break
                if lead:
                    self._lead(caller)
                else:
                    caller.wake.wait()
        except BaseException:
            self._withdraw(caller, mine)
            raise
        failed = next((query.error for query in mine if query.error is not None), None)
        if failed is not None:  # a batch another caller led failed (a batch this caller led raised in _lead)
            raise _copied(failed) from failed
        rows = np.stack([query.vector for query in mine]).astype(np.float32, copy=False) if dense else None
        return QueryVectors(rows, [query.terms for query in mine] if sparse else None)

    def _lead(self, caller: _Caller) -> None:
        """Gather, compute and hand out one batch; then pass the lead on (or give it up: nothing waits)."""
        batch: list[_Query] = []
        error: BaseException | None = None
        try:
            with self._cond:
                if self.max_wait > 0 and any(query.caller is not caller for query in self._pending):
                    deadline = time.monotonic() + self.max_wait
                    while len(self._pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._compute(batch)
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._cond:
                if error is not None and not isinstance(error, Exception):
                    # interrupted (KeyboardInterrupt...), not failed: the others' queries go back to the queue's head
                    self._pending[:0] = [query for query in batch if query.caller is not caller]
                    batch = [query for query in batch if query.caller is caller]
                for query in batch:
                    query.error = error
                    query.done = True
                if self._pending:
                    self._appoint(self._pending[0].caller)
                else:
                    self._leading = False
                for other in {query.caller for query in batch}:
                    other.wake.set()

    def _compute(self, batch: list[_Query]) -> None:
        dense = [query for query in batch if query.dense]
        if dense:
            rows = np.asarray(self.embedder.embed_query([query.text for query in dense]), dtype=np.float32)
            if rows.ndim != 2 or rows.shape[0] != len(dense):
                raise ValueError(f"embed_query gave an array of shape {rows.shape} for {len(dense)} queries")
            for query, row in zip(dense, rows):
                query.vector = row
        for query in batch:
            if query.sparse:
                assert self.sparse_embedder is not None  # encode checked it
                query.terms = self.sparse_embedder.embed_query(query.text)

    def _appoint(self, caller: _Caller) -> None:
        """Give the lead to ``caller`` (held: the condition's lock)."""
        caller.lead = True
        caller.wake.set()

    def _withdraw(self, caller: _Caller, mine: list[_Query]) -> None:
        """``caller`` stops waiting: its queries leave the queue, and a lead it was given passes on."""
        with self._cond:
            self._pending = [query for query in self._pending if query.caller is not caller]
            if caller.lead:
                caller.lead = False
                if self._pending:
                    self._appoint(self._pending[0].caller)
                else:
                    self._leading = False


class _Caller:
    """One call of ``encode``: woken when its queries are done or when it is given the lead."""

    __slots__ = ("lead", "wake")

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.lead = False


class _Query:
    __slots__ = ("caller", "dense", "done", "error", "sparse", "terms", "text", "vector")

    def __init__(self, text: str, dense: bool, sparse: bool, caller: _Caller) -> None:
        self.text, self.dense, self.sparse, self.caller = text, dense, sparse, caller
        self.vector: np.ndarray | None = None
        self.terms: SparseVector | None = None
        self.error: BaseException | None = None
        self.done = False


def _copied(error: BaseException) -> BaseException:
    """A copy of ``error`` for another thread to raise (so tracebacks do not mix); the error itself if it
    cannot be copied."""
    try:
        clone = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception type that does not copy: share the original
        return error
    return clone if isinstance(clone, BaseException) else error
