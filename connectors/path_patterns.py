"""Include/exclude globs over a document's path within its source (a folder's relative path, an
object key after the prefix)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def matches_any(rel: str, patterns: Sequence[str]) -> bool:
    """Whether the POSIX path ``rel`` matches one of ``patterns`` (``fnmatch`` semantics, case-sensitive;
    ``*`` also crosses ``/``; a leading ``**/`` also matches no folder at all)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(rel, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatchcase(rel, pattern[3:]):
            return True
    return False
