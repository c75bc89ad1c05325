"""BEIR-format datasets (Thakur et al. 2021): ``corpus.jsonl`` as documents, plus their queries and qrels.

A BEIR folder holds ``corpus.jsonl`` (one JSON object per line: ``_id``, ``title``, ``text``),
``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``,
``score``, with a header line).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from enclave.contracts import Classification, SourceDocument


class DatasetError(ValueError):
    """A dataset file is missing or malformed (the message names the file and line)."""


class BeirCorpusConnector:
    """Each corpus record of a BEIR dataset as a Markdown document: ``# title`` then the text.

    Usage::

        connector = BeirCorpusConnector("scifact", "corpora/scifact")
        docs = list(connector.list_documents())    # doc ids "scifact:<_id>"
        connector.fetch(docs[0])                   # b"# <title>\n\n<text>"
        BeirCorpusConnector.corpus_id(docs[0].doc_id)   # "4983"

    The version is a hash of the record, so an unchanged record costs nothing on a re-run. Listing
    notes where each record starts in ``corpus.jsonl``; ``fetch`` reads that line again. Raises
    DatasetError for a missing corpus.jsonl or a line that is not a JSON object with an ``_id``.
    """

    def __init__(self, source: str, path: str | Path, groups: tuple[str, ...] = ("everyone",),
                 classification: str = Classification.PUBLIC) -> None:
        self.source = source
        self.root = Path(path)
        self.groups = tuple(groups)
        self.classification = classification
        self._offsets: dict[str, int] = {}  # doc id -> byte offset of its line in corpus.jsonl

    def list_documents(self) -> Iterator[SourceDocument]:
        corpus = self.root / "corpus.jsonl"
        for number, offset, record in _jsonl(corpus):
            data = _markdown(record)
            doc_id = f"{self.source}:{record['_id']}"
            self._offsets[doc_id] = offset
            yield SourceDocument(
                doc_id=doc_id,
                source=self.source,
                uri=f"{corpus.resolve().as_uri()}#L{number}",
                title=str(record.get("title") or "").strip() or str(record["_id"]),
                version=hashlib.sha256(data).hexdigest()[:32],
                size=len(data),
                groups=self.groups,
                classification=self.classification,
                extension=".md",
            )

    def fetch(self, document: SourceDocument) -> bytes:
        """The record's Markdown. Raises FileNotFoundError for a document the corpus does not hold."""
        if document.doc_id not in self._offsets:
            for _ in self.list_documents():  # a connector that has not listed yet (e.g. just unpickled)
                pass
        if document.doc_id not in self._offsets:
            raise FileNotFoundError(f"{document.doc_id!r} is not in {self.root / 'corpus.jsonl'}")
        with (self.root / "corpus.jsonl").open("rb") as handle:
            handle.seek(self._offsets[document.doc_id])
            return _markdown(json.loads(handle.readline()))

    @staticmethod
    def corpus_id(doc_id: str) -> str:
        """The corpus ``_id`` of a document this connector made (its doc id without the source)."""
        return doc_id.split(":", 1)[1]


def _markdown(record: dict) -> bytes:
    title, text = str(record.get("title") or "").strip(), str(record.get("text") or "")
    return (f"# {title}\n\n{text}" if title else text).encode("utf-8")


def read_queries(path: str | Path) -> dict[str, str]:
    """``queries.jsonl`` of a BEIR folder: {query id: text}. Raises DatasetError."""
    return {str(record["_id"]): str(record.get("text", "")) for _, _, record in _jsonl(Path(path) / "queries.jsonl")}


def read_qrels(path: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """``qrels/<split>.tsv`` of a BEIR folder: {query id: {corpus id: relevance}}. Raises DatasetError."""
    file = Path(path) / "qrels" / f"{split}.tsv"
    if not file.is_file():
        raise DatasetError(f"{file} not found: a BEIR dataset has qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with file.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(rows, start=1):
            if number == 1 and row and not row[-1].lstrip("-").isdigit():
                continue  # the header line
            if not row:
                continue
            if len(row) < 3 or not row[-1].lstrip("-").isdigit():
                raise DatasetError(f"{file}:{number}: expected query-id, corpus-id, score; got {row!r}")
            qrels.setdefault(row[0], {})[row[-2]] = int(row[-1])
    return qrels


def is_beir_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a BEIR corpus and queries."""
    root = Path(path)
    return (root / "corpus.jsonl").is_file() and (root / "queries.jsonl").is_file()


def _jsonl(file: Path) -> Iterator[tuple[int, int, dict]]:
    """(line number, byte offset of the line, record) per non-blank line of a JSON Lines file."""
    if not file.is_file():
        raise DatasetError(f"{file} not found")
    with file.open("rb") as handle:
        offset = 0
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{file}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "_id" not in record:
                raise DatasetError(f"{file}:{number}: expected a JSON object with an _id")
            yield number, start, record
