"""The data that crosses Enclave's stages, and the contracts a stage keeps with the next.

Everything a connector, an index, a generator or a flow hands to another stage is one of these typed
values (frozen dataclasses and ``StrEnum`` labels), and every component a developer may plug in meets
one of the two ``typing.Protocol``s here: [Connector][enclave.contracts.Connector] (where documents
come from) and [Generator][enclave.contracts.Generator] (what writes an answer). This module imports
no stage, so every stage may import it.

Usage::

    from enclave.contracts import Connector, SourceDocument, Classification

    class WikiConnector:                     # meets Connector: no base class needed
        source = "wiki"

        def list_documents(self):
            yield SourceDocument(doc_id="wiki:onboarding", source="wiki", uri="https://wiki/onboarding",
                                 title="Onboarding", version="rev-812", size=5120, groups=("staff",),
                                 classification=Classification.INTERNAL, extension=".html")

        def fetch(self, document):
            return download(document.uri)    # bytes

The flow of data: a [Connector][enclave.contracts.Connector] lists
[SourceDocument][enclave.contracts.SourceDocument]s and fetches their bytes; the parser and chunker turn
them into [Chunk][enclave.contracts.Chunk]s that are embedded and stored; retrieval returns
[ScoredChunk][enclave.contracts.ScoredChunk]s; a [Generator][enclave.contracts.Generator] streams an
answer to a [GenerationRequest][enclave.contracts.GenerationRequest]; the answer path returns an
[Answer][enclave.contracts.Answer] with its [Citation][enclave.contracts.Citation]s and the route taken
([Attempt][enclave.contracts.Attempt]s).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Answer", "Attempt", "AttemptOutcome", "Chunk", "Citation", "Classification", "Connector", "DocumentStatus",
    "Generation", "GenerationRequest", "Generator", "GeneratorUnavailable", "Locality", "Passage", "ScoredChunk",
    "SourceDocument", "SourceUnavailable", "StatefulConnector", "SyncOutcome", "Usage", "point_id",
]


# -- labels -------------------------------------------------------------------------------------------------------------

class Classification(StrEnum):
    """How sensitive a document is, in increasing order: the egress policy compares them by
    [rank][enclave.contracts.Classification.rank]."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @classmethod
    def rank(cls, label: str | None) -> int:
        """0 for ``public`` up to 3 for ``restricted``; a missing or unknown label ranks as restricted
        (fail closed)."""
        try:
            return list(cls).index(cls(label))
        except ValueError:
            return len(cls) - 1


class Locality(StrEnum):
    """Where a generator runs: ``local`` (on the organisation's own hardware) or ``external`` (a third
    party's API, which receives only what the egress policy lets out)."""

    LOCAL = "local"
    EXTERNAL = "external"


class DocumentStatus(StrEnum):
    """A document's state in the sync ledger. ``pending`` is written before a new document's first
    points, so a crash before its final entry leaves a record of them (the next run redoes it)."""

    INDEXED = "indexed"
    SKIPPED = "skipped"
    FAILED = "failed"
    PENDING = "pending"


class SyncOutcome(StrEnum):
    """What one ingest run did with one document. ``acl_updated``: the content is unchanged but its
    groups or classification changed, so only its chunks' payload was rewritten (no fetch, no
    embedding)."""

    INDEXED = "indexed"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ACL_UPDATED = "acl_updated"
    SKIPPED = "skipped"
    FAILED = "failed"
    DELETED = "deleted"


class AttemptOutcome(StrEnum):
    """How one generator on the route fared: it ``answered``, ``failed`` (refused connection, timeout,
    5xx, 429, unknown model, broken stream), was ``skipped`` (its circuit breaker is open) or was
    ``not_sent`` the request (the egress policy kept everything it would need local)."""

    ANSWERED = "answered"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_SENT = "not_sent"


# -- documents and chunks -----------------------------------------------------------------------------------------------

#: Namespace of Enclave's point ids: ``uuid5(POINT_NAMESPACE, f"{doc_id}#{chunk number}")``.
POINT_NAMESPACE = uuid.UUID("5b0f7e3c-2d1a-5c55-9a43-6c1e0e7d4a10")


