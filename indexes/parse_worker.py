"""A parse process: converts documents with markitdown outside the ingesting process.

The ingesting process talks to it through [ParseWorker][enclave.indexes.parse_worker.ParseWorker]; a
file that takes longer than its time limit gets the process killed and a fresh one started, and a
memory limit (RLIMIT_AS) keeps one file from exhausting the machine. Run as
``python .../enclave/indexes/parse_worker.py MEMORY_BYTES`` (by path, so the worker imports only the
standard library and markitdown, not the whole package); frames on stdin/stdout are 8-byte big-endian
lengths followed by a pickle.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
from typing import Any, BinaryIO

#: Extensions read as text: their charset is detected on the whole file, not a sample.
TEXT_EXTENSIONS = frozenset(
    {".txt", ".md", ".markdown", ".rst", ".org", ".csv", ".tsv", ".json", ".ndjson", ".jsonl", ".xml",
     ".html", ".htm", ".yaml", ".yml", ".log"}
)
#: Container formats: a file of one of these that reads as plain text is broken, not text.
BINARY_EXTENSIONS = frozenset({".pdf", ".docx", ".xlsx", ".pptx", ".xls", ".msg", ".epub", ".zip"})
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


def convert_to_markdown(data: bytes, extension: str, filename: str) -> tuple[str, str]:
    """markitdown's conversion of ``data`` (.eml through
    [email_to_markdown][enclave.indexes.parse_worker.email_to_markdown]): returns (markdown, title or "").
    Raises the converters' errors."""
    if extension == ".eml":
        return email_to_markdown(data)
    from markitdown import StreamInfo

    charset = detect_charset(data) if extension in TEXT_EXTENSIONS else None
    info = StreamInfo(extension=extension or None, filename=filename, charset=charset)
    result = _markitdown().convert_stream(io.BytesIO(data), stream_info=info)
    markdown = str(result.markdown or "")
    if extension in BINARY_EXTENSIONS and markdown.strip() == data.decode("utf-8", errors="replace").strip():
        # markitdown falls back to reading a broken file as plain text when its content sniffing says text
        raise ValueError(f"not a valid {extension} file: it holds only plain text")
    return markdown, str(result.title or "")  # plain str: a title may be a bs4 string


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
        status, payload = worker.convert(data, ".pdf", "report.pdf", timeout=60)
        # ("ok", (markdown, title)) or ("error", (exception type name, message))
        worker.stop()

    Raises TimeoutError when no answer comes within ``timeout`` seconds (the process is then killed)
    and EOFError when the process died (crash, out of memory).
    """

    def __init__(self, memory_bytes: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def convert(self, data: bytes, extension: str, filename: str, timeout: float) -> tuple[str, Any]:
        try:
            _write_frame(self.process.stdin, (data, extension, filename))
        except (BrokenPipeError, OSError) as exc:
            raise EOFError(f"the parse process is gone: {exc}") from None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise TimeoutError(f"no result within {timeout:g} s")
        return _read_frame(self.process.stdout)

    def stop(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def main() -> None:
    memory_bytes = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # a converter's stray print must not corrupt the frames
    source = sys.stdin.buffer
    while True:
        try:
            data, extension, filename = _read_frame(source)
        except EOFError:
            return
        try:
            reply = ("ok", convert_to_markdown(data, extension, filename))
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
