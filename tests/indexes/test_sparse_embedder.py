"""indexes.sparse_embedder: Qdrant's BM25 tokenizer, the document-side TF weights, stable term ids."""

from __future__ import annotations

import subprocess
import sys

import pytest

from enclave.indexes.sparse_embedder import Bm25Embedder


def _weights(bm25: Bm25Embedder, text: str) -> dict[int, float]:
    vector = bm25.embed([text])[0]
    return dict(zip(vector.indices, vector.values))


def test_document_weights_follow_bm25s_term_frequency_part() -> None:
    bm25 = Bm25Embedder(k=1.2, b=0.75, avg_len=10.0)
    weights = _weights(bm25, "sensor sensor calibration")  # no stopwords: 3 tokens, tf 2 and 1
    term = {bm25.embed_query(word).indices[0]: word for word in ("sensor", "calibration")}
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 10.0)
    expected = {"sensor": 2 * 2.2 / (2 + norm), "calibration": 1 * 2.2 / (1 + norm)}
    assert {term[i]: w for i, w in weights.items()} == pytest.approx(expected, rel=1e-5)


def test_query_terms_weigh_one_each_and_match_the_documents_stems() -> None:
    bm25 = Bm25Embedder()
    query = bm25.embed_query("Calibrating the sensors, calibrated sensor")
    assert set(query.values) == {1.0}
    assert len(query.indices) == 2  # calibr-, sensor: stopwords dropped, stems merged, terms unique
    assert set(query.indices) == set(bm25.embed(["sensor calibration"])[0].indices)


def test_stopwords_only_gives_an_empty_vector() -> None:
    bm25 = Bm25Embedder()
    assert bm25.embed(["The and of, to it!"])[0].indices == ()
    assert bm25.embed_query("").indices == ()


def test_term_ids_are_stable_across_processes_and_instances() -> None:
    # a Dask worker builds its own embedder from the settings: its term ids must be this process's
    text = "Warranty claims for the HX-400 pressure sensor"
    here = Bm25Embedder().embed([text])[0]
    assert Bm25Embedder().embed([text])[0] == here
    code = ("from enclave.indexes.sparse_embedder import Bm25Embedder; "
            f"v = Bm25Embedder().embed([{text!r}])[0]; print(list(v.indices))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(list(here.indices))


def test_language_changes_stemming_and_bad_parameters_are_refused() -> None:
    english, norwegian = Bm25Embedder(), Bm25Embedder(language="norwegian")
    # Norwegian stopwords: "og" (and) is dropped; English keeps it as a term
    assert len(norwegian.embed_query("ferie og permisjon").indices) == 2
    assert len(english.embed_query("ferie og permisjon").indices) == 3
    with pytest.raises(ValueError, match="language"):
        Bm25Embedder(language="klingon")
    with pytest.raises(ValueError):
        Bm25Embedder(b=1.5)
