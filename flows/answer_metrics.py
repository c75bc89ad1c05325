"""Answer-quality metrics: SQuAD's exact match and token F1, answer containment, citation precision and
recall, abstention precision and recall.

Exact match and token F1 follow the official SQuAD v2.0 evaluation script (Rajpurkar et al. 2018):
answers are normalised by lower-casing, removing punctuation, the articles "a", "an", "the" and extra
whitespace; a prediction's score is its best over the gold answers. Before scoring, a generated answer
loses its ``[n]`` citation markers and the extractive generator's notice line.
"""

from __future__ import annotations

import re
import statistics
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from enclave.llms.extractive_generator import NO_MODEL_NOTICE

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_CITATION = re.compile(r"\[\d{1,3}\]")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_body(text: str) -> str:
    """A generated answer as scored: without ``[n]`` markers, list bullets or the extractive notice."""
    text = text.replace(NO_MODEL_NOTICE, "")
    text = _CITATION.sub("", text)
    return " ".join(re.sub(r"^\s*[-*]\s+", "", line) for line in text.splitlines()).strip()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0 (0.0 without golds)."""
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best over ``golds`` of the harmonic mean of token precision and recall (SQuAD's bag of
    normalised tokens), in [0, 1]; 0.0 without golds."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        wanted = normalize_answer(gold).split()
        common = sum((Counter(predicted) & Counter(wanted)).values())
        if not predicted or not wanted:
            best = max(best, float(predicted == wanted))
            continue
        if common:
            precision, recall = common / len(predicted), common / len(wanted)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_answer(text: str, golds: Sequence[str]) -> bool:
    """Whether a normalised gold answer occurs in the normalised ``text`` (on word boundaries)."""
    padded = f" {normalize_answer(text)} "
    return any(f" {g} " in padded for g in (normalize_answer(gold) for gold in golds) if g)


@dataclass(frozen=True)
class JudgedAnswer:
    """One question's answer, judged.

    ``answerable``: whether the documents answer it (SQuAD 2.0's ``is_impossible`` false); ``answered``:
    whether Enclave answered (not an abstention); ``failed``: no generator answered at all (then
    nothing else counts). ``cited``: passages the answer cites; ``supported``: of those, the ones
    containing a gold answer or from the gold document. Times in seconds; ``cost`` in US dollars.
    """

    qid: str
    answerable: bool
    answered: bool
    exact_match: float
    token_f1: float
    contains: bool
    cited: int
    supported: int
    first_token_seconds: float
    total_seconds: float
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    generator: str = ""
    failed: bool = False
    text: str = ""


def judge_answer(qid: str, text: str, answered: bool, golds: Sequence[str], cited_passages: Sequence[tuple[str, str]],
                 gold_docs: Sequence[str], **measured) -> JudgedAnswer:
    """Judge one answer. ``golds``: the gold answer texts (empty: unanswerable); ``cited_passages``:
    (doc id, text) of each cited passage; ``gold_docs``: the documents the question was written on.
    ``measured``: JudgedAnswer's timing, token, cost and generator fields."""
    body = answer_body(text) if answered else ""
    supported = sum(1 for doc_id, passage in cited_passages
                    if (golds and contains_answer(passage, golds)) or doc_id in gold_docs)
    return JudgedAnswer(
        qid=qid, answerable=bool(golds), answered=answered,
        exact_match=exact_match(body, golds) if answered else 0.0,
        token_f1=token_f1(body, golds) if answered else 0.0,
        contains=answered and contains_answer(body, golds),
        cited=len(cited_passages) if answered else 0, supported=supported if answered else 0, text=text,
        **measured,
    )


def _share(part: int | float, whole: int | float) -> float:
    return round(part / whole, 4) if whole else 0.0


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); the value itself for one value, 0.0 for none."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def score_answers(judged: Sequence[JudgedAnswer]) -> dict[str, float]:
    """The answer metrics over ``judged``, each in [0, 1] unless named in seconds, tokens or dollars:

    - ``exact_match``, ``token_f1``, ``contains``: means over answerable questions (a refusal scores 0);
    - ``squad2_f1``: token F1 over all questions, an unanswerable one scoring 1 when refused (SQuAD 2.0);
    - ``citation_precision``: of the passages answers to answerable questions cite, the share that hold a
      gold answer or are from the gold document; ``citation_recall``: the share of answerable questions
      whose answer cites at least one such passage;
    - ``abstention_precision``: of the refusals, the share on unanswerable questions;
      ``abstention_recall``: of the unanswerable questions, the share refused; ``wrongly_refused``:
      of the answerable questions, the share refused;
    - ``failed``: share of questions no generator answered;
    - ``first_token_p50_s``/``_p95_s``, ``total_p50_s``/``_p95_s``; ``tokens_in``/``tokens_out``
      and ``cost_usd``: means per answer.
    """
    done = [j for j in judged if not j.failed]
    answerable = [j for j in done if j.answerable]
    unanswerable = [j for j in done if not j.answerable]
    refused = [j for j in done if not j.answered]
    cited = sum(j.cited for j in answerable if j.answered)
    squad2 = [j.token_f1 if j.answerable else float(not j.answered) for j in done]
    return {
        "exact_match": _share(sum(j.exact_match for j in answerable), len(answerable)),
        "token_f1": _share(sum(j.token_f1 for j in answerable), len(answerable)),
        "contains": _share(sum(j.contains for j in answerable), len(answerable)),
        "squad2_f1": _share(sum(squad2), len(squad2)),
        "citation_precision": _share(sum(j.supported for j in answerable if j.answered), cited),
        "citation_recall": _share(sum(1 for j in answerable if j.answered and j.supported), len(answerable)),
        "abstention_precision": _share(sum(1 for j in refused if not j.answerable), len(refused)),
        "abstention_recall": _share(sum(1 for j in unanswerable if not j.answered), len(unanswerable)),
        "wrongly_refused": _share(sum(1 for j in answerable if not j.answered), len(answerable)),
        "failed": _share(len(judged) - len(done), len(judged)),
        "first_token_p50_s": round(percentile([j.first_token_seconds for j in done], 50), 3),
        "first_token_p95_s": round(percentile([j.first_token_seconds for j in done], 95), 3),
        "total_p50_s": round(percentile([j.total_seconds for j in done], 50), 3),
        "total_p95_s": round(percentile([j.total_seconds for j in done], 95), 3),
        "tokens_in": round(statistics.fmean([j.tokens_in for j in done]), 1) if done else 0.0,
        "tokens_out": round(statistics.fmean([j.tokens_out for j in done]), 1) if done else 0.0,
        "cost_usd": round(statistics.fmean([j.cost for j in done]), 8) if done else 0.0,
    }
