"""A parse process: converts documents with markitdown outside the ingesting process, legacy Office
and OpenDocument files through LibreOffice headless first, and reads images and scanned PDF pages by
OCR (Tesseract through pytesseract).

The ingesting process talks to it through [ParseWorker][enclave.indexes.parse_worker.ParseWorker]; a
file that takes longer than its time limit gets the process (and its Tesseract and LibreOffice
children) killed and a fresh one started, and a memory limit (RLIMIT_AS) keeps one file from exhausting the machine. Run as
``python .../enclave/indexes/parse_worker.py MEMORY_BYTES OFFICE_PROFILE`` (by path, so the worker imports only the
standard library, markitdown and the OCR libraries, not the whole package); frames on stdin/stdout are
8-byte big-endian lengths followed by a pickle.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

#: Extensions read as text: their charset is detected on the whole file, not a sample.
TEXT_EXTENSIONS = frozenset(
    {".txt", ".md", ".markdown", ".rst", ".org", ".csv", ".tsv", ".json", ".ndjson", ".jsonl", ".xml",
     ".html", ".htm", ".yaml", ".yml", ".log"}
)
#: Container formats: a file of one of these that reads as plain text is broken, not text.
BINARY_EXTENSIONS = frozenset({".pdf", ".docx", ".xlsx", ".pptx", ".xls", ".msg", ".epub", ".zip"})
#: Image types read by OCR (Pillow; HEIC/HEIF through pillow-heif). A multi-page TIFF is read page by page.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".heic", ".heif"})
#: Formats markitdown cannot read (or reads as raw markup: RTF), converted by LibreOffice headless to the
#: OOXML format markitdown reads, then parsed as that.
OFFICE_CONVERSIONS = {".doc": ".docx", ".dot": ".docx", ".rtf": ".docx", ".odt": ".docx", ".ott": ".docx",
                      ".wpd": ".docx", ".ppt": ".pptx", ".pps": ".pptx", ".odp": ".pptx", ".ods": ".xlsx"}
#: Formats markitdown reads, converted by LibreOffice when markitdown fails on a file.
OFFICE_FALLBACKS = {".xls": ".xlsx"}
#: LibreOffice's import filter per format: without one, a file its filter cannot read is imported as plain
#: text (a corrupt .doc becomes noise) instead of failing.
OFFICE_FILTERS = {".doc": "MS Word 97", ".dot": "MS Word 97 Vorlage", ".rtf": "Rich Text Format", ".odt": "writer8",
                  ".ott": "writer8_template", ".wpd": "WordPerfect", ".ppt": "MS PowerPoint 97",
                  ".pps": "MS PowerPoint 97 AutoPlay", ".odp": "impress8", ".ods": "calc8", ".xls": "MS Excel 97"}
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def detect_charset(data: bytes) -> str | None:
    """The charset of text ``data``: a BOM's, else UTF-8 if it decodes, else charset-normalizer's best guess."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    if b"\x00" not in data[:4096]:  # NULs are valid UTF-8 but mean UTF-16/32 without a BOM
        try:
            data.decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is None:
        return None
    # short Western European text fits several code pages almost equally well; the most common wins
    for candidate in results:
        if candidate.encoding in ("cp1252", "latin_1") and candidate.chaos <= best.chaos + 0.1:
            return candidate.encoding
    return best.encoding


