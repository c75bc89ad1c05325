"""indexes.parser: markitdown in a worker process; skipped and failed files with a reason; time limit."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

from enclave.connectors import FilesystemConnector
from enclave.contracts import SourceDocument
from enclave.indexes.parser import DocumentParser, ParseError

MARKDOWN = b"""# Leave policy

Staff get twenty-five days of paid leave per year.

## Carry-over

Up to five unused days carry over to the next year.
"""


@pytest.fixture(scope="module")
def parser() -> Iterator[DocumentParser]:
    parser = DocumentParser(max_bytes=64 * 1024, timeout=60)
    yield parser
    parser.close()


def _doc(tmp_path: Path, name: str, data: bytes, **labels) -> SourceDocument:
    """Write ``data`` to ``tmp_path/src/name`` and return its SourceDocument from the filesystem connector."""
    root = tmp_path / "src"
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    docs = {d.doc_id: d for d in FilesystemConnector("test", root, **labels).list_documents()}
    return docs[f"test:{name}"]


def _parse(parser: DocumentParser, doc: SourceDocument):
    return parser.run(doc, Path(url2pathname(urlsplit(doc.uri).path)).read_bytes())  # the file the connector listed


def test_markdown(parser: DocumentParser, tmp_path: Path) -> None:
    doc = _doc(tmp_path, "hr/leave.md", MARKDOWN, groups=["hr"], classification="confidential")
    document = _parse(parser, doc)
    assert document.id_ == "test:hr/leave.md"
    assert "# Leave policy" in document.text
    assert "twenty-five days" in document.text
    assert "## Carry-over" in document.text
    meta = document.metadata
    assert meta["content_hash"] == SourceDocument.content_hash(MARKDOWN)
    assert meta["title"] == "leave.md"  # markdown has no title of its own: the file name
    assert meta["groups"] == ["hr"]
    assert meta["classification"] == "confidential"
    assert meta["source"] == "test"
    assert meta["uri"] == doc.uri
    assert meta["version"] == doc.version


def test_html_title_is_used(parser: DocumentParser, tmp_path: Path) -> None:
    html = b"<html><head><title>Expense rules</title></head><body><h1>Expenses</h1><p>Keep receipts.</p></body></html>"
    document = _parse(parser, _doc(tmp_path, "expenses.html", html))
    assert document.metadata["title"] == "Expense rules"
    assert "Keep receipts." in document.text


def test_utf16_text_with_bom(parser: DocumentParser, tmp_path: Path) -> None:
    text = "Grüße aus Zürich: naïve café, 東京 and ½ price.\nSecond line."
    data = text.encode("utf-16")  # starts with a BOM
    assert data[:2] in (b"\xff\xfe", b"\xfe\xff")
    document = _parse(parser, _doc(tmp_path, "greeting.txt", data))
    assert "Grüße aus Zürich" in document.text
    assert "東京" in document.text
    assert "\x00" not in document.text


def test_latin1_text(parser: DocumentParser, tmp_path: Path) -> None:
    text = "Señor Muñoz, ¿dónde está la estación? Años de café en Málaga. " * 3
    data = text.encode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    document = _parse(parser, _doc(tmp_path, "menu.txt", data))
    assert "Señor Muñoz, ¿dónde está la estación?" in document.text


def test_latin1_french_text(parser: DocumentParser, tmp_path: Path) -> None:
    text = "Le café coûte deux euros à la cafétéria; élève, garçon, déjà vu, où est la forêt? " * 5
    document = _parse(parser, _doc(tmp_path, "menu-fr.txt", text.encode("latin-1")))
    assert "café coûte deux euros à la cafétéria" in document.text
    assert "garçon" in document.text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\t\n ", "empty"),
        ("sound.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "unsupported type"),
        ("clip.MP4", b"\x00\x00\x00\x18ftypmp42", "unsupported type"),
    ],
)
def test_skipped(parser: DocumentParser, tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        _parse(parser, _doc(tmp_path, name, data))
    assert info.value.status == "skipped"
    assert info.value.reason == reason


def test_too_large_is_skipped(parser: DocumentParser, tmp_path: Path) -> None:
    data = b"word " * (parser.max_bytes // 5 + 1)
    assert len(data) > parser.max_bytes
    with pytest.raises(ParseError) as info:
        _parse(parser, _doc(tmp_path, "big.txt", data))
    assert (info.value.status, info.value.reason) == ("skipped", "too large")
    assert str(parser.max_bytes) in info.value.detail


def test_corrupt_pdf_fails_with_a_reason(parser: DocumentParser, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(8192)  # random bytes, deterministic across runs
    with pytest.raises(ParseError) as info:
        _parse(parser, _doc(tmp_path, "broken.pdf", data))
    assert (info.value.status, info.value.reason) == ("failed", "corrupt or unreadable")
    assert "PDF" in info.value.detail  # the underlying message is kept


def test_encrypted_office_file_fails_encrypted(parser: DocumentParser, tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + random.Random(8).randbytes(4096)
    with pytest.raises(ParseError) as info:
        _parse(parser, _doc(tmp_path, "salaries.xlsx", data))
    assert (info.value.status, info.value.reason) == ("failed", "encrypted")


def test_encrypted_pdf_from_corpora(parser: DocumentParser, corpora: Path) -> None:
    folder = corpora / "parser-extras" / "pypdf-resources" / "encryption"
    if not (folder / "r4-user-password.pdf").is_file():
        pytest.skip(f"{folder}/r4-user-password.pdf not in this copy of the corpora")
    docs = {d.title: d for d in FilesystemConnector("pypdf", folder).list_documents()}
    with pytest.raises(ParseError) as info:
        _parse(parser, docs["r4-user-password.pdf"])
    assert (info.value.status, info.value.reason) == ("failed", "encrypted")
    # and the unencrypted twin parses
    assert _parse(parser, docs["unencrypted.pdf"]).text.strip()


def test_parse_error_message() -> None:
    error = ParseError("failed", "encrypted", "needs a password")
    assert str(error) == "failed: encrypted (needs a password)"
    assert str(ParseError("skipped", "empty")) == "skipped: empty"


def test_timeout_then_next_parse_works(tmp_path: Path) -> None:
    doc = _doc(tmp_path, "leave.md", MARKDOWN)
    # a fresh worker must import markitdown (seconds) before it can answer: 1 ms always runs out
    parser = DocumentParser(timeout=0.001)
    try:
        with pytest.raises(ParseError) as info:
            _parse(parser, doc)
        assert (info.value.status, info.value.reason) == ("failed", "timeout")
        assert parser._worker is None  # the stuck worker was stopped
        parser.timeout = 60
        document = _parse(parser, doc)  # a new worker starts
        assert "twenty-five days" in document.text
        assert parser._worker is not None and parser._worker.alive
    finally:
        parser.close()
    assert parser._worker is None
