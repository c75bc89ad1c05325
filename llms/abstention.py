"""Abstention: saying "the documents do not answer this" instead of inventing an answer.

Two checks, one before and one after the generator:

- [AbstentionGate][enclave.llms.abstention.AbstentionGate] looks at what retrieval returned: no
  passage, a year, code or name of the question that no passage mentions, too few shared key terms,
  or (when configured) a best score under a threshold means nothing is worth sending to a generator.
- [is_abstention][enclave.llms.abstention.is_abstention] recognises a generator's own refusal (the
  prompt asks for [ABSTENTION_TEXT][enclave.llms.abstention.ABSTENTION_TEXT]; small models paraphrase
  it, so the common paraphrases count too).

Both end in the same place: an answer with ``answered: false``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from enclave.contracts import Passage
from enclave.prompts.function_words import STOPWORDS

ABSTENTION_TEXT = "The documents do not answer this question."
"""What Enclave says when the documents do not answer: the answer prompt asks generators for this sentence."""

_WORD = re.compile(r"\w+", re.UNICODE)
_TERM = re.compile(r"\w+(?:[-/.]\w+)*", re.UNICODE)  # keeps codes whole: INC-2291, HX-400, 3.5
_POSSESSIVE = re.compile(r"['’]s\b")


# A refusal, in the forms small and large models write it: "The documents do not answer...", "The provided
# passages do not contain/mention...", "There is no information about...", "I cannot answer...", "not mentioned".
_REFUSAL = re.compile(
    r"""
    (?:documents?|passages?|context|texts?|sources?|information\ provided|provided\ information)[^.\n]{0,40}?
        (?:do|does|did)\s*(?:not|n't)\s+(?:answer|contain|mention|say|state|specify|include|provide|give|cover|discuss|indicate)
    | (?:there\s+is|there's|i\s+(?:have|found|find))\s+no\s+(?:information|mention|answer|data|details?|record)
    | no\s+(?:information|mention|answer)\s+(?:is\s+)?(?:about|on|regarding|in|to|for|was|found|available|given|provided)
    | (?:i|we)\s+(?:cannot|can't|can\s+not|am\s+unable\s+to|are\s+unable\s+to)\s+(?:answer|find|determine|tell)
    | (?:is|are|was|were)\s+not\s+(?:mentioned|stated|specified|provided|given|included|found|addressed|discussed)
        \s+in\s+the\s+(?:provided\s+|given\s+)?(?:documents?|passages?|context|texts?|sources?)
    | cannot\s+be\s+(?:answered|determined)\s+(?:from|with|based)
    | (?:do|does)\s+not\s+contain\s+(?:the\s+|an\s+|any\s+)?(?:answer|information|relevant)
    | insufficient\s+information
    | not\ enough\ information
    """,
    re.IGNORECASE | re.VERBOSE,
)


def content_words(text: str) -> set[str]:
    """The case-folded words of ``text`` that are not function words (``enclave.prompts.function_words``):
    two or more characters, or a digit."""
    return {w for w in (m.casefold() for m in _WORD.findall(text)) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())}


def key_terms(text: str) -> set[str]:
    """The [content_words][enclave.llms.abstention.content_words] of ``text`` of two or more characters,
    cut to their first six (a crude stem: "founded" and "founding" match)."""
    return {w[:6] for w in content_words(text) if len(w) > 1}


def _fold(text: str) -> str:
    """Case-folded, accents removed (a question may write "Herve" for the passage's "Hervé")."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def specific_terms(question: str) -> set[str]:
    """The terms of ``question`` that name one thing: words with a digit (years, codes such as
    INC-2291, HX-400, Q3) and capitalised words after the first (names, places). Folded (case,
    accents); possessive 's removed; "I" is not a name."""
    words = [w for w in _TERM.findall(_POSSESSIVE.sub("", question)) if w != "I"]
    return {_fold(w) for number, w in enumerate(words)
            if any(c.isdigit() for c in w) or (number > 0 and w[0].isupper())}


def missing_terms(question: str, passages: Sequence[Passage]) -> list[str]:
    """The [specific_terms][enclave.llms.abstention.specific_terms] of ``question`` missing (as whole
    words) from the passage (title and text) that holds the most of them, sorted; all of them when
    there is no passage. One passage must hold them together: "Q3 2023" is not answered by a table of
    2024's quarters beside a timeline that mentions 2023."""
    wanted = specific_terms(question)
    best = sorted(wanted)
    for passage in passages:
        text = _fold(f"{passage.title} {passage.text}")
        missing = sorted(t for t in wanted if not re.search(rf"(?<!\w){re.escape(t)}(?!\w)", text))
        if len(missing) < len(best):
            best = missing
    return best


def is_abstention(text: str) -> bool:
    """Whether a generator's answer declines to answer: its first sentence (or line) is a refusal such
    as "The documents do not answer this question.", or it is empty once ``[n]`` markers are removed.
    An answer that answers and then remarks that something else is not mentioned is not an abstention."""
    body = re.sub(r"\[\d{1,3}\]", "", text).strip()
    if not body:
        return True
    first = re.split(r"(?<=[.!?])\s+|\n+", body, maxsplit=1)[0]
    return bool(_REFUSAL.search(first))


@dataclass(frozen=True)
class AbstentionGate:
    """Decides from retrieval alone that no generator should be asked.

    Usage::

        gate = AbstentionGate(min_score=None)
        reason = gate.run("What was the root cause of incident INC-3107?", passages)
        if reason:                       # e.g. "no passage mentions inc-3107"
            ...                          # answer ABSTENTION_TEXT, answered: false, no generator called

    Checks, in order: any passage at all; ``min_score``, the retrieval score (the mode's own scale:
    cosine for dense, DBSF or RRF for hybrid) the best passage must reach (None skips it); with
    ``check_specific_terms``, every year, code and name of the question (see
    [specific_terms][enclave.llms.abstention.specific_terms]) must occur together in one passage: a
    question about incident INC-3107 is not answered by the post-mortem of INC-2291, nor one about 2023
    by the 2024 figures (capitalisation marks names, so this suits English questions; turn it off for
    languages that capitalise every noun); ``min_overlap``, the share of the question's key terms (see
    [key_terms][enclave.llms.abstention.key_terms]) that at least one passage must contain.
    Returns the reason to abstain, or None to go on to the generator.
    """

    min_score: float | None = None
    min_overlap: float = 0.25
    check_specific_terms: bool = True

    def run(self, question: str, passages: Sequence[Passage]) -> str | None:
        if not passages:
            return "retrieval found no passage the caller may see"
        if self.min_score is not None:
            scores = [s for s in (getattr(p, "score", None) for p in passages) if isinstance(s, (int, float))]
            if scores and max(scores) < self.min_score:
                return f"the best passage scores {max(scores):.3f}, under {self.min_score}"
        if self.check_specific_terms:
            missing = missing_terms(question, passages)
            if missing:
                return f"no passage mentions {', '.join(missing)}"
        asked = key_terms(question)
        if not asked:
            return None  # nothing to check a question of only function words by
        best = max(len(asked & key_terms(f"{p.title} {p.text}")) for p in passages) / len(asked)
        if best < self.min_overlap:
            return f"no passage shares enough key terms with the question ({best:.0%} at best)"
        return None
