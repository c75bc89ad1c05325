"""The ``answer`` flow: a batch of questions answered as one principal, the way the chat endpoint answers.

It takes only JSON-able parameters and wraps an [AnswerPipeline][enclave.flows.AnswerPipeline]; one task
run per question. The chat endpoint calls the pipeline directly (a flow run per request would add
about a second).
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from enclave.contracts import Answer
from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.settings import load_settings


@task(name="answer-question", cache_policy=NO_CACHE)
def answer_question(pipeline: AnswerPipeline, question: str, groups: Sequence[str], principal: str) -> Answer:
    """One question's cited answer."""
    return pipeline.ask(question, groups, principal=principal)


@flow(name="answer")
def answer(questions: list[str], groups: list[str] | None = None, config_file: str | None = None,
           principal: str = "anonymous") -> list[Answer]:
    """Answer each of ``questions`` from what ``groups`` may see (default: ``server.auth.anonymous_groups``),
    in order; ``principal`` names the asker in the audit and usage logs. Returns one
    [Answer][enclave.contracts.Answer] per question. Raises
    [AllGeneratorsFailed][enclave.llms.AllGeneratorsFailed] when no generator answers a question."""
    settings = load_settings(config_file)
    pipeline = AnswerPipeline.from_settings(settings)
    try:
        return [answer_question(pipeline, q, groups or settings.server.auth.anonymous_groups, principal)
                for q in questions]
    finally:
        pipeline.close()
