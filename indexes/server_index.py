"""The index on a Qdrant server or cluster, through qdrant-client."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qdrant_client import QdrantClient, models

from indexes.vector_index import (
    DATETIME_FIELDS,
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE,
    VectorIndex,
    VectorIndexError,
)

_SCROLL_PAGE = 1000


class ServerIndex(VectorIndex):
    """Chunks, ledger and runs in three collections of a Qdrant server: ``<collection>``,
    ``<collection>_ledger`` and ``<collection>_runs``.

    Usage::

        index = ServerIndex(QdrantClient(url="http://qdrant:6333"), "enclave", dimension=384)
        index.upsert(nodes, vectors)
        hits = index.search(query_vector, groups=["staff"], limit=5)

    Collections are created on first use: ``dense`` (cosine) and ``sparse`` (IDF modifier) vectors,
    payload indexes on the filtered fields. An existing collection whose ``dense`` vector has another
    size, or that has no ``sparse`` vector, raises VectorIndexError; an unreachable server
    raises VectorIndexError naming the URL. Tests pass ``QdrantClient(":memory:")``, which mirrors the
    server API.
    """

    def __init__(self, client: QdrantClient, collection: str, dimension: int | None = None) -> None:
        self.client = client
        self.collection = collection
        self.ledger_collection = f"{collection}_ledger"
        self.runs_collection = f"{collection}_runs"
        self._names = {"chunks": collection, "ledger": self.ledger_collection, "runs": self.runs_collection}
        self.dimension = dimension
        try:
            if dimension is None:  # an existing collection knows its own dimension (e.g. for `enclave status`)
                if not client.collection_exists(collection):
                    raise VectorIndexError(f"there is no collection {collection!r} yet: run `enclave ingest` first")
                params = client.get_collection(collection).config.params.vectors
                self.dimension = params[DENSE].size
            self._ensure_collections()
        except VectorIndexError:
            raise
        except Exception as exc:
            raise VectorIndexError(f"Qdrant server unavailable for collection {collection!r}: {exc}") from exc

    def _ensure_collections(self) -> None:
        if self.client.collection_exists(self.collection):
            config = self.client.get_collection(self.collection).config.params
            params = config.vectors
            size = params[DENSE].size if isinstance(params, dict) and DENSE in params else None
            if size != self.dimension:
                raise VectorIndexError(
                    f"collection {self.collection!r} holds '{DENSE}' vectors of size {size}, the embedder makes "
                    f"{self.dimension}: choose another index.collection to re-index"
                )
            if SPARSE not in (config.sparse_vectors or {}):
                raise VectorIndexError(
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
        for name in (self.ledger_collection, self.runs_collection):
            if not self.client.collection_exists(name):
                self.client.create_collection(name, vectors_config={})
                self.client.create_payload_index(name, "source", models.PayloadSchemaType.KEYWORD)

    def _name(self, store: str) -> str:
        return self._names[store]

    # -- primitives -----------------------------------------------------------------------------
    def _upsert(self, store: str, ids: list[str], vectors: list[dict], payloads: list[dict]) -> None:
        vectors = [{name: models.SparseVector(**v) if name == SPARSE else v for name, v in named.items()} for named in vectors]
        points = [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(ids, vectors, payloads)]
        self.client.upsert(self._name(store), points=points, wait=True)

    def _delete(self, store: str, filter_: Any) -> None:
        self.client.delete(self._name(store), points_selector=models.FilterSelector(filter=filter_), wait=True)

    def _delete_ids(self, store: str, ids: list[str]) -> None:
        self.client.delete(self._name(store), points_selector=models.PointIdsList(points=ids), wait=True)

    def _scroll(self, store: str, filter_: Any) -> Iterable[tuple[Any, dict]]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                self._name(store), scroll_filter=filter_, limit=_SCROLL_PAGE, offset=offset,
                with_payload=True, with_vectors=False,
            )
            for record in records:
                yield record.id, record.payload or {}
            if offset is None:
                return

    def _count(self, filter_: Any) -> int:
        return self.client.count(self.collection, count_filter=filter_, exact=True).count

    def _query(self, query: dict[str, Any], filter_: Any, limit: int) -> list[tuple[Any, float, dict]]:
        dense, sparse, fusion = query.get("dense"), query.get("sparse"), query.get("fusion")
        sparse = models.SparseVector(**sparse) if sparse is not None else None
        if dense is not None and sparse is not None:
            depth = int(fusion["prefetch"])
            response = self.client.query_points(
                self.collection,
                prefetch=[models.Prefetch(query=dense, using=DENSE, filter=filter_, limit=depth),
                          models.Prefetch(query=sparse, using=SPARSE, filter=filter_, limit=depth)],
                query=models.RrfQuery(rrf=models.Rrf(k=int(fusion["k"]), weights=[float(w) for w in fusion["weights"]])),
                query_filter=filter_, limit=limit, with_payload=True,
            )
        else:
            response = self.client.query_points(
                self.collection, query=dense if dense is not None else sparse, using=DENSE if dense is not None else SPARSE,
                query_filter=filter_, limit=limit, with_payload=True,
            )
        return [(p.id, p.score, p.payload or {}) for p in response.points]

    def _match(self, key: str, value: str | int) -> Any:
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    def _match_any(self, key: str, values: list[str]) -> Any:
        return models.FieldCondition(key=key, match=models.MatchAny(any=values))

    def _at_least(self, key: str, value: int) -> Any:
        return models.FieldCondition(key=key, range=models.Range(gte=value))

    def _between(self, key: str, start: str | None, end: str | None) -> Any:
        return models.FieldCondition(key=key, range=models.DatetimeRange(gte=start, lte=end))

    def _filter(self, must: list[Any]) -> Any:
        return models.Filter(must=must)

    def close(self) -> None:
        self.client.close()
