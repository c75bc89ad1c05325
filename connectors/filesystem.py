"""Filesystem connector: a folder, recursively, with include/exclude globs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from enclave.connectors.path_patterns import matches_any
from enclave.contracts import Classification, SourceDocument


class FilesystemConnector:
    """A folder, recursively: one [SourceDocument][enclave.contracts.SourceDocument] per file.

    Usage::

        connector = FilesystemConnector("handbook", "/srv/handbook", exclude=["**/drafts/**"],
                                        groups=["staff"], classification="internal")
        for doc in connector.list_documents():
            print(doc.doc_id, doc.version, len(connector.fetch(doc)))

    ``doc_id`` is ``"<source>:<path relative to root, POSIX>"``; ``version`` is
    ``"<mtime in ns>-<size in bytes>"``. Globs are matched against the relative POSIX path with
    ``fnmatch`` semantics, where ``**/`` also matches no folder at all. Hidden files and folders
    (names starting with ``.``) are skipped; so are symbolic links. Every file gets the connector's
    ``groups`` (its ACL) and ``classification``. ``list_documents`` raises FileNotFoundError if
    ``root`` is not a folder; ``fetch`` raises OSError for a file that cannot be read.
    """

    def __init__(
        self,
        source: str,
        root: str | Path,
        *,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        groups: list[str] | None = None,
        classification: str = Classification.INTERNAL,
    ) -> None:
        self.source = source
        self.root = Path(root)
        self.include = include or ["**/*"]
        self.exclude = exclude or []
        self.groups = tuple(groups or ["everyone"])
        self.classification = classification

    def list_documents(self) -> Iterator[SourceDocument]:
        """One SourceDocument per matching file, in sorted path order."""
        root = self.root.resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"source {self.source!r}: {self.root} is not a folder")
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if not path.is_file() or path.is_symlink():
                continue
            if not matches_any(rel, self.include) or matches_any(rel, self.exclude):
                continue
            stat = path.stat()
            yield SourceDocument(
                doc_id=f"{self.source}:{rel}",
                source=self.source,
                uri=path.as_uri(),
                title=path.name,
                version=f"{stat.st_mtime_ns}-{stat.st_size}",
                size=stat.st_size,
                groups=self.groups,
                classification=self.classification,
                extension=path.suffix.lower(),
                modified=datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
            )

    def fetch(self, document: SourceDocument) -> bytes:
        """The bytes of the file ``document`` names. Raises OSError (missing, permission denied, or not
        a file of this folder)."""
        return self._path(document).read_bytes()

    def _path(self, document: SourceDocument) -> Path:
        root, prefix = self.root.resolve(), f"{self.source}:"
        path = (root / document.doc_id.removeprefix(prefix)).resolve()
        if not document.doc_id.startswith(prefix) or root not in path.parents:
            raise FileNotFoundError(f"{document.doc_id!r} is not a file of source {self.source!r} ({self.root})")
        return path