def point_id(doc_id: str, chunk: int) -> str:
    """The deterministic point id of chunk number ``chunk`` of document ``doc_id`` (UUIDv5, as str):
    a re-run overwrites a chunk instead of duplicating it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}#{chunk}"))


@dataclass(frozen=True)
class SourceDocument:
    """One item a [Connector][enclave.contracts.Connector] lists, before it is fetched or parsed.

    Usage::

        doc = SourceDocument(doc_id="handbook:leave.md", source="handbook", uri="file:///srv/leave.md",
                             title="leave.md", version="1700000000000000000-2048", size=2048,
                             groups=("everyone",), classification=Classification.INTERNAL, extension=".md")
        data = connector.fetch(doc)

    ``doc_id`` is stable across runs and unique across sources (it names the item, not its content:
    ``"<source>:<the item's name in the source>"``); ``version`` changes whenever the item may have
    changed (mtime+size, an etag, a hash), so an unchanged version means no fetch is needed. ``size``
    is in bytes. ``groups`` is the item's ACL: the groups allowed to see it. ``extension`` is the file
    type with its dot (``.pdf``); ``modified`` the item's last modification, ISO 8601 UTC, or ""
    where the source does not know it.
    """

    doc_id: str
    source: str
    uri: str
    title: str
    version: str
    size: int
    groups: tuple[str, ...]
    classification: str
    extension: str = ""
    modified: str = ""

    @staticmethod
    def content_hash(data: bytes) -> str:
        """SHA-256 hex digest of the raw bytes: the identity of the content, whatever its version."""
        return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One piece of a parsed document, as it is embedded and stored (a Qdrant point's payload).

    Usage::

        chunk = chunks[0]                  # from MarkdownChunker.run(document)
        chunk.id == point_id(chunk.doc_id, chunk.chunk)
        chunk.section                      # "Handbook > Leave > Carry-over"
        chunk.payload(ingested_at="2026-11-28T10:00:00+00:00")   # the point's payload

    ``chunk`` numbers the document's chunks from 0; ``section`` is the Markdown heading path;
    ``doc_type`` the file type without the dot (``pdf``); ``modified_at`` ISO 8601 or ""; the rest are
    the document's identity, ACL (``groups``), label and content hash. ``header`` is the contextual
    chunk header (the document title and section path) embedded before ``text`` but neither stored
    nor cited: see [embedding_text][enclave.contracts.Chunk.embedding_text].
    """

    id: str
    doc_id: str
    chunk: int
    text: str
    section: str
    source: str
    title: str
    uri: str
    doc_type: str
    modified_at: str
    groups: tuple[str, ...]
    classification: str
    content_hash: str
    header: str = ""

    @property
    def embedding_text(self) -> str:
        """What the dense and BM25 embedders see: ``header``, a blank line, then ``text`` (``text``
        alone when there is no header)."""
        return f"{self.header}\n\n{self.text}" if self.header else self.text

    def payload(self, ingested_at: str) -> dict[str, Any]:
        """The stored payload: ``text, doc_id, source, title, section, uri, doc_type, modified_at,
        groups, classification, content_hash, chunk, ingested_at`` (``modified_at`` None when unknown)."""
        return {
            "text": self.text, "doc_id": self.doc_id, "source": self.source, "title": self.title,
            "section": self.section, "uri": self.uri, "doc_type": self.doc_type,
            "modified_at": self.modified_at or None, "groups": list(self.groups),
            "classification": str(self.classification), "content_hash": self.content_hash, "chunk": self.chunk,
            "ingested_at": ingested_at,
        }


@dataclass(frozen=True)
class ScoredChunk:
    """One retrieved chunk, best first within its search. ``score`` depends on the retrieval mode:
    cosine similarity in [-1, 1] (dense), a BM25 score >= 0 (sparse) or a fused score (hybrid: DBSF, in [0, 2];
    or RRF, in (0, 2/k])
    (hybrid); within one search, higher is better."""

    id: str
    score: float
    text: str
    doc_id: str
    source: str
    title: str
    uri: str
    section: str
    chunk: int
    classification: str
    groups: tuple[str, ...]

    @classmethod
    def from_payload(cls, point: Any, score: float, payload: dict[str, Any]) -> ScoredChunk:
        """A hit from a point id, its score and its stored payload (see [Chunk.payload][enclave.contracts.Chunk.payload])."""
        return cls(
            id=str(point), score=float(score), text=payload.get("text", ""), doc_id=payload.get("doc_id", ""),
            source=payload.get("source", ""), title=payload.get("title", ""), uri=payload.get("uri", ""),
            section=payload.get("section", ""), chunk=int(payload.get("chunk", 0)),
            classification=payload.get("classification", ""), groups=tuple(payload.get("groups", [])),
        )


