"""connectors.squad: SQuAD 2.0 dev (Normans and Rhine) read as paragraphs and questions, and clear errors for
files that are not SQuAD."""

from __future__ import annotations

import json

import pytest

from enclave.connectors.beir import DatasetError
from enclave.connectors.squad import SquadConnector, is_squad_file


@pytest.fixture
def squad_file(corpora):
    return corpora / "squad2-dev" / "dev-v2.0-normans-rhine.json"


def test_paragraphs_and_questions_of_squad2_dev(squad_file):
    assert is_squad_file(squad_file)
    connector = SquadConnector("squad", squad_file)
    docs = list(connector.list_documents())
    questions = connector.questions()
    assert len(docs) == 83 and len({d.doc_id for d in docs}) == 83  # the counts the corpora README gives
    assert len(questions) == 706 and sum(not q.answerable for q in questions) == 320
    assert docs[0].doc_id == "squad:Normans/0" and docs[0].title == "Normans" and docs[0].classification == "public"
    first = connector.fetch(docs[0]).decode()
    assert first.startswith("# Normans\n\nThe Normans (Norman: Nourmands;")
    by_id = {q.qid: q for q in questions}
    assert by_id["56ddde6b9a695914005b9628"].answers == ("France",)  # four identical golds, kept once
    assert by_id["56ddde6b9a695914005b9628"].doc_id == "squad:Normans/0"
    impossible = by_id["5ad39d53604f3c001a3fe8d4"]
    assert not impossible.answerable and impossible.answers == ()  # plausible_answers are not golds
    assert all(q.answers for q in questions if q.answerable)
    # a paragraph's version is its content's hash: listing twice gives the same versions
    assert [d.version for d in docs] == [d.version for d in SquadConnector("squad", squad_file).list_documents()]


def test_files_that_are_not_squad(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [{"title": "x", "paragraphs": [', encoding="utf-8")
    with pytest.raises(DatasetError, match="not JSON"):
        list(SquadConnector("s", broken).list_documents())
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"version": "v2.0", "data": [{"title": "x"}]}), encoding="utf-8")
    with pytest.raises(DatasetError, match="not a SQuAD file"):
        list(SquadConnector("s", wrong).list_documents())
    no_id = tmp_path / "no-id.json"
    no_id.write_text(json.dumps({"version": "v2.0", "data": [{"title": "x", "paragraphs": [
        {"context": "Some text.", "qas": [{"question": "What?", "answers": []}]}]}]}), encoding="utf-8")
    with pytest.raises(DatasetError, match="no id or text"):
        SquadConnector("s", no_id).questions()
    assert not is_squad_file(tmp_path / "missing.json")
    with pytest.raises(DatasetError, match="not found"):
        list(SquadConnector("s", tmp_path / "missing.json").list_documents())