def email_to_markdown(data: bytes) -> tuple[str, str]:
    """An RFC 822 message (.eml) as Markdown: its headers, then its text body (HTML bodies through
    markitdown). markitdown has no .eml converter; the standard library's ``email`` package parses it.
    Returns (markdown, subject)."""
    import email
    import email.policy

    charset = detect_charset(data)
    if charset and charset.replace("_", "-").startswith(("utf-16", "utf-32")):
        data = data.decode(charset, errors="replace").lstrip("\ufeff").encode("utf-8")
    message = email.message_from_bytes(data, policy=email.policy.default)
    subject = str(message.get("subject", "") or "")
    lines = [f"# {subject}" if subject else "# (no subject)", ""]
    for header in ("from", "to", "cc", "date"):
        if message.get(header):
            lines.append(f"**{header.capitalize()}:** {message.get(header)}  ")
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        try:
            text = body.get_content()
        except (LookupError, UnicodeError, AssertionError):  # unknown or lying charset
            text = (body.get_payload(decode=True) or b"").decode("utf-8", errors="replace")
        if body.get_content_type() == "text/html":
            from markitdown import StreamInfo

            html = io.BytesIO(text.encode("utf-8"))
            text = _markitdown().convert_stream(html, stream_info=StreamInfo(extension=".html")).markdown
    attachments = [part.get_filename() for part in message.iter_attachments() if part.get_filename()]
    if attachments:
        lines.append(f"**Attachments:** {', '.join(attachments)}  ")
    return "\n".join(lines) + "\n\n" + (text or "").strip(), subject


@functools.cache
def _markitdown():
    """The process's one MarkItDown: building one starts a magika ONNX session (~45 ms), which per
    file was most of the time a small file took to parse."""
    from markitdown import MarkItDown

    return MarkItDown(enable_plugins=False)


@dataclass(frozen=True)
class OcrOptions:
    """How the worker reads pixels: Tesseract ``languages`` (traineddata names, joined with ``+``), the
    ``dpi`` a PDF page is rendered at, and at most ``max_pages`` pages OCR'd per file (the rest are noted
    as not read)."""

    languages: tuple[str, ...] = ("eng",)
    dpi: int = 300
    max_pages: int = 100


class OcrUnavailable(RuntimeError):
    """Tesseract (the ``tesseract`` binary, or one of the languages asked for) is not installed."""


class ConverterUnavailable(RuntimeError):
    """LibreOffice (``soffice``) is not installed, so a legacy Office or OpenDocument file cannot be read."""


def _import_filter(data: bytes, extension: str) -> list[str]:
    """LibreOffice's ``--infilter`` option for ``data``: by its content where that says more than its name
    (a ZIP is an OOXML or OpenDocument file whatever its extension, and LibreOffice tells which; an RTF
    file named .doc is RTF), else the extension's filter."""
    if data.startswith(b"PK\x03\x04"):
        return []
    if data.lstrip()[:5] == b"{\\rtf":
        return ["--infilter=Rich Text Format"]
    return [f"--infilter={OFFICE_FILTERS[extension]}"]


def libreoffice_convert(data: bytes, extension: str, target: str, profile: str | None = None) -> bytes:
    """``data`` (a ``extension`` file) converted to ``target`` (".docx", ".pptx", ".xlsx") by LibreOffice
    headless, with the user profile at ``profile`` (a folder; default a fresh temporary one). No time
    limit of its own: the parse worker's kills it with the worker. Raises ConverterUnavailable without
    LibreOffice, ValueError when it produces nothing (a corrupt or password-protected file)."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise ConverterUnavailable("LibreOffice is not installed (run `make office`, or apt-get install "
                                   "libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui)")
    with tempfile.TemporaryDirectory(prefix="enclave-convert-") as work:
        source = os.path.join(work, f"document{extension}")
        with open(source, "wb") as file:
            file.write(data)
        profile = profile or os.path.join(work, "profile")
        done = subprocess.run(
            [soffice, "--headless", "--norestore", "--nolockcheck", "--nodefault", "--nologo",
             f"-env:UserInstallation=file://{os.path.abspath(profile)}", *_import_filter(data, extension),
             "--convert-to", target.lstrip("."),
             "--outdir", os.path.join(work, "out"), source],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", check=False,
        )
        produced = os.path.join(work, "out", f"document{target}")
        if not os.path.exists(produced) or os.path.getsize(produced) == 0:
            said = " ".join((done.stderr or done.stdout or "").split())[-300:]
            raise ValueError(f"LibreOffice could not convert the {extension} file (exit {done.returncode}): {said}")
        with open(produced, "rb") as file:
            return file.read()


@dataclass
class Conversion:
    """A file as Markdown: ``title`` ("" when the file names none) and ``notes`` on what was not read
    (``"page 3: OCR found no text"``), kept with the document's ledger entry."""

    markdown: str
    title: str = ""
    notes: list[str] = field(default_factory=list)


