"""The answer path: retrieve what the caller may see, prompt, route to a generator, cite.

:class:`AnswerPipeline` is what the chat endpoint and ``enclave ask`` call directly (a flow run per
request would add about a second); the ``answer`` flow wraps the same pipeline for a batch of questions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from enclave.settings import Settings, load_settings
from flows.components import (
    Resources,
    build_chain,
    build_embedder,
    build_index,
    build_retriever,
)
from indexes.embedder import DenseEmbedder
from indexes.retriever import Retriever
from indexes.vector_index import ScoredChunk, SearchFilter, VectorIndex
from llms.generator import Attempt, GenerationRequest
from llms.generator_chain import GeneratorChain
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
    ``passages`` all passages given to the generator (number i is passages[i-1]); ``seconds`` wall time."""

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


def cited_numbers(text: str, passages: int) -> list[int]:
    """The passage numbers ``[n]`` cited in ``text`` (1-based, within range), sorted, without repeats."""
    return sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= passages})


class AnswerPipeline:
    """Question → cited answer, for one principal's groups.

    Usage::

        pipeline = AnswerPipeline.from_settings(load_settings())
        answer = pipeline.ask("How many leave days do I get?", groups=["everyone"])
        print(answer.text, [c.title for c in answer.citations], answer.generator)
        pipeline.close()

    Retrieval is filtered by ``groups`` inside the Qdrant query; an empty ``groups`` sees nothing.
    Raises llms.AllGeneratorsFailed when no generator on the route answers.
    """

    def __init__(self, retriever: Retriever, chain: GeneratorChain, owns_index: bool = False) -> None:
        self.retriever = retriever
        self.chain = chain
        self._owns_index = owns_index

    @classmethod
    def from_settings(
        cls, settings: Settings, embedder: DenseEmbedder | None = None, index: VectorIndex | None = None
    ) -> AnswerPipeline:
        embedder = embedder or build_embedder(settings)
        owns = index is None
        index = index or build_index(settings, embedder.dimension)
        retriever = build_retriever(settings, embedder, index)
        return cls(retriever, build_chain(settings, embedder), owns_index=owns)

    @property
    def index(self) -> VectorIndex:
        return self.retriever.index

    def ask(self, question: str, groups: Sequence[str], top_k: int | None = None, where: SearchFilter | None = None,
            principal: str = "anonymous") -> Answer:
        """Answer ``question`` from the chunks ``groups`` may see, narrowed by ``where`` (sources,
        document types, modification dates). ``principal`` (who asks) goes into the audit and usage logs."""
        started = time.perf_counter()
        passages = self.retriever.run(question, groups, top_k=top_k, where=where)
        request = GenerationRequest(question, passages, answer_messages(question, passages))
        generation = self.chain.run(request, principal=principal)
        numbers = cited_numbers(generation.text, len(passages))
        citations = [
            Citation(n, p.doc_id, p.title, p.uri, p.section, p.chunk, p.text, p.score)
            for n in numbers
            for p in [passages[n - 1]]
        ]
        return Answer(
            question=question, text=generation.text, citations=citations, passages=passages,
            generator=generation.generator, model=generation.model, attempts=generation.attempts,
            tokens_in=generation.tokens_in, tokens_out=generation.tokens_out,
            seconds=time.perf_counter() - started, cost=generation.cost,
        )

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
        return [answer_question(pipeline, q, groups or settings.server.default_groups) for q in questions]
    finally:
        pipeline.close()
