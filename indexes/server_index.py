"""The index on a Qdrant server or cluster, through qdrant-client."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from enclave.indexes.index_backend import (
    DATETIME_FIELDS,
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE,
    Hit,
    IndexMismatch,
    IndexMissing,
    IndexUnavailable,
    Point,
    SparseVector,
    Store,
)

_SCROLL_PAGE = 1000


class ServerIndex:
    """An [IndexBackend][enclave.indexes.IndexBackend] in three collections of a Qdrant server:
    ``<collection>`` (the chunks), ``<collection>_ledger`` and ``<collection>_runs``.

    Usage::

        backend = ServerIndex(QdrantClient(url="http://qdrant:6333"), "enclave", dimension=384)
        ChunkStore(backend).search(query_vector, groups=["staff"], limit=5)

    Collections are created on first use: ``dense`` (cosine) and ``sparse`` (IDF modifier) vectors,
    payload indexes on the filtered fields. ``dimension=None`` opens an existing collection at its own
    dimension ([IndexMissing][enclave.indexes.IndexMissing] if there is none). An existing collection
    whose ``dense`` vector has another size, or that has no ``sparse`` vector, raises
    [IndexMismatch][enclave.indexes.IndexMismatch]; an unreachable server raises
    [IndexUnavailable][enclave.indexes.IndexUnavailable] naming the collection. Tests pass
    ``QdrantClient(":memory:")``, which mirrors the server API.
    """

    def __init__(self, client: QdrantClient, collection: str, dimension: int | None = None,
                 owns_client: bool = True) -> None:
        self.client = client
        self.owns_client = owns_client
        self.collection = collection
        self._names = self.collection_names(collection)
        try:
            if dimension is None:  # an existing collection knows its own dimension (e.g. for `enclave status`)
                if not client.collection_exists(collection):
                    raise IndexMissing(f"there is no collection {collection!r} yet: run `enclave ingest` first")
                dimension = client.get_collection(collection).config.params.vectors[DENSE].size
            self.dimension = dimension
            self._ensure_collections()
        except IndexUnavailable:
            raise
        except Exception as exc:  # qdrant-client raises transport and HTTP errors of many types
            raise IndexUnavailable(f"Qdrant server unavailable for collection {collection!r}: {exc}") from exc

    @staticmethod
    def collection_names(collection: str) -> dict[Store, str]:
        """The collections (or aliases) of the three stores: ``<collection>``, ``<collection>_ledger``,
        ``<collection>_runs``."""
        return {Store.CHUNKS: collection, Store.LEDGER: f"{collection}_ledger", Store.RUNS: f"{collection}_runs"}

    def _ensure_collections(self) -> None:
        if self.client.collection_exists(self.collection):
            config = self.client.get_collection(self.collection).config.params
            params = config.vectors
            size = params[DENSE].size if isinstance(params, dict) and DENSE in params else None
            if size != self.dimension:
                raise IndexMismatch(
                    f"collection {self.collection!r} holds '{DENSE}' vectors of size {size}, the embedder makes "
                    f"{self.dimension}: choose another index.collection to re-index"
                )
            if SPARSE not in (config.sparse_vectors or {}):
                raise IndexMismatch(
                    f"collection {self.collection!r} has no '{SPARSE}' (BM25) vectors: it was built by an older "
                    "Enclave; choose another index.collection and ingest again"
                )
        else:
            self.client.create_collection(
                self.collection,
                vectors_config={DENSE: models.VectorParams(size=self.dimension, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            schemas = [(KEYWORD_FIELDS, models.PayloadSchemaType.KEYWORD), (INTEGER_FIELDS, models.PayloadSchemaType.INTEGER),
                       (DATETIME_FIELDS, models.PayloadSchemaType.DATETIME)]
            for names, schema in schemas:
                for name in names:
                    self.client.create_payload_index(self.collection, name, schema)
        for store in (Store.LEDGER, Store.RUNS):
            if not self.client.collection_exists(self._names[store]):
                self.client.create_collection(self._names[store], vectors_config={})
                self.client.create_payload_index(self._names[store], "source", models.PayloadSchemaType.KEYWORD)

    # -- primitives -----------------------------------------------------------------------------------------------------
    def upsert(self, store: Store, points: Sequence[Point]) -> None:
        structs = [models.PointStruct(id=p.id, vector=_vectors(p), payload=p.payload) for p in points]
        self.client.upsert(self._names[store], points=structs, wait=True)

    def delete(self, store: Store, selector: models.Filter) -> None:
        self.client.delete(self._names[store], points_selector=models.FilterSelector(filter=selector), wait=True)

    def delete_ids(self, store: Store, ids: Sequence[str]) -> None:
        self.client.delete(self._names[store], points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def set_payload(self, store: Store, payload: dict[str, Any], selector: models.Filter) -> None:
        self.client.set_payload(self._names[store], payload=payload, points=models.FilterSelector(filter=selector),
                                wait=True)

    def scroll(self, store: Store, selector: models.Filter | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                self._names[store], scroll_filter=selector, limit=_SCROLL_PAGE, offset=offset,
                with_payload=True, with_vectors=False,
            )
            for record in records:
                yield str(record.id), record.payload or {}
            if offset is None:
                return

    def export_points(self, store: Store) -> Iterator[Point]:
        """Every point of ``store`` with its payload and vectors (a chunk's ``dense`` and ``sparse``; ledger
        and run points have none), in id order, a page of 1,000 at a time. A server cannot pause other
        processes' writes: [write_backup][enclave.indexes.index_backup.write_backup] brackets this read."""
        offset = None
        while True:
            records, offset = self.client.scroll(self._names[store], limit=_SCROLL_PAGE, offset=offset,
                                                 with_payload=True, with_vectors=True)
            for record in records:
                vectors = record.vector if isinstance(record.vector, dict) else {}
                sparse = vectors.get(SPARSE)
                dense = vectors.get(DENSE)
                yield Point(str(record.id), record.payload or {}, None if dense is None else list(dense),
                            None if sparse is None else SparseVector(tuple(sparse.indices), tuple(sparse.values)))
            if offset is None:
                return

    def count(self, store: Store, selector: models.Filter | None = None) -> int:
        return self.client.count(self._names[store], count_filter=selector, exact=True).count

    def query(self, request: models.QueryRequest) -> list[Hit]:
        response = self.client.query_points(
            self.collection, prefetch=request.prefetch, query=request.query, using=request.using,
            query_filter=request.filter, limit=request.limit or 10, with_payload=True,
        )
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in response.points]

    def close(self) -> None:
        """Close the client, unless it is shared (``owns_client=False``: a generation opened by
        [ServerGenerations.open][enclave.indexes.index_generations.ServerGenerations.open])."""
        if self.owns_client:
            self.client.close()


def _vectors(point: Point) -> dict[str, Any]:
    vectors: dict[str, Any] = {}
    if point.dense is not None:
        vectors[DENSE] = point.dense
    if point.sparse is not None and point.sparse.indices:
        vectors[SPARSE] = models.SparseVector(indices=list(point.sparse.indices), values=list(point.sparse.values))
    return vectors
