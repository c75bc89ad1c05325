"""The unit a connector yields: one source item's identity, version, ACL and label, with lazy bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceDocument:
    """One item of a source, before parsing.

    Usage::

        doc = SourceDocument(source="handbook", source_id="handbook:leave.md", uri="file:///srv/leave.md",
                             title="leave.md", version="1700000000000000000-2048", size=2048,
                             groups=("everyone",), classification="internal", fetch=lambda: b"# Leave ...")
        data = doc.fetch()

    ``source_id`` is stable across runs (it names the item, not its content); ``version`` changes when
    the item may have changed (mtime+size, etag), so an unchanged version means no fetch is needed.
    ``size`` is in bytes. ``fetch`` returns the raw bytes; it may raise OSError. ``extension`` is the
    file type with its dot (``.pdf``); ``modified`` the item's last modification, ISO 8601 UTC, or ""
    where the source does not know it.
    """

    source: str
    source_id: str
    uri: str
    title: str
    version: str
    size: int
    groups: tuple[str, ...]
    classification: str
    fetch: Callable[[], bytes] = field(repr=False, compare=False)
    extension: str = ""
    modified: str = ""

    @staticmethod
    def content_hash(data: bytes) -> str:
        """SHA-256 hex digest of the raw bytes: the identity of the content, whatever its version."""
        return hashlib.sha256(data).hexdigest()
