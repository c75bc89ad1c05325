"""SQuAD-format question answering datasets (Rajpurkar et al. 2016, 2018): each paragraph a document.

A SQuAD file is JSON: ``{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``. SQuAD 2.0 adds
unanswerable questions (``is_impossible: true``, no ``answers``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from enclave.connectors.beir import DatasetError
from enclave.contracts import Classification, SourceDocument


@dataclass(frozen=True)
class SquadQuestion:
    """One question of a SQuAD file: ``answers`` are the gold answer texts (empty when unanswerable);
    ``doc_id`` is the paragraph it was written about."""

    qid: str
    question: str
    answers: tuple[str, ...]
    answerable: bool
    doc_id: str


def is_squad_file(path: str | Path) -> bool:
    """Whether ``path`` is a JSON file shaped like SQuAD (a ``data`` list of articles with ``paragraphs``)."""
    file = Path(path)
    if not file.is_file() or file.suffix.lower() != ".json":
        return False
    with file.open("rb") as handle:
        head = handle.read(4096)
    return b'"data"' in head and (b'"paragraphs"' in head or b'"version"' in head)


class SquadConnector:
    """Each paragraph (``context``) of a SQuAD file as a Markdown document titled by its article.

    Usage::

        connector = SquadConnector("squad", "corpora/squad2-dev/dev-v2.0-normans-rhine.json")
        docs = list(connector.list_documents())      # doc ids "squad:Normans/0", "squad:Normans/1", ...
        connector.fetch(docs[0])                     # b"# Normans\\n\\nThe Normans (Norman: ..."
        connector.questions()                        # [SquadQuestion(qid, question, answers, answerable, doc_id)]

    The version is a hash of the paragraph, so an unchanged paragraph costs nothing on a re-run.
    Raises DatasetError for a file that is not SQuAD-shaped JSON.
    """

    def __init__(self, source: str, path: str | Path, groups: tuple[str, ...] = ("everyone",),
                 classification: str = Classification.PUBLIC) -> None:
        self.source = source
        self.file = Path(path)
        self.groups = tuple(groups)
        self.classification = classification

    @cached_property
    def _articles(self) -> list[dict]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{self.file} not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{self.file}: not JSON ({exc})") from None
        articles = data.get("data") if isinstance(data, dict) else None
        if not isinstance(articles, list) or not all(isinstance(a, dict) and isinstance(a.get("paragraphs"), list)
                                                     for a in articles):
            raise DatasetError(f"{self.file}: not a SQuAD file (expected data[].paragraphs[])")
        return articles

    def _paragraphs(self) -> Iterator[tuple[str, str, dict]]:
        """(doc id, article title, paragraph) for every paragraph, in file order."""
        for article in self._articles:
            title = str(article.get("title") or "untitled").replace("_", " ")
            for number, paragraph in enumerate(article["paragraphs"]):
                if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                    raise DatasetError(f"{self.file}: {title} paragraph {number} has no context")
                yield f"{self.source}:{title}/{number}", title, paragraph

    def list_documents(self) -> Iterator[SourceDocument]:
        for doc_id, title, paragraph in self._paragraphs():
            data = _markdown(title, paragraph["context"])
            yield SourceDocument(
                doc_id=doc_id, source=self.source, uri=f"{self.file.resolve().as_uri()}#{doc_id.split(':', 1)[1]}",
                title=title, version=hashlib.sha256(data).hexdigest()[:32], size=len(data), groups=self.groups,
                classification=self.classification, extension=".md",
            )

    @cached_property
    def _by_id(self) -> dict[str, tuple[str, dict]]:
        return {doc_id: (title, paragraph) for doc_id, title, paragraph in self._paragraphs()}

    def fetch(self, document: SourceDocument) -> bytes:
        """The paragraph as Markdown. Raises FileNotFoundError for a document the file does not hold."""
        if document.doc_id not in self._by_id:
            raise FileNotFoundError(f"{document.doc_id!r} is not in {self.file}")
        title, paragraph = self._by_id[document.doc_id]
        return _markdown(title, paragraph["context"])

    def questions(self) -> list[SquadQuestion]:
        """Every question, in file order. Raises DatasetError for a question without an id or text."""
        found = []
        for doc_id, _title, paragraph in self._paragraphs():
            for qa in paragraph.get("qas") or []:
                if not isinstance(qa, dict) or not qa.get("id") or not str(qa.get("question") or "").strip():
                    raise DatasetError(f"{self.file}: a question of {doc_id} has no id or text")
                answers = tuple(dict.fromkeys(str(a["text"]) for a in qa.get("answers") or [] if a.get("text")))
                answerable = not qa.get("is_impossible", False) and bool(answers)
                found.append(SquadQuestion(str(qa["id"]), str(qa["question"]).strip(), answers, answerable, doc_id))
        return found


def _markdown(title: str, context: str) -> bytes:
    return f"# {title}\n\n{context}".encode()
