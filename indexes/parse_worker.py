"""A parse process: converts documents with markitdown outside the ingesting process.

The ingesting process talks to it through :class:`ParseWorker`; a file that takes longer than its time
limit gets the process killed and a fresh one started, and a memory limit (RLIMIT_AS) keeps one file
from exhausting the machine. Run as ``python -m indexes.parse_worker MEMORY_BYTES``; frames on
stdin/stdout are 8-byte big-endian lengths followed by a pickle.
"""

from __future__ import annotations

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
     ".html", ".htm", ".yaml", ".yml", ".log", ".eml"}
)
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def detect_charset(data: bytes) -> str | None:
    """The charset of text ``data``: a BOM's, else UTF-8 if it decodes, else charset-normalizer's best guess."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return best.encoding if best is not None else None


def convert_to_markdown(data: bytes, extension: str, filename: str) -> tuple[str, str]:
    """markitdown's conversion of ``data``: returns (markdown, title or ""). Raises markitdown's errors."""
    from markitdown import MarkItDown, StreamInfo

    charset = detect_charset(data) if extension in TEXT_EXTENSIONS else None
    info = StreamInfo(extension=extension or None, filename=filename, charset=charset)
    result = MarkItDown(enable_plugins=False).convert_stream(io.BytesIO(data), stream_info=info)
    return result.markdown or "", result.title or ""


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
            [sys.executable, "-m", "indexes.parse_worker", str(memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
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
        _write_frame(out, reply)


if __name__ == "__main__":
    main()
