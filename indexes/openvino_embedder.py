"""Dense embeddings from a sentence-transformers model whose transformer runs on OpenVINO's CPU runtime (fp32)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from enclave.indexes.embedder import _MODEL_LOCK, DenseEmbedder, EmbedderError, resolve_model_path

log = logging.getLogger(__name__)

#: the IR's file names inside ``<cache_dir>/<sha256 of the weights>/``
IR_XML, IR_BIN = "openvino_model.xml", "openvino_model.bin"
#: weights files looked for in a model folder, in this order; the first found is hashed for the cache key
_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
#: the load check: OpenVINO's vector for this text against torch's; a cached IR below it is rebuilt
_PROBE_TEXT = "Enclave checks that OpenVINO embeds this sentence as torch does."
_PROBE_MIN_COSINE = 0.9999


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/enclave/openvino``, or ``~/.cache/enclave/openvino`` when XDG_CACHE_HOME is unset."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "enclave" / "openvino"


class OpenVinoEmbedder(DenseEmbedder):
    """A sentence-transformers model (mean pooling) whose transformer runs on OpenVINO, fp32, on the CPU.

    Usage::

        embedder = OpenVinoEmbedder()                        # all-MiniLM-L6-v2, offline; converted once, cached
        vectors = embedder.embed(["first chunk", "second chunk"])   # (2, 384) float32, L2-normalised
        q = embedder.embed_query(["how many leave days?"])   # (1, 384); for MiniLM the same as embed
        scores = vectors @ q[0]                              # cosine similarities, shape (2,)
        embedder.count_tokens("hello world")                 # 2, by the model's own tokenizer
        embedder.max_tokens                                  # 254 = max_seq_length 256 - [CLS] - [SEP]

    It implements [Embedder][enclave.indexes.embedder_contract.Embedder] and gives the vectors
    [DenseEmbedder][enclave.indexes.embedder.DenseEmbedder] gives (cosine 1 - 1e-6 or closer), faster on CPU.
    The sentence-transformers model still loads (``model``): ``dimension``, ``max_tokens``, ``count_tokens``,
    ``split_by_tokens`` and the tokenizer come from it. ``embed``/``embed_query`` tokenise with that tokenizer
    (padding to the batch's longest text, truncation to ``max_seq_length``), run the transformer's
    ``last_hidden_state`` (batch, tokens, d) through OpenVINO, average it over the attention mask and L2-normalise:
    the model's own Transformer -> Pooling(mean) -> Normalize pipeline. Texts are batched ``batch_size`` at a
    time, longest first (as sentence-transformers does, so batches pad little); rows come back in input order.

    Only models of that shape are taken: the first use raises EmbedderError for another pooling (CLS, max,
    ...), extra modules (Dense, ...) or a default prompt, and for a ``device`` other than cpu (at construction).
    Inference is fp32 (``INFERENCE_PRECISION_HINT`` f32: on CPUs with bf16 or AMX OpenVINO would otherwise
    compute in bf16).

    The first use converts the HF transformer (``model[0].auto_model``) with ``openvino.convert_model``
    (seconds; dynamic batch and sequence dimensions) and saves the IR, fp32, as ``openvino_model.xml`` and
    ``.bin`` under ``cache_dir/<sha256 of the model's weights file>/`` (default ``cache_dir``:
    ``~/.cache/enclave/openvino``, or under ``$XDG_CACHE_HOME``; the weights file is the model folder's
    ``model.safetensors`` or ``pytorch_model.bin``, else the hash is of the loaded weights themselves). Later
    loads, in any process, read the IR instead. Each load embeds a probe sentence with both OpenVINO and torch:
    a cached IR that cannot be read or compiled, or gives another vector (cosine under 0.9999), is rebuilt; a
    freshly converted one that fails raises EmbedderError. The IR is written to a temporary folder and renamed
    into place, so a crash or a concurrent process never leaves half an IR. A cache folder that cannot be
    written is logged as a warning and the converted model is used from memory.

    OpenVINO's usage telemetry is kept off: ``import openvino`` (through its model converter, ovc) would
    otherwise send events to Google Analytics unless its consent file says no (an opt-out, not an opt-in).
    This module imports openvino with the ``openvino_telemetry`` package hidden, so ovc takes its own no-op
    stub: no event, no client id file under ``~/intel``. It cannot undo an import of openvino done earlier
    in the process by other code; it still switches ovc's later conversion events to the stub.

    One model pass at a time per process: tokenising and inference hold the lock ``DenseEmbedder`` holds
    (a fast tokenizer is not thread-safe, and OpenVINO uses every core). The compiled model is shared by
    every instance in the process with the same model, device and cache folder. ``batch_size`` is in texts.
    """

    def __init__(self, model: str = "sentence-transformers/all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 8,
                 cache_dir: str | Path | None = None) -> None:
        if device != "cpu":
            raise EmbedderError(f"the openvino backend runs on the CPU only, not {device!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        super().__init__(model, device=device, batch_size=batch_size)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self._compiled: _Compiled | None = None

    @property
    def compiled(self) -> _Compiled:
        """The OpenVINO model, compiled for the CPU (converted or read from the cache on first access)."""
        if self._compiled is None:
            st_model = self.model
            with self._lock:
                if self._compiled is None:
                    self._compiled = _load_shared(self.model_name, st_model, self.cache_dir)
        return self._compiled

    @property
    def ir_path(self) -> Path:
        """The cached IR's ``.xml`` file (its ``.bin`` lies beside it). Hashes the weights, which loads the model."""
        return self.compiled.xml

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dimension) float32, L2-normalised (cosine = dot product)."""
        compiled = self.compiled
        if not texts:
            return np.zeros((0, compiled.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), compiled.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = compiled.encode([texts[i] for i in idx])
        return out

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Embed queries; (len(texts), dimension) float32, L2-normalised; the same as ``embed`` (no prefix)."""
        return self.embed(texts)

    def __getstate__(self) -> dict:
        """Pickle without the models and lock (a Dask worker loads its own, from the cache)."""
        state = self.__dict__.copy()
        state["_model"], state["_compiled"], state["_lock"] = None, None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _Compiled:
    """A compiled OpenVINO model plus the tokenizer settings that feed it."""

    def __init__(self, compiled_model: Any, st_model: Any, xml: Path) -> None:
        self.xml = xml
        self._model = compiled_model
        self._tokenizer = st_model.tokenizer
        self._max_length = int(st_model.max_seq_length)
        self._inputs = [i.get_any_name() for i in compiled_model.inputs]
        self._output = next((o for o in compiled_model.outputs if "last_hidden_state" in o.get_names()),
                            compiled_model.outputs[0])
        self._request = compiled_model.create_infer_request()
        self.dim = int(self._output.get_partial_shape()[2].get_length())

    def encode(self, texts: list[str]) -> np.ndarray:
        """One batch: (len(texts), dim) float32, mean-pooled over the attention mask, L2-normalised."""
        with _MODEL_LOCK:
            encoded = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length,
                                      return_tensors="np", verbose=False)
            feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self._inputs}
            try:
                hidden = self._request.infer(feed)[self._output]
            except Exception as exc:
                raise EmbedderError(f"OpenVINO inference failed: {exc}") from exc
            hidden = np.array(hidden, dtype=np.float32)  # a copy: the request reuses its output buffer
        mask = np.asarray(encoded["attention_mask"], dtype=np.float32)[:, :, None]
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


