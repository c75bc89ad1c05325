"""Parse a source document's bytes to Markdown with markitdown."""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.contracts import DocumentStatus, SourceDocument
from enclave.indexes.parse_worker import IMAGE_EXTENSIONS, OFFICE_CONVERSIONS, OcrOptions, ParseWorker

if TYPE_CHECKING:
    from llama_index.core import Document

#: Extensions nothing here reads text from: skipped with reason "unsupported type", no parse tried.
#: (Images are read by OCR: see [OcrOptions][enclave.indexes.parse_worker.OcrOptions].)
UNSUPPORTED_EXTENSIONS = frozenset(
    {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".mp4", ".mov", ".avi",
     ".exe", ".dll", ".so", ".bin", ".iso", ".dmg", ".gz", ".tgz", ".7z", ".rar"}
)


#: Skip reasons that say the parser could not read the file's type (nothing about the file itself): such a
#: document is parsed again once [DocumentParser.reads][enclave.indexes.DocumentParser.reads] its type.
UNREADABLE_TYPE = frozenset({"unsupported type", "no OCR engine", "no office converter"})

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
    if isinstance(exc, _RemoteError) and exc.kind == "OcrUnavailable":
        return _Classified(DocumentStatus.SKIPPED, "no OCR engine")
    if isinstance(exc, _RemoteError) and exc.kind == "ConverterUnavailable":
        return _Classified(DocumentStatus.SKIPPED, "no office converter")
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
    (``memory_bytes``), so one pathological file cannot hang or exhaust the run; it starts with the first
    document to convert (never, when a sync has nothing to parse), and ``close()`` stops it.
    Formats are markitdown's (PDF, DOCX, PPTX, XLSX/XLS, HTML, EML/MSG, CSV, EPUB, JSON, XML, text...),
    legacy Office and OpenDocument files (.doc, .ppt, .rtf, .odt, .ods, .odp...) converted by LibreOffice
    headless first (a clean profile per worker), and with ``ocr`` (default
    [OcrOptions][enclave.indexes.parse_worker.OcrOptions](); None turns it off) images (PNG, JPEG,
    TIFF, BMP, GIF, WebP, HEIC) and the scanned pages of PDFs, read by Tesseract, within the same
    limits. What could not be read (a page where OCR found no text) is listed in the metadata's
    ``parse_notes``.
    The returned Document's ``id_`` is the doc id; its metadata carries source, title, uri, doc_type
    (extension without the dot), modified_at, groups,
    classification, version and content_hash. Raises [ParseError][enclave.indexes.ParseError] for unsupported, empty, too
    large, encrypted or corrupt input.
    """

    def __init__(self, max_bytes: int = 50 * 1024 * 1024, timeout: float = 120.0, memory_bytes: int = 4 * 1024**3,
                 ocr: OcrOptions | None = OcrOptions()) -> None:  # noqa: B008 - a frozen dataclass: never mutated
        self.ocr = ocr
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._worker: ParseWorker | None = None
        self._lock = threading.Lock()  # one conversion at a time through the one worker process

    def reads(self, extension: str) -> bool:
        """Whether files of ``extension`` (".png") are read here: a type markitdown converts, an image
        with OCR on and Tesseract installed, or a legacy Office or OpenDocument type with LibreOffice installed."""
        extension = extension.lower()
        if extension in UNSUPPORTED_EXTENSIONS:
            return False
        if extension in OFFICE_CONVERSIONS:
            return (shutil.which("soffice") or shutil.which("libreoffice")) is not None
        return extension not in IMAGE_EXTENSIONS or (self.ocr is not None and shutil.which("tesseract") is not None)

    def run(self, doc: SourceDocument, data: bytes) -> Document:
        """Parse ``data`` (the bytes of ``doc``) to a Markdown Document. Raises ParseError."""
        extension = doc.extension.lower()
        if extension in UNSUPPORTED_EXTENSIONS:
            raise ParseError(DocumentStatus.SKIPPED, "unsupported type", doc.extension)
        if extension in IMAGE_EXTENSIONS and self.ocr is None:
            raise ParseError(DocumentStatus.SKIPPED, "unsupported type", f"{doc.extension}: an image, and OCR is off")
        if len(data) > self.max_bytes:
            raise ParseError(DocumentStatus.SKIPPED, "too large", f"{len(data)} bytes > limit {self.max_bytes}")
        if not data.strip():
            raise ParseError(DocumentStatus.SKIPPED, "empty")
        if extension in _OOXML_EXTENSIONS and data.startswith(_CFB_MAGIC):
            raise ParseError(DocumentStatus.FAILED, "encrypted", "password-protected Office file (an encrypted OLE container)")
        markdown, title, notes = self._convert(data, extension, doc.title)
        text = markdown.replace("\x00", "").strip()
        if not text:
            raise ParseError(DocumentStatus.SKIPPED, "no text", "; ".join(notes) or "the parser found no text in the file")
        from llama_index.core import Document  # here, not at import: an ingest that parses nothing never loads LlamaIndex

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
                "parse_notes": list(notes),
            },
        )

    def _convert(self, data: bytes, extension: str, filename: str) -> tuple[str, str, list[str]]:
        """Convert in the worker process, within ``timeout`` seconds and ``memory_bytes`` of memory."""
        with self._lock:
            return self._convert_locked(data, extension, filename)

    def _convert_locked(self, data: bytes, extension: str, filename: str) -> tuple[str, str, list[str]]:
        if self._worker is None or not self._worker.alive:
            self._worker = ParseWorker(self.memory_bytes)
        try:
            status, payload = self._worker.convert(data, extension, filename, self.timeout, self.ocr)
        except TimeoutError:
            self.close()
            raise ParseError(DocumentStatus.FAILED, "timeout", f"no result within {self.timeout:g} s") from None
        except (EOFError, OSError) as exc:
            self.close()
            raise ParseError(DocumentStatus.FAILED, "parser crashed", _short(exc)) from None
        if status == "ok":
            markdown, title, notes = payload
            return markdown, title, notes
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