def ocr_image(image: Any, options: OcrOptions) -> str:
    """The text Tesseract reads in a Pillow image (LSTM engine, automatic page segmentation). Raises
    OcrUnavailable when Tesseract or a language is missing."""
    import pytesseract

    try:
        return pytesseract.image_to_string(_upscaled(image), lang="+".join(options.languages), config="--oem 1 --psm 3")
    except pytesseract.TesseractNotFoundError as exc:
        raise OcrUnavailable("tesseract is not installed (run `make ocr`, or apt-get install tesseract-ocr)") from exc
    except pytesseract.TesseractError as exc:
        if "Failed loading language" in str(exc.message) or "Error opening data file" in str(exc.message):
            raise OcrUnavailable(f"tesseract lacks a language of {'+'.join(options.languages)}: {exc.message}") from exc
        raise


#: An image whose long side is under this many pixels is upscaled before OCR: Tesseract wants letters about
#: 20-30 px tall (300 dpi); a page scanned or exported at 72-100 dpi reads at 0.45 word recall as it is and
#: 0.93 upscaled 3x (measured on example-docs' layout-parser-paper-fast.jpg, 612x792).
MIN_LONG_SIDE = 1600


def _upscaled(image: Any) -> Any:
    long_side = max(image.size)
    if long_side >= MIN_LONG_SIDE:
        return image
    from PIL import Image

    factor = min(4, -(-2400 // long_side))  # to about 2,400 px, at most 4x
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


def _pages_markdown(texts: list[tuple[int, str]], notes: list[str], heading: str = "Page") -> str:
    parts = []
    for number, text in texts:
        text = text.strip()
        if text:
            parts.append(f"## {heading} {number}\n\n{text}")
        else:
            notes.append(f"page {number}: OCR found no text")
    return "\n\n".join(parts)


def image_to_markdown(data: bytes, options: OcrOptions) -> Conversion:
    """An image's text by OCR; a multi-page image (TIFF, GIF) page by page under ``## Page N``."""
    from PIL import Image, ImageOps, ImageSequence

    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:  # without pillow-heif a HEIC file fails to open, and is recorded so
        pass
    image = Image.open(io.BytesIO(data))
    frames = [ImageOps.exif_transpose(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    notes: list[str] = []
    if len(frames) == 1:
        text = ocr_image(frames[0], options).strip()
        return Conversion(text, "", notes if text else ["OCR found no text"])
    read = [(n, ocr_image(frame, options)) for n, frame in enumerate(frames[: options.max_pages], start=1)]
    if len(frames) > options.max_pages:
        notes.append(f"pages {options.max_pages + 1}-{len(frames)}: not read (ocr_max_pages {options.max_pages})")
    return Conversion(_pages_markdown(read, notes), "", notes)


def scanned_pages(pdf: Any) -> list[int]:
    """The 1-based numbers of the pages of ``pdf`` (an open ``pypdfium2.PdfDocument``) that have no text
    layer but hold an image: the pages to OCR."""
    import pypdfium2.raw as pdfium_c

    pages = []
    for number in range(len(pdf)):
        page = pdf[number]
        text = page.get_textpage().get_text_range()
        if not text.strip() and any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2)):
            pages.append(number + 1)
    return pages


def ocr_pdf_pages(pdf: Any, pages: list[int], options: OcrOptions) -> list[tuple[int, str]]:
    """(page number, OCR text) of the given 1-based ``pages`` of ``pdf`` (an open ``pypdfium2.PdfDocument``),
    each rendered at ``options.dpi``."""
    return [(n, ocr_image(pdf[n - 1].render(scale=options.dpi / 72).to_pil(), options)) for n in pages]


def pdf_to_markdown(data: bytes, filename: str, options: OcrOptions | None) -> Conversion:
    """markitdown's text of a PDF, then its scanned pages (no text layer, an image) by OCR: a PDF of
    scans becomes its pages under ``## Page N``; a mixed one keeps its text pages as markitdown reads
    them and gains the scanned ones after them, under ``## Scanned page N``. A PDF pdfium cannot open
    keeps markitdown's text, with a note."""
    import pypdfium2
    from markitdown import StreamInfo

    result = _markitdown().convert_stream(io.BytesIO(data), stream_info=StreamInfo(extension=".pdf", filename=filename))
    markdown, title = str(result.markdown or ""), str(result.title or "")
    if markdown.strip() == data.decode("utf-8", errors="replace").strip():
        raise ValueError("not a valid .pdf file: it holds only plain text")
    if options is None:
        return Conversion(markdown, title)
    pdf = None
    try:  # one open of the PDF finds the scanned pages and renders them
        try:
            pdf = pypdfium2.PdfDocument(data)
            pages = scanned_pages(pdf)
        except Exception as exc:  # pdfium cannot open what pdfminer read (a user password pdfminer opens): keep the text
            return Conversion(markdown, title, [f"scanned pages not looked for: {type(exc).__name__}: {exc}"])
        if not pages:
            return Conversion(markdown, title)
        notes: list[str] = []
        all_scans = len(pages) == len(pdf)  # then the pages are the document
        if len(pages) > options.max_pages:
            notes.append(f"{len(pages) - options.max_pages} scanned pages after page {pages[options.max_pages - 1]}: "
                         f"not read (ocr_max_pages {options.max_pages})")
            pages = pages[: options.max_pages]
        scanned = _pages_markdown(ocr_pdf_pages(pdf, pages, options), notes, heading="Page" if all_scans else "Scanned page")
    finally:
        if pdf is not None:
            pdf.close()
    if all_scans:
        return Conversion(scanned, title, notes)
    return Conversion(f"{markdown.rstrip()}\n\n{scanned}" if scanned else markdown, title, notes)


def convert_to_markdown(data: bytes, extension: str, filename: str, ocr: OcrOptions | None = None,
                        office_profile: str | None = None) -> Conversion:
    """markitdown's conversion of ``data`` (.eml through
    [email_to_markdown][enclave.indexes.parse_worker.email_to_markdown]; images and a PDF's scanned pages
    by OCR unless ``ocr`` is None; ``OFFICE_CONVERSIONS``' formats, and an .xls markitdown fails on,
    through [libreoffice_convert][enclave.indexes.parse_worker.libreoffice_convert] with the profile
    ``office_profile``). Raises the converters' errors, OcrUnavailable for an image without Tesseract,
    ConverterUnavailable for an Office file without LibreOffice."""
    if extension == ".eml":
        return Conversion(*email_to_markdown(data))
    if extension in IMAGE_EXTENSIONS:
        if ocr is None:
            raise OcrUnavailable("OCR is off (ingest.ocr: false)")
        return image_to_markdown(data, ocr)
    if extension == ".pdf":
        return pdf_to_markdown(data, filename, ocr)
    if extension in OFFICE_CONVERSIONS:
        target = OFFICE_CONVERSIONS[extension]
        return _markitdown_conversion(libreoffice_convert(data, extension, target, office_profile), target, filename)
    try:
        return _markitdown_conversion(data, extension, filename)
    except Exception:
        if extension not in OFFICE_FALLBACKS:
            raise
        target = OFFICE_FALLBACKS[extension]  # e.g. an .xls that xlrd cannot read: LibreOffice may
        return _markitdown_conversion(libreoffice_convert(data, extension, target, office_profile), target, filename)


def _markitdown_conversion(data: bytes, extension: str, filename: str) -> Conversion:
    from markitdown import StreamInfo

    charset = detect_charset(data) if extension in TEXT_EXTENSIONS else None
    info = StreamInfo(extension=extension or None, filename=filename, charset=charset)
    result = _markitdown().convert_stream(io.BytesIO(data), stream_info=info)
    markdown = str(result.markdown or "")
    if extension in BINARY_EXTENSIONS and markdown.strip() == data.decode("utf-8", errors="replace").strip():
        # markitdown falls back to reading a broken file as plain text when its content sniffing says text
        raise ValueError(f"not a valid {extension} file: it holds only plain text")
    return Conversion(markdown, str(result.title or ""))  # plain str: a title may be a bs4 string


def _write_frame(stream: BinaryIO, obj: Any) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(blob)) + blob)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the parse process closed its pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: BinaryIO) -> Any:
    (size,) = struct.unpack(">Q", _read_exact(stream, 8))
    return pickle.loads(_read_exact(stream, size))