_COMPILED: dict[tuple[str, str], _Compiled] = {}
_COMPILED_LOCK = threading.Lock()
#: conversions done by this process (the IR cache's tests read it)
_conversions = 0


def _load_shared(model_name: str, st_model: Any, cache_dir: Path) -> _Compiled:
    """The process's one compiled model for (model, cache folder): from the cached IR, else converted and cached."""
    key = (model_name, str(cache_dir.resolve()))
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            _COMPILED[key] = _load(model_name, st_model, cache_dir)
        return _COMPILED[key]


def _load(model_name: str, st_model: Any, cache_dir: Path) -> _Compiled:
    _check_pipeline(model_name, st_model)
    ov = _import_openvino()
    core = ov.Core()
    folder = cache_dir / _weights_sha256(model_name, st_model)
    xml = folder / IR_XML
    if xml.is_file() and (folder / IR_BIN).is_file():
        try:
            compiled = _Compiled(_compile(core, core.read_model(str(xml))), st_model, xml)
            _probe(compiled, st_model)
            return compiled
        except Exception as exc:  # unreadable, uncompilable or wrong: rebuild it
            log.warning("the cached OpenVINO IR %s is unusable (%s); converting the model again", xml, exc)
    ov_model = _convert(ov, st_model)
    try:
        _save(ov, ov_model, folder)
    except OSError as exc:
        log.warning("could not cache the OpenVINO IR in %s (%s); using it from memory", folder, exc)
    try:
        compiled = _Compiled(_compile(core, ov_model), st_model, xml)
        _probe(compiled, st_model)
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"OpenVINO could not compile {model_name!r}: {exc}") from exc
    return compiled


