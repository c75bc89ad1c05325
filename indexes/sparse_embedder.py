"""Sparse BM25 vectors for chunks and queries, by Qdrant's own BM25 tokenizer (``qdrant_edge.Bm25``).

The document side carries BM25's term-frequency part, ``tf · (k + 1) / (tf + k · (1 − b + b · dl / avg_len))``
(Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and Beyond"); the query
side gives each distinct term weight 1. The IDF part, ``ln(1 + (N − n + 0.5) / (n + 0.5))``, comes
from the collection at query time through Qdrant's IDF modifier on the ``sparse`` vector, so corpus
statistics stay exact as documents come and go. Term ids are hashes of the stemmed tokens, stable
across processes, machines and corpora: no vocabulary to keep.
"""

from __future__ import annotations

from collections.abc import Sequence

import qdrant_edge as qe

from enclave.indexes.index_backend import SparseVector


class Bm25Embedder:
    """Turns text into BM25 sparse vectors (Qdrant's tokenizer: lowercase, stopwords, Snowball stemmer).

    Usage::

        bm25 = Bm25Embedder()                          # English, k=1.2, b=0.75, avg_len=256
        chunks = bm25.embed(["Leave carries over.", "Passwords have 14 characters."])  # list[SparseVector]
        query = bm25.embed_query("how long must a password be")                        # weights 1.0

    ``language`` picks stopwords and stemmer (Qdrant's names, e.g. ``english``, ``norwegian``);
    ``k`` saturates term frequency; ``b`` in [0, 1] normalises by length against ``avg_len``, the
    expected chunk length in tokens. These shape the stored vectors: changing them needs a re-index.
    Raises ValueError for an unsupported language or parameters out of range.
    """

    def __init__(self, language: str = "english", k: float = 1.2, b: float = 0.75, avg_len: float = 256.0) -> None:
        self.language, self.k, self.b, self.avg_len = language, k, b, avg_len
        self._model = qe.Bm25(qe.Bm25Config(k=k, b=b, avg_len=avg_len, language=language))

    def embed(self, texts: Sequence[str]) -> list[SparseVector]:
        """One document-side vector per text, in order (empty for a text of only stopwords)."""
        return [_sparse(self._model.embed_document(text)) for text in texts]

    def embed_query(self, text: str) -> SparseVector:
        """The query-side vector of ``text``: each distinct term with weight 1.0."""
        return _sparse(self._model.embed_query(text))


def _sparse(vector: qe.SparseVector) -> SparseVector:
    return SparseVector(tuple(vector.indices), tuple(vector.values))
