"""Parse a source document's bytes to Markdown with markitdown."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from llama_index.core import Document

from enclave.contracts import DocumentStatus, SourceDocument
from enclave.indexes.parse_worker import ParseWorker

#: Extensions markitdown has no text converter for: skipped with reason "unsupported type", no parse tried.
UNSUPPORTED_EXTENSIONS = frozenset(
    {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".mp4", ".mov", ".avi",
     ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic",
     ".exe", ".dll", ".so", ".bin", ".iso", ".dmg", ".gz", ".tgz", ".7z", ".rar"}
)


_OOXML_EXTENSIONS = frozenset({".docx", ".xlsx", ".pptx", ".docm", ".xlsm", ".pptm"})
_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an OOXML file in an OLE container is encrypted


class ParseError(Exception):
    """A document that could not be turned into text.

    ``status`` is ``DocumentStatus.FAILED`` (the file is broken: encrypted, corrupt, unreadable) or
    ``DocumentStatus.SKIPPED`` (nothing to index: unsupported type, empty, too large); ``reason`` is a
    short category for counting (e.g. ``"encrypted"``), ``detail`` the underlying message.
    """

    def __init__(self, status: DocumentStatus, reason: str, detail: str = "") -> None:
        super().__init__(f"{status}: {reason}" + (f" ({detail})" if detail else ""))
        self.status = status
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _Classified:
    status: DocumentStatus
    reason: str


def _classify(exc: BaseException) -> _Classified:
    text = str(exc).lower()
    if any(word in text for word in ("encrypt", "password", "decrypt")):
        return _Classified(DocumentStatus.FAILED, "encrypted")
    if "UnsupportedFormatException" in str(exc) or type(exc).__name__ == "UnsupportedFormatException":
        return _Classified(DocumentStatus.SKIPPED, "unsupported type")
    if "MemoryError" in str(exc):
        return _Classified(DocumentStatus.FAILED, "too large")
    return _Classified(DocumentStatus.FAILED, "corrupt or unreadable")


class _RemoteError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind}: {self.args[0]}"


class DocumentParser:
    """Turns a [SourceDocument][enclave.contracts.SourceDocument]'s bytes into a LlamaIndex ``Document`` holding Markdown.

    Usage::

        parser = DocumentParser()
        document = parser.run(source_doc, connector.fetch(source_doc))   # raises ParseError
        print(document.text[:200], document.metadata["title"])

    Conversion runs in a worker process with a time limit (``timeout``, seconds) and a memory limit
    (``memory_bytes``), so one pathological file cannot hang or exhaust the run; ``close()`` stops it.
    Formats are markitdown's (PDF, DOCX, PPTX, XLSX/XLS, HTML, EML/MSG, CSV, EPUB, JSON, XML, text...).
    The returned Document's ``id_`` is the doc id; its metadata carries source, title, uri, doc_type
    (extension without the dot), modified_at, groups,
    classification, version and content_hash. Raises [ParseError][enclave.indexes.ParseError] for unsupported, empty, too
    large, encrypted or corrupt input.
    """

    def __init__(self, max_bytes: int = 50 * 1024 * 1024, timeout: float = 120.0, memory_bytes: int = 4 * 1024**3) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._worker: ParseWorker | None = None
        self._lock = threading.Lock()  # one conversion at a time through the one worker process

    def run(self, doc: SourceDocument, data: bytes) -> Document:
        """Parse ``data`` (the bytes of ``doc``) to a Markdown Document. Raises ParseError."""
        if doc.extension in UNSUPPORTED_EXTENSIONS:
            raise ParseError(DocumentStatus.SKIPPED, "unsupported type", doc.extension)
        if len(data) > self.max_bytes:
            raise ParseError(DocumentStatus.SKIPPED, "too large", f"{len(data)} bytes > limit {self.max_bytes}")
        if not data.strip():
            raise ParseError(DocumentStatus.SKIPPED, "empty")
        if doc.extension in _OOXML_EXTENSIONS and data.startswith(_CFB_MAGIC):
            raise ParseError(DocumentStatus.FAILED, "encrypted", "password-protected Office file (an encrypted OLE container)")
        markdown, title = self._convert(data, doc.extension, doc.title)
        text = markdown.replace("\x00", "").strip()
        if not text:
            raise ParseError(DocumentStatus.SKIPPED, "no text", "the parser found no text in the file")
        return Document(
            id_=doc.doc_id,
            text=text,
            metadata={
                "source": doc.source,
                "title": title.strip() or doc.title,
                "uri": doc.uri,
                "doc_type": doc.extension.lower().lstrip("."),
                "modified_at": doc.modified,
                "groups": list(doc.groups),
                "classification": str(doc.classification),
                "version": doc.version,
                "content_hash": SourceDocument.content_hash(data),
            },
        )

    def _convert(self, data: bytes, extension: str, filename: str) -> tuple[str, str]:
        """Convert in the worker process, within ``timeout`` seconds and ``memory_bytes`` of memory."""
        with self._lock:
            return self._convert_locked(data, extension, filename)

    def _convert_locked(self, data: bytes, extension: str, filename: str) -> tuple[str, str]:
        if self._worker is None or not self._worker.alive:
            self._worker = ParseWorker(self.memory_bytes)
        try:
            status, payload = self._worker.convert(data, extension, filename, self.timeout)
        except TimeoutError:
            self.close()
            raise ParseError(DocumentStatus.FAILED, "timeout", f"no result within {self.timeout:g} s") from None
        except (EOFError, OSError) as exc:
            self.close()
            raise ParseError(DocumentStatus.FAILED, "parser crashed", _short(exc)) from None
        if status == "ok":
            return payload
        error = _RemoteError(*payload)
        classified = _classify(error)
        raise ParseError(classified.status, classified.reason, _short(error))

    def close(self) -> None:
        """Stop the worker process (a new one starts on the next ``run``)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None


def _short(exc: BaseException, limit: int = 300) -> str:
    message = " ".join(str(exc).split()) if isinstance(exc, _RemoteError) else " ".join(f"{type(exc).__name__}: {exc}".split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