def _check_pipeline(model_name: str, st_model: Any) -> None:
    """Raise EmbedderError unless the model is Transformer -> Pooling(mean only) [-> Normalize], with no default prompt."""
    modules = list(st_model)
    kinds = [type(m).__name__ for m in modules]  # by name: the classes' modules moved in sentence-transformers 6
    ok = kinds[:2] == ["Transformer", "Pooling"] and kinds[2:] in ([], ["Normalize"])
    if ok:
        pooling = modules[1].get_config_dict()
        if "pooling_mode" in pooling:  # sentence-transformers 6: {"pooling_mode": "mean", ...}
            ok = pooling["pooling_mode"] in ("mean", ["mean"], ("mean",))
        else:  # before: one flag per mode
            ok = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v] == ["pooling_mode_mean_tokens"]
    if not ok:
        raise EmbedderError(f"the openvino backend runs Transformer -> Pooling(mean) [-> Normalize] models; "
                            f"{model_name!r} is {' -> '.join(kinds)} (use embedder.backend sentence-transformers)")
    if getattr(st_model, "default_prompt_name", None):
        raise EmbedderError(f"the openvino backend adds no prompt; {model_name!r} has default prompt "
                            f"{st_model.default_prompt_name!r} (use embedder.backend sentence-transformers)")


def _import_openvino() -> Any:
    """``openvino``, imported with its telemetry off: ovc, which ``import openvino`` loads, binds the no-op stub."""
    fresh = "openvino" not in sys.modules
    hidden = ("openvino_telemetry", "openvino_telemetry.backend")
    saved = {name: sys.modules.get(name) for name in hidden} if fresh else {}
    for name in saved:
        sys.modules[name] = None  # type: ignore[assignment]  # an ImportError: ovc falls back to its stub
    try:
        import openvino as ov
    except ImportError as exc:
        raise EmbedderError("the openvino backend needs the openvino package (pip install openvino==2026.4.1)") from exc
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    try:  # openvino imported before us, by other code: its conversion events go to the stub from now on
        from openvino.tools.ovc import telemetry_stub
    except ImportError:  # pragma: no cover - no ovc, so no telemetry either
        return ov
    for name, module in list(sys.modules.items()):
        if name.startswith("openvino.tools.ovc") and getattr(module, "tm", telemetry_stub) is not telemetry_stub:
            module.tm = telemetry_stub
    return ov


def _weights_sha256(model_name: str, st_model: Any) -> str:
    """sha256 (hex) of the model folder's weights file; of the loaded weights when there is no such file."""
    digest = hashlib.sha256()
    folder = Path(resolve_model_path(model_name))
    weights = next((folder / f for f in _WEIGHTS_FILES if (folder / f).is_file()), None)
    if weights is not None:
        with open(weights, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()
    import torch

    for name, tensor in st_model[0].auto_model.state_dict().items():  # a hub id from the HF cache
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _convert(ov: Any, st_model: Any) -> Any:
    """The HF transformer as an OpenVINO model with dynamic batch and sequence dimensions."""
    global _conversions
    import torch

    transformer = st_model[0].auto_model
    with _MODEL_LOCK:
        example = st_model.tokenizer(["an example input", "two"], padding=True, return_tensors="pt")
    example = {k: v for k, v in example.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    was_training = transformer.training
    transformer.eval()
    try:  # tracing warns that shape checks become constants: the sequence dimensions are made dynamic below
        with _MODEL_LOCK, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            ov_model = ov.convert_model(transformer, example_input=example)
    except Exception as exc:
        raise EmbedderError(f"OpenVINO could not convert the model: {exc}") from exc
    finally:
        transformer.train(was_training)
    ov_model.reshape({port.get_any_name(): ov.PartialShape([-1, -1]) for port in ov_model.inputs})
    _conversions += 1
    return ov_model


def _save(ov: Any, ov_model: Any, folder: Path) -> None:
    """Write the IR (fp32) to a temporary folder beside ``folder``, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    try:
        ov.save_model(ov_model, str(tmp / IR_XML), compress_to_fp16=False)
        if folder.exists():  # a broken IR: move it aside first (a rename replaces only an empty folder)
            stale = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.stale"
            try:
                folder.rename(stale)
            except FileNotFoundError:
                pass  # another process moved it first
            else:
                shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / IR_XML).is_file():  # not another process's fresh IR in the way: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compile(core: Any, ov_model: Any) -> Any:
    return core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})


def _probe(compiled: _Compiled, st_model: Any) -> None:
    """Raise EmbedderError unless OpenVINO embeds the probe text as torch does."""
    with _MODEL_LOCK:
        reference = st_model.encode([_PROBE_TEXT], normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
    cosine = float(np.dot(compiled.encode([_PROBE_TEXT])[0], np.asarray(reference, dtype=np.float32)[0]))
    if not cosine >= _PROBE_MIN_COSINE:
        raise EmbedderError(f"OpenVINO's vector differs from torch's (cosine {cosine:.6f} < {_PROBE_MIN_COSINE})")
