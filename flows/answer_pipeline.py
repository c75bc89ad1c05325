"""The answer path: retrieve what the caller may see, prompt, route to a generator, cite.

[AnswerPipeline][enclave.flows.AnswerPipeline] is what the chat endpoint and ``enclave ask`` call
directly (a flow run per request would add about a second); the ``answer`` flow wraps the same pipeline
for a batch of questions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from enclave.contracts import Answer, Citation, GenerationRequest, ScoredChunk
from enclave.flows.components import (
    build_breakers,
    build_condenser,
    build_embedder,
    build_retriever,
    build_route,
)
from enclave.flows.index_location import open_index
from enclave.flows.index_manifest import IndexOutdated, check_manifest
from enclave.indexes.chunk_store import ChunkStore, SearchFilter
from enclave.indexes.embedder import DenseEmbedder
from enclave.indexes.index_backend import IndexBackend
from enclave.indexes.retriever import Retriever
from enclave.llms.abstention import ABSTENTION_TEXT, AbstentionGate
from enclave.llms.citation_grounding import ground_citations
from enclave.llms.fallback_router import FallbackRouter, Finished, Restart, Token
from enclave.llms.question_condenser import QuestionCondenser
from enclave.prompts.answer_prompt import answer_messages
from enclave.settings import Settings

_CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Retrieved:
    """The first event of [AnswerPipeline.stream][enclave.flows.answer_pipeline.AnswerPipeline.stream]: the question
    retrieved for (condensed by ``condensed_by``, "" when it was not) and its passages."""

    question: str
    condensed_by: str
    passages: list[ScoredChunk]


@dataclass(frozen=True)
class Answered:
    """The last event of [AnswerPipeline.stream][enclave.flows.answer_pipeline.AnswerPipeline.stream]: the whole answer."""

    answer: Answer


#: What [AnswerPipeline.stream][enclave.flows.answer_pipeline.AnswerPipeline.stream] yields: Retrieved, then Token... (a
#: Restart discards the Tokens before it), then Answered.
AnswerEvent = Retrieved | Token | Restart | Answered


def cited_numbers(text: str, passages: int) -> list[int]:
    """The passage numbers ``[n]`` cited in ``text`` (1-based, within range), sorted, without repeats."""
    return sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= passages})


class AnswerPipeline:
    """Question (and chat history) → cited answer, for one principal's groups.

    Usage::

        pipeline = AnswerPipeline.from_settings(load_settings())
        answer = pipeline.ask("How many leave days do I get?", groups=["everyone"])
        print(answer.text, [c.title for c in answer.citations], answer.generator)
        for event in pipeline.stream("And part-timers?", ["everyone"], history=[...]):  # Retrieved, Token..., Answered
            ...
        pipeline.close()

    Retrieval is filtered by ``groups`` inside the Qdrant query; an empty ``groups`` sees nothing. A
    follow-up (non-empty ``history``) is first condensed into a standalone question by ``condenser``
    (a local model, else the history's keywords); the history itself goes to no generator that answers.
    ``index`` and ``embedder`` may be ones the caller holds (left open); an index the pipeline opens,
    ``close`` closes. Raises [AllGeneratorsFailed][enclave.llms.AllGeneratorsFailed] when no generator
    on the route answers; ``from_settings`` raises [IndexOutdated][enclave.flows.index_manifest.IndexOutdated] for an
    index built with another embedder (or BM25 language) than the settings name.

    Abstention: when ``gate`` finds nothing in the passages worth asking about, no generator runs and
    the answer is [ABSTENTION_TEXT][enclave.llms.abstention.ABSTENTION_TEXT] with ``answered=False``;
    a generator's own refusal also gives ``answered=False`` (and no citations).

    Citations: a ``[n]`` whose passage does not hold the claim before it is moved to the passage that
    does ([ground_citations][enclave.llms.citation_grounding.ground_citations]); the Answered event
    carries the corrected text, which can differ from the Tokens streamed before it.
    """

    def __init__(self, retriever: Retriever, router: FallbackRouter, condenser: QuestionCondenser | None = None,
                 index: IndexBackend | None = None, gate: AbstentionGate | None = None) -> None:
        self.retriever = retriever
        self.router = router
        self.condenser = condenser or QuestionCondenser()
        self.gate = gate
        self._owned_index = index

    @classmethod
    def from_settings(cls, settings: Settings, embedder: DenseEmbedder | None = None,
                      index: IndexBackend | None = None) -> AnswerPipeline:
        embedder = embedder or build_embedder(settings)
        backend = index or open_index(settings, embedder.dimension)
        try:
            check_manifest(backend, settings, answering=True)
        except IndexOutdated:
            if index is None:
                backend.close()
            raise
        breakers = build_breakers(settings)
        a = settings.abstention
        gate = AbstentionGate(a.min_score, a.min_overlap, a.specific_terms) if a.enabled else None
        return cls(build_retriever(settings, embedder, backend), build_route(settings, embedder, breakers),
                   build_condenser(settings, breakers), index=None if index else backend, gate=gate)

    @property
    def store(self) -> ChunkStore:
        """The chunks the pipeline retrieves from."""
        return self.retriever.store

    @property
    def index(self) -> IndexBackend:
        """The index backend the pipeline retrieves from."""
        return self.retriever.store.backend

    def ask(self, question: str, groups: Sequence[str], top_k: int | None = None, where: SearchFilter | None = None,
            principal: str = "anonymous", history: Sequence[dict[str, str]] = (),
            only: Sequence[str] | None = None) -> Answer:
        """Answer ``question`` from the chunks ``groups`` may see, narrowed by ``where`` (sources,
        document types, modification dates). ``principal`` (who asks) goes into the audit and usage logs;
        ``history``: earlier turns (``{"role": "user"|"assistant", "content"}``, oldest first); ``only``:
        the generators of the route to try (default all)."""
        for event in self.stream(question, groups, top_k, where, principal, history, only):
            if isinstance(event, Answered):
                return event.answer
        raise AssertionError("an answer stream ends with Answered or raises")  # pragma: no cover

    def stream(self, question: str, groups: Sequence[str], top_k: int | None = None,
               where: SearchFilter | None = None, principal: str = "anonymous",
               history: Sequence[dict[str, str]] = (), only: Sequence[str] | None = None) -> Iterator[AnswerEvent]:
        """[ask][enclave.flows.answer_pipeline.AnswerPipeline.ask] as events, for streaming: Retrieved, Token... (with a
        Restart when a generator fails mid-answer and the next one starts over), Answered. Raises
        AllGeneratorsFailed."""
        started = time.perf_counter()
        condensed = self.condenser.run(question, history)
        passages = self.retriever.run(condensed.question, groups, top_k=top_k, where=where)
        yield Retrieved(condensed.question, condensed.by, passages)
        reason = self.gate.run(condensed.question, passages) if self.gate else None
        if reason:
            yield Token(ABSTENTION_TEXT)
            yield Answered(Answer(
                question=condensed.question, text=ABSTENTION_TEXT, citations=[], passages=passages, generator="none",
                model="", seconds=time.perf_counter() - started, condensed_by=condensed.by, answered=False,
                abstention=reason,
            ))
            return
        request = GenerationRequest(condensed.question, passages, answer_messages(condensed.question, passages),
                                    principal=principal)
        for event in self.router.stream(request, only=only):
            if not isinstance(event, Finished):
                yield event
                continue
            generation = event.generation
            text = generation.text if generation.abstained else ground_citations(generation.text, passages)
            numbers = [] if generation.abstained else cited_numbers(text, len(passages))
            citations = [
                Citation(n, p.doc_id, p.title, p.uri, p.section, p.chunk, p.text, p.score)
                for n in numbers
                for p in [passages[n - 1]]
            ]
            yield Answered(Answer(
                question=condensed.question, text=text, citations=citations, passages=passages,
                generator=generation.generator, model=generation.model, attempts=generation.attempts,
                tokens_in=generation.tokens_in, tokens_out=generation.tokens_out,
                seconds=time.perf_counter() - started, cost=generation.cost, condensed_by=condensed.by,
                answered=not generation.abstained,
                abstention=f"{generation.generator} found no answer in the passages" if generation.abstained else "",
            ))

    def close(self) -> None:
        """Close the index if this pipeline opened it."""
        if self._owned_index is not None:
            self._owned_index.close()
