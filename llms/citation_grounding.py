"""Citations checked against the passages: a ``[n]`` that points at a passage which does not hold the
claim it follows is moved to the passage that does.

Small local models often write the right sentence and the wrong number ("... 1806 to 1814 [3]" copied
from passage [1]). The claim a marker covers is the text between the previous marker (or the start)
and it; its support in a passage is the share of the claim's content words (not stopwords) that the
passage (title and text) contains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from enclave.contracts import Passage
from enclave.llms.abstention import content_words

_MARKERS = re.compile(r"(?:\s*\[\d{1,3}\])+")
_NUMBER = re.compile(r"\[(\d{1,3})\]")


def _passage_words(passage: Passage) -> set[str]:
    return content_words(f"{passage.title} {passage.text}")


def _share(words: set[str], held: set[str]) -> float:
    return len(words & held) / len(words) if words else 0.0


def support(claim: str, passage: Passage) -> float:
    """The share of ``claim``'s content words found in ``passage`` (title and text), in [0, 1]; 0 for
    a claim without content words."""
    return _share(content_words(claim), _passage_words(passage))


def ground_citations(text: str, passages: Sequence[Passage], min_support: float = 0.6, keep_ratio: float = 0.8) -> str:
    """``text`` with each marker group (``[2]``, ``[1][3]``) that cites no passage supporting its claim
    replaced by ``[best]``, the passage with the highest support, when that reaches ``min_support``.

    A group is kept when one of its passages has at least ``keep_ratio`` of the best support, or when
    no passage reaches ``min_support`` (nothing better to point at). Markers out of range count as
    unsupported. Claims of fewer than two content words are left alone.
    """
    if not passages:
        return text
    held = [_passage_words(p) for p in passages]  # once per answer, not once per claim
    pieces, start = [], 0
    for group in _MARKERS.finditer(text):
        claim = text[start:group.start()]
        pieces.append(claim)
        pieces.append(_grounded(group.group(0), content_words(claim), held, min_support, keep_ratio))
        start = group.end()
    pieces.append(text[start:])
    return "".join(pieces)


def _grounded(group: str, claim: set[str], held: list[set[str]], min_support: float, keep_ratio: float) -> str:
    if len(claim) < 2:
        return group
    scores = [_share(claim, words) for words in held]
    best = max(range(len(held)), key=lambda i: scores[i])
    if scores[best] < min_support:
        return group
    cited = [int(n) for n in _NUMBER.findall(group)]
    if any(1 <= n <= len(held) and scores[n - 1] >= keep_ratio * scores[best] for n in cited):
        return group
    spacing = group[: len(group) - len(group.lstrip())]
    return f"{spacing}[{best + 1}]"