class ParseWorker:
    """Client of one parse process.

    Usage::

        worker = ParseWorker(memory_bytes=4 * 1024**3)
        status, payload = worker.convert(data, ".pdf", "report.pdf", timeout=60, ocr=OcrOptions())
        # ("ok", (markdown, title, notes)) or ("error", (exception type name, message))
        worker.stop()

    Raises TimeoutError when no answer comes within ``timeout`` seconds (the process and its children,
    Tesseract's, are then killed) and EOFError when the process died (crash, out of memory).
    """

    def __init__(self, memory_bytes: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # LibreOffice's user profile, clean for each worker (a killed conversion may leave a broken one)
        self.office_profile = tempfile.mkdtemp(prefix="enclave-office-profile-")
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(memory_bytes), self.office_profile],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True,  # its own process group: a kill reaches the tesseract it runs
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def convert(self, data: bytes, extension: str, filename: str, timeout: float,
                ocr: OcrOptions | None = None) -> tuple[str, Any]:
        try:
            # plain data over the pipe: the worker runs this file as __main__, so its classes do not unpickle here
            _write_frame(self.process.stdin, (data, extension, filename, asdict(ocr) if ocr else None))
        except (BrokenPipeError, OSError) as exc:
            raise EOFError(f"the parse process is gone: {exc}") from None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise TimeoutError(f"no result within {timeout:g} s")
        return _read_frame(self.process.stdout)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the worker and any tesseract it started
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=10)
        shutil.rmtree(self.office_profile, ignore_errors=True)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def main() -> None:
    # Tesseract on one thread: OpenMP's two threads ran 2-10x slower per page than one while the ingest
    # embeds on the other core (measured on 2 cores); one page at a time is what the worker does anyway
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    memory_bytes = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    office_profile = sys.argv[2] if len(sys.argv) > 2 else None
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # a converter's stray print must not corrupt the frames
    source = sys.stdin.buffer
    while True:
        try:
            data, extension, filename, ocr = _read_frame(source)
        except EOFError:
            return
        try:
            done = convert_to_markdown(data, extension, filename, OcrOptions(**ocr) if ocr else None, office_profile)
            reply = ("ok", (done.markdown, done.title, done.notes))
        except MemoryError:
            reply = ("error", ("MemoryError", "the parser ran out of memory"))
        except Exception as exc:  # every converter error goes back to the parent, which classifies it
            reply = ("error", (type(exc).__name__, str(exc)))
        try:
            _write_frame(out, reply)
        except Exception as exc:  # an unpicklable result must not kill the worker
            _write_frame(out, ("error", (type(exc).__name__, f"could not return the result: {exc}")))


if __name__ == "__main__":
    sys.path.pop(0)  # run by path: the indexes/ folder must not shadow top-level modules
    main()
