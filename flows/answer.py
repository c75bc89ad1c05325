"""The answer path: retrieve what the caller may see, prompt, route to a generator, cite.

:class:`AnswerPipeline` is what the chat endpoint and ``enclave ask`` call directly (a flow run per
request would add about a second); the ``answer`` flow wraps the same pipeline for a batch of questions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from enclave.settings import Settings, load_settings
from flows.components import (
    Resources,
    build_chain,
    build_condenser,
    build_embedder,
    build_index,
    build_retriever,
)
from indexes.embedder import DenseEmbedder
from indexes.retriever import Retriever
from indexes.vector_index import ScoredChunk, SearchFilter, VectorIndex
from llms.generator import Attempt, GenerationRequest
from llms.generator_chain import Finished, GeneratorChain, Restart, Token
from llms.question_condenser import QuestionCondenser
from prompts.answer_prompt import answer_messages

_CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Citation:
    """A passage the answer cites as ``[number]``."""

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
    """A cited answer. ``citations`` are the passages the text cites, in citation-number order;
    ``passages`` all passages given to the generator (number i is passages[i-1]); ``seconds`` wall time;
    ``question`` what was retrieved and answered: the asked question, or the standalone question
    condensed from it and the chat history (by the generator ``condensed_by``, or ``"keywords"``)."""

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


@dataclass(frozen=True)
class Retrieved:
    """The first event of :meth:`AnswerPipeline.stream`: the question retrieved for and its passages."""

    question: str
    condensed_by: str
    passages: list[ScoredChunk]


@dataclass(frozen=True)
class Answered:
    """The last event of :meth:`AnswerPipeline.stream`: the whole answer."""

    answer: Answer


#: What :meth:`AnswerPipeline.stream` yields: Retrieved, then Token... (a Restart discards the Tokens
#: before it), then Answered.
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
    Raises llms.AllGeneratorsFailed when no generator on the route answers.
    """

    def __init__(self, retriever: Retriever, chain: GeneratorChain, owns_index: bool = False,
                 condenser: QuestionCondenser | None = None) -> None:
        self.retriever = retriever
        self.chain = chain
        self.condenser = condenser or QuestionCondenser()
        self._owns_index = owns_index

    @classmethod
    def from_settings(
        cls, settings: Settings, embedder: DenseEmbedder | None = None, index: VectorIndex | None = None
    ) -> AnswerPipeline:
        embedder = embedder or build_embedder(settings)
        owns = index is None
        index = index or build_index(settings, embedder.dimension)
        retriever = build_retriever(settings, embedder, index)
        chain = build_chain(settings, embedder)
        return cls(retriever, chain, owns_index=owns, condenser=build_condenser(settings, chain))

    @property
    def index(self) -> VectorIndex:
        return self.retriever.index

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
        """:meth:`ask` as events, for streaming: Retrieved, Token... (with a Restart when a generator
        fails mid-answer and the next one starts over), Answered. Raises llms.AllGeneratorsFailed."""
        started = time.perf_counter()
        condensed = self.condenser.run(question, history)
        passages = self.retriever.run(condensed.question, groups, top_k=top_k, where=where)
        yield Retrieved(condensed.question, condensed.by, passages)
        request = GenerationRequest(condensed.question, passages, answer_messages(condensed.question, passages))
        for event in self.chain.stream(request, principal=principal, only=only):
            if not isinstance(event, Finished):
                yield event
                continue
            generation = event.generation
            numbers = cited_numbers(generation.text, len(passages))
            citations = [
                Citation(n, p.doc_id, p.title, p.uri, p.section, p.chunk, p.text, p.score)
                for n in numbers
                for p in [passages[n - 1]]
            ]
            yield Answered(Answer(
                question=condensed.question, text=generation.text, citations=citations, passages=passages,
                generator=generation.generator, model=generation.model, attempts=generation.attempts,
                tokens_in=generation.tokens_in, tokens_out=generation.tokens_out,
                seconds=time.perf_counter() - started, cost=generation.cost, condensed_by=condensed.by,
            ))

    def close(self) -> None:
        if self._owns_index:
            self.index.close()


@task(name="answer-question", cache_policy=NO_CACHE)
def answer_question(pipeline: AnswerPipeline, question: str, groups: Sequence[str]) -> Answer:
    return pipeline.ask(question, groups)


@flow(name="answer", validate_parameters=False)
def answer(
    questions: list[str],
    groups: list[str] | None = None,
    config_file: str | None = None,
    settings: Settings | None = None,
    resources: Resources | None = None,
) -> list[Answer]:
    """Answer a batch of questions as one principal (default: the server's default groups).

    ``resources`` may carry an embedder and an open index (left open); otherwise they are built from
    settings and the index is closed at the end."""
    settings = settings or load_settings(config_file)
    resources = resources or Resources()
    pipeline = AnswerPipeline.from_settings(settings, embedder=resources.embedder, index=resources.index)
    try:
        return [answer_question(pipeline, q, groups or settings.server.auth.anonymous_groups) for q in questions]
    finally:
        pipeline.close()