class SourceUnavailable(OSError):
    """A source could not be listed (unreachable, 401/403, 5xx, a timeout, a cut-off page of results).
    The ingest of that source fails with this error and deletes nothing: a listing that did not finish
    never reads as "every document was removed". The message names the source and the cause, never a
    credential."""


class Connector(Protocol):
    """Where documents come from: a source lists its items and fetches their bytes on demand.

    Usage::

        connector = FilesystemConnector("handbook", "/srv/handbook", groups=["staff"])
        for doc in connector.list_documents():     # identity, version, ACL, label; no content
            data = connector.fetch(doc)            # bytes, only for new or changed documents
        IngestPipeline.from_settings(settings).run(connector)   # any Connector can be ingested

    ``source`` names the source; every listed document has ``source == connector.source`` and a
    ``doc_id`` that starts with ``"<source>:"``. ``list_documents`` yields every item the source has
    now; a listing that fails raises (any exception, e.g. OSError): it must never end early as if the
    items were gone, since the ingest deletes what a listing no longer holds (remote connectors raise
    [SourceUnavailable][enclave.contracts.SourceUnavailable]). ``fetch`` raises OSError
    for an item that cannot be read (the ingest records it as failed, reason ``unreadable``, and goes
    on); TimeoutError, ConnectionError and similar transient errors are retried by the ingest task.
    A connector shipped to a Dask worker (``ingest.task_runner: dask``) must be picklable.
    """

    source: str

    def list_documents(self) -> Iterable[SourceDocument]:
        """Every item of the source now, with identity, version, ACL and classification."""
        ...

    def fetch(self, document: SourceDocument) -> bytes:
        """The raw bytes of ``document``; raises OSError when it cannot be read."""
        ...


@runtime_checkable
class StatefulConnector(Connector, Protocol):
    """A [Connector][enclave.contracts.Connector] that keeps state between listings (a crawler's
    validators and links, a delta token). The ingest hands it the state the last successful sync left
    (``restore``, ``{}`` the first time) before listing, and keeps what ``state`` returns (JSON-able)
    after the sync has finished, in the index's ledger."""

    def restore(self, state: dict[str, Any]) -> None:
        """Take the state the last successful sync left."""
        ...

    def state(self) -> dict[str, Any]:
        """The state the next listing needs (JSON-able)."""
        ...


# -- generation ---------------------------------------------------------------------------------------------------------

