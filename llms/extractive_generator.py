"""The generator that needs no model: the context sentences closest to the question, cited."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import numpy as np

from enclave.contracts import Generation, GenerationRequest, Locality, Usage
from enclave.llms.abstention import ABSTENTION_TEXT, key_terms

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}|\n(?=\s*[-*#|>]|\s*\d+[.)]\s)")
_MARKDOWN_NOISE = re.compile(r"^[#>*\-\s|]+|[*_`]+")
_WORD = re.compile(r"\w+", re.UNICODE)
_LIST_ITEM = re.compile(r"\s*(?:[-*•>]|\d+[.)])\s")

NO_MODEL_NOTICE = "No language model answered, so this answer quotes the most relevant passages."
NO_CONTEXT_ANSWER = "The documents you can access do not contain anything relevant to this question."


class ExtractiveGenerator:
    """Answers with the sentences of the context passages most similar to the question, each cited.

    Usage::

        generator = ExtractiveGenerator(embed=embedder.embed, embed_query=embedder.embed_query)
        generation = generator.run(request)
        print(generation.text)   # "No language model answered, ... \\n\\n- The HX-400 ... [2]"

    ``embed`` and ``embed_query`` map ``list[str]`` to ``(n, d)`` float32 L2-normalised rows: context
    sentences are passages (``embed``), the question is a query (``embed_query``, default ``embed``;
    e5 models prefix the two differently). Similarity is the cosine of sentence and question
    embeddings; without ``embed`` it falls back to word overlap. A sentence's similarity is weighted
    by how strongly retrieval ranked its passage,
    ``0.5 + 0.5 * score / best score`` (passages with a ``score``, e.g. ``ScoredChunk``): a sentence of
    a passage that only shares words with the question (hybrid search brings those in) does not
    outrank one of the passage retrieval put first. ``max_sentences`` sentences at most are quoted,
    best first. With no passages it says the documents hold nothing relevant.

    It abstains (answers [ABSTENTION_TEXT][enclave.llms.abstention.ABSTENTION_TEXT]) when no sentence
    is close enough to the question: the best cosine under ``min_similarity`` (with ``embed``; unweighted,
    so the decision does not depend on the fusion's score scale: RRF's scores are nearly flat, DBSF's
    spread), or no passage it would quote sharing a key term with the question. Never raises
    GeneratorUnavailable.
    """

    def __init__(
        self,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        max_sentences: int = 3,
        name: str = "extractive",
        locality: Locality = Locality.LOCAL,
        min_similarity: float = 0.0,
        embed_query: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        self.embed = embed
        self.embed_query = embed_query or embed
        self.max_sentences = max_sentences
        self.min_similarity = min_similarity
        self.name = name
        self.model = "extractive"
        self.locality = Locality(locality)

    def reachable(self, timeout: float = 2.0) -> str | None:
        """Always None: this generator needs no server."""
        return None

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """The whole answer as one piece, then an empty Usage (no tokens: no model ran)."""
        yield self.run(request).text
        yield Usage()

    def run(self, request: GenerationRequest) -> Generation:
        """The cited sentences (or the no-context answer) as a Generation."""
        candidates = [
            (number, sentence)
            for number, passage in enumerate(request.passages, start=1)
            for sentence in split_sentences(passage.text)
        ]
        if not candidates:
            return Generation(text=NO_CONTEXT_ANSWER, generator=self.name, model="extractive", locality=self.locality,
                              abstained=True)
        similarity = self._scores(request.question, [sentence for _, sentence in candidates])
        weights = _passage_weights(request.passages)
        scores = similarity * np.array([weights[number - 1] for number, _ in candidates])
        best = np.argsort(-scores, kind="stable")[: self.max_sentences]
        asked = key_terms(request.question)
        quoted = {candidates[i][0] for i in best}
        shares_term = not asked or any(asked & key_terms(f"{request.passages[n - 1].title} {request.passages[n - 1].text}")
                                       for n in quoted)
        if not shares_term or (self.embed is not None and similarity.max() < self.min_similarity):
            return Generation(text=ABSTENTION_TEXT, generator=self.name, model="extractive", locality=self.locality,
                              abstained=True)
        lines = [f"- {candidates[i][1]} [{candidates[i][0]}]" for i in best]
        return Generation(
            text=NO_MODEL_NOTICE + "\n\n" + "\n".join(lines),
            generator=self.name,
            model="extractive",
            locality=self.locality,
        )

    def _scores(self, question: str, sentences: list[str]) -> np.ndarray:
        if self.embed is not None and self.embed_query is not None:
            question_vector = self.embed_query([question])[0]
            return self.embed(sentences) @ question_vector
        asked = {w.lower() for w in _WORD.findall(question)}
        return np.array(
            [len(asked & {w.lower() for w in _WORD.findall(s)}) / (1 + len(_WORD.findall(s))) ** 0.5 for s in sentences]
        )


def _passage_weights(passages) -> list[float]:
    """Per passage, ``0.5 + 0.5 * score / best score`` clamped to [0.5, 1]; 1 for passages without a score."""
    scores = [getattr(p, "score", None) for p in passages]
    known = [s for s in scores if isinstance(s, (int, float))]
    top = max(known, default=0.0)
    if top <= 0:
        return [1.0] * len(passages)
    return [1.0 if s is None else 0.5 + 0.5 * min(max(s / top, 0.0), 1.0) for s in scores]


def split_sentences(text: str, min_words: int = 3, max_chars: int = 400, label_words: int = 8) -> list[str]:
    """Statements of a Markdown passage, without Markdown markers.

    Headings and label-like fragments (not a list item, fewer than ``label_words`` words and no closing
    punctuation, as PDF titles come out) are dropped, as are fragments under ``min_words`` words; a table row becomes
    one statement pairing each cell with its column header ("Region: Nordics; Q3 2024: 48.62.");
    statements longer than ``max_chars`` characters are cut with an ellipsis.
    """
    lines, header = [], None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):  # a heading is a label; dropped first, so "## 2. Leave" cannot split
            lines.append("")
            continue
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [cell.strip() for cell in stripped.strip("|").split("|")]
            if all(set(cell) <= set("-: ") for cell in cells):
                continue  # the header separator row
            if header is None:
                header = cells
                lines.append("")
                continue
            pairs = [f"{h}: {c}" if h else c for h, c in zip(header, cells) if c]
            lines.extend(["", "; ".join(pairs) + ".", ""])
            continue
        header = None
        lines.append(line)
    sentences = []
    for raw in _SENTENCE_END.split("\n".join(lines)):
        sentence = " ".join(_MARKDOWN_NOISE.sub("", raw).split())
        words = len(_WORD.findall(sentence))
        label = words < label_words and not _LIST_ITEM.match(raw) and not sentence.endswith((".", "!", "?", "…", ":"))
        if words < min_words or label:
            continue
        sentences.append(sentence if len(sentence) <= max_chars else sentence[: max_chars - 1].rstrip() + "…")
    return sentences
