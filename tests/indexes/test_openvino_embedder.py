"""indexes.openvino_embedder: all-MiniLM-L6-v2's transformer on OpenVINO (fp32), the real model, against torch."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from enclave.indexes import openvino_embedder
from enclave.indexes.embedder import EmbedderError
from enclave.indexes.embedder_contract import Embedder
from enclave.indexes.openvino_embedder import IR_BIN, IR_XML, OpenVinoEmbedder
from enclave.settings import EmbedderSettings, Settings

TEXTS = [
    "Staff get 25 days of paid leave a year.",
    "The server listens on port 8000.",
    "x",
    "",
    "  leading and trailing whitespace\t\n",
    "Ünïcödé, 東京 and emoji 🙂 in one line.",
    # far past 256 word pieces: truncated to max_seq_length by both backends
    "The employee handbook explains parental leave, sick days and overtime rules in detail. " * 60,
]


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def ov(ov_cache) -> OpenVinoEmbedder:
    """Converted once for the module, into its own cache folder (never the user's ~/.cache)."""
    embedder = OpenVinoEmbedder(cache_dir=ov_cache)
    _ = embedder.compiled
    return embedder


def _fresh(cache_dir: Path, monkeypatch) -> OpenVinoEmbedder:
    """An embedder that must load from the disk cache: the process's compiled models are forgotten for the test."""
    monkeypatch.setattr(openvino_embedder, "_COMPILED", {})
    return OpenVinoEmbedder(cache_dir=cache_dir)


def test_it_is_an_embedder(ov, embedder) -> None:
    assert isinstance(ov, Embedder)
    assert ov.model_name == embedder.model_name
    assert ov.dimension == 384
    assert ov.max_tokens == embedder.max_tokens == 254
    assert ov.count_tokens("hello world") == 2
    assert ov.split_by_tokens("one two three four", 2) == embedder.split_by_tokens("one two three four", 2)


def test_vectors_match_torch(ov, embedder) -> None:
    assert ov.count_tokens(TEXTS[-1]) > 2 * ov.max_tokens  # the long one is truncated
    got, want = ov.embed(TEXTS), embedder.embed(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    cosines = np.sum(got * want, axis=1)
    assert cosines.min() > 1 - 1e-5, cosines
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(ov.embed_query(TEXTS), got)  # MiniLM: no query prefix, as with torch


def test_shapes_dtype_and_norm(ov) -> None:
    vectors = ov.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for empty in (ov.embed([]), ov.embed_query([])):
        assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_batches_and_order_give_the_vectors_one_text_gives(ov) -> None:
    texts = [f"Paragraph {i} of the handbook, {'with more words ' * (i % 4)}about leave." for i in range(11)]
    together = ov.embed(texts)  # batches of 8 and 3, sorted by length inside
    alone = np.concatenate([ov.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_threads_share_it_safely(ov) -> None:
    texts = TEXTS[:-1]
    want = ov.embed(texts)
    results, errors = [], []

    def work() -> None:
        try:
            for _ in range(3):
                ov.count_tokens(TEXTS[-1])
                results.append(ov.embed(texts))
        except Exception as exc:  # pragma: no cover - the failure is reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results:
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_it_pickles_without_its_models(ov) -> None:
    clone = pickle.loads(pickle.dumps(ov))
    assert clone._model is None and clone._compiled is None and clone.cache_dir == ov.cache_dir
    np.testing.assert_allclose(clone.embed(TEXTS[:2]), ov.embed(TEXTS[:2]), atol=1e-6)


def test_the_ir_is_cached_under_the_weights_hash_and_reused(ov, ov_cache, monkeypatch) -> None:
    xml = ov.ir_path
    assert xml.parent.parent == ov_cache and len(xml.parent.name) == 64  # <cache_dir>/<sha256>/openvino_model.xml
    assert xml.name == IR_XML and (xml.parent / IR_BIN).stat().st_size > 80_000_000  # fp32: ~90 MB, not fp16's 45
    assert not [p for p in ov_cache.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    written = xml.stat().st_mtime_ns
    conversions = openvino_embedder._conversions

    second = _fresh(ov_cache, monkeypatch)
    np.testing.assert_allclose(second.embed(TEXTS[:3]), ov.embed(TEXTS[:3]), atol=1e-6)
    assert second.ir_path == xml
    assert openvino_embedder._conversions == conversions  # read, not converted
    assert xml.stat().st_mtime_ns == written


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "wrong weights", "missing bin"])
def test_a_broken_cache_is_rebuilt(ov, ov_cache, embedder, tmp_path, monkeypatch, damage) -> None:
    folder = tmp_path / ov.ir_path.parent.name
    folder.mkdir()
    for name in (IR_XML, IR_BIN):
        (folder / name).write_bytes((ov.ir_path.parent / name).read_bytes())
    bin_file = folder / IR_BIN
    if damage == "truncated":
        bin_file.write_bytes(bin_file.read_bytes()[: 1 << 20])
    elif damage == "wrong weights":  # readable and compilable, the same size, other numbers: only the probe sees it
        data = np.frombuffer(bin_file.read_bytes(), dtype=np.uint8).copy()
        data[1 << 20 :: 4096] ^= 0x40
        bin_file.write_bytes(data.tobytes())
    else:
        bin_file.unlink()
    conversions = openvino_embedder._conversions

    rebuilt = _fresh(tmp_path, monkeypatch)
    np.testing.assert_allclose(rebuilt.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)
    assert openvino_embedder._conversions == conversions + 1
    assert (folder / IR_BIN).read_bytes() == (ov.ir_path.parent / IR_BIN).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # the broken copy is gone


@pytest.mark.slow
def test_an_unwritable_cache_still_embeds(ov, embedder, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    unwritable = _fresh(blocker, monkeypatch)
    np.testing.assert_allclose(unwritable.embed(TEXTS[:2]), embedder.embed(TEXTS[:2]), atol=1e-5)


def test_cpu_only() -> None:
    with pytest.raises(EmbedderError, match="CPU only"):
        OpenVinoEmbedder(device="cuda")


@pytest.mark.slow
def test_openvino_sends_no_telemetry(tmp_path) -> None:
    """In a fresh process with its own HOME: a conversion and an embedding reach no network and leave no
    ~/intel client id (without the embedder's guard, a bare ``import openvino`` does both)."""
    script = r"""
import json, os, sys, urllib.request
attempts = []
def refuse(request, *args, **kwargs):
    attempts.append(getattr(request, "full_url", str(request)))
    raise OSError("no network in this test")
urllib.request.urlopen = refuse
from enclave.indexes.openvino_embedder import OpenVinoEmbedder
OpenVinoEmbedder(cache_dir=sys.argv[1]).embed(["hello"])
import openvino.tools.ovc.convert_impl as convert_impl, openvino.tools.ovc.telemetry_utils as telemetry_utils
print(json.dumps({"attempts": attempts, "tm": [telemetry_utils.tm.__name__, convert_impl.tm.__name__],
                  "telemetry_imported": "openvino_telemetry" in sys.modules}))
"""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cache")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"attempts": [], "tm": ["openvino.tools.ovc.telemetry_stub"] * 2, "telemetry_imported": False}
    assert not (home / "intel").exists()
    # the default cache folder follows HOME (the test gave its own cache_dir, so nothing went there either)
    assert not (home / ".cache" / "enclave").exists()


def test_settings_build_it() -> None:
    from enclave.flows.components import build_embedder

    built = build_embedder(Settings(embedder=EmbedderSettings(backend="openvino", batch_size=16)))
    assert type(built) is OpenVinoEmbedder
    assert built.model_name == "sentence-transformers/all-MiniLM-L6-v2" and built.batch_size == 16
    assert built._model is None and built._compiled is None  # nothing loaded yet
    assert EmbedderSettings().backend == "openvino"  # the default on the CPU
    assert EmbedderSettings(device="cuda").backend == "sentence-transformers"  # torch where OpenVINO does not run
    with pytest.raises(ValueError, match="CPU only"):
        EmbedderSettings(backend="openvino", device="cuda")