class Passage(Protocol):
    """What a context passage must have to be put in a prompt ([ScoredChunk][enclave.contracts.ScoredChunk] has it)."""

    title: str
    section: str
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    """What a generator is asked: a question, its numbered context passages (passage i is cited as
    [i+1]) and the chat messages rendered from them by ``enclave.prompts.answer_messages``.

    ``history`` is the conversation rendered into ``messages`` (earlier turns, oldest first; empty for
    the answering call, which gets a condensed standalone question); ``principal`` is who asked, for the
    audit and usage logs (a generator ignores it)."""

    question: str
    passages: Sequence[Passage]
    messages: list[dict[str, str]]
    history: Sequence[dict[str, str]] = ()
    principal: str = "anonymous"


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation, as the generator's server reports them: a stream's last item."""

    tokens_in: int = 0
    tokens_out: int = 0


@dataclass(frozen=True)
class Attempt:
    """One generator tried on the route: its ``outcome``, ``error`` (why it did not answer; empty when it
    answered) and ``seconds`` spent on it."""

    generator: str
    outcome: AttemptOutcome = AttemptOutcome.ANSWERED
    error: str = ""
    seconds: float = 0.0


@dataclass
class Generation:
    """A generator's whole answer. Tokens are the generator's own counts (0 where it has none); ``cost``
    in US dollars (see ``enclave.llms.CostTable``); ``seconds`` the answering generator's time;
    ``attempts`` the route taken, every generator tried in order; ``abstained``: the generator itself
    declined to answer from these passages (the extractive generator says so; a model's refusal is
    recognised from its text by ``enclave.llms.abstention.is_abstention``)."""

    text: str
    generator: str
    model: str
    locality: Locality
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    cost: float = 0.0
    seconds: float = 0.0
    abstained: bool = False


class GeneratorUnavailable(Exception):
    """This generator cannot answer now: the route tries the next one.

    ``reason`` says why, ``outcome`` how the attempt is recorded: ``failed`` for an outage (down, timed
    out, model missing, 5xx/429, a broken stream), which counts against its circuit breaker; the
    subclasses ``enclave.llms.GeneratorSkipped`` (breaker open) and ``enclave.llms.EgressRefused``
    (nothing may leave for it) record ``skipped`` and ``not_sent``."""

    outcome: AttemptOutcome = AttemptOutcome.FAILED

    def __init__(self, generator: str, reason: str) -> None:
        super().__init__(f"{generator}: {reason}")
        self.generator = generator
        self.reason = reason


@runtime_checkable
class Generator(Protocol):
    """A component that writes an answer: Ollama, an OpenAI-compatible or Anthropic API, the extractive
    generator, or one of your own.

    Usage::

        for item in generator.stream(request):       # text pieces as they arrive, then one Usage
            print(item if isinstance(item, str) else f"\\n{item.tokens_out} tokens")
        generation = generator.run(request)           # the same stream, read to its end
        generator.reachable(timeout=2.0)              # None, or why not ("cannot connect to ...")

    ``name`` is its name on the route; ``model`` the model it asks; ``locality`` whether calling it
    sends data outside (an external generator only gets what the egress policy lets out).
    ``stream`` yields ``str`` pieces and ends with one [Usage][enclave.contracts.Usage]; it raises
    [GeneratorUnavailable][enclave.contracts.GeneratorUnavailable] (possibly after some pieces) when
    the next generator should be tried; any other exception is a bug and propagates. ``run`` returns
    the whole [Generation][enclave.contracts.Generation] and raises the same way (also for an empty
    answer). ``reachable(timeout)`` (seconds) answers None when the generator could answer now, else
    a short reason; it never raises and loads no model.
    """

    name: str
    model: str
    locality: Locality

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """The answer as it is written: text pieces, then one Usage. Raises GeneratorUnavailable."""
        ...

    def run(self, request: GenerationRequest) -> Generation:
        """The whole answer. Raises GeneratorUnavailable."""
        ...

    def reachable(self, timeout: float = 2.0) -> str | None:
        """None when this generator can answer now, else a short reason; never raises."""
        ...


# -- answers ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Citation:
    """A passage an answer cites as ``[number]``: its document, section, chunk number, text and
    retrieval score."""

    number: int
    doc_id: str
    title: str
    uri: str
    section: str
    chunk: int
    text: str
    score: float


@dataclass
class Answer:
    """A cited answer to one question.

    ``text`` cites passages as ``[n]``; ``citations`` are the passages it cites, in citation-number
    order; ``passages`` every passage given to the generator (number i is ``passages[i-1]``);
    ``question`` what was retrieved for and answered: the asked question, or the standalone question
    condensed from it and the chat history (by the generator ``condensed_by``, or ``"keywords"``);
    ``generator`` and ``model`` answered; ``attempts`` is the route taken; tokens are the answering
    generator's counts; ``cost`` in US dollars; ``seconds`` wall time of the whole answer path.
    ``answered`` is False when Enclave declined to answer (the documents do not say), and
    ``abstention`` then says why: decided from retrieval before any generator ran (``generator`` is
    then ``"none"``), or the generator's own refusal.
    """

    question: str
    text: str
    citations: list[Citation]
    passages: list[ScoredChunk]
    generator: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    cost: float = 0.0
    condensed_by: str = ""
    answered: bool = True
    abstention: str = ""

