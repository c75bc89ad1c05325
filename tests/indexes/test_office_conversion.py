"""Legacy Office and OpenDocument files (.doc, .ppt, .rtf, .odt...) through LibreOffice headless in the
parse worker: read as their OOXML conversion, under the worker's time limit (a conversion past it is
killed with the worker), with a clean profile per worker; without LibreOffice they are skipped with a
reason, and read on the first sync after it is installed."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest
from parse_cases import source_doc, survivors

from enclave.indexes.parser import DocumentParser, ParseError

# LibreOffice runs for seconds a file: make test runs these, the fast lane does not
pytestmark = pytest.mark.slow

if shutil.which("soffice") is None:
    if os.environ.get("CI") == "true":
        pytest.fail("LibreOffice is not installed: `make office` installs it, and CI runs it", pytrace=False)
    pytest.skip("LibreOffice is not installed (run `make office`)", allow_module_level=True)

# file in example-docs -> words its text must hold
EXPECTED = {
    "fake.doc": "Lorem ipsum dolor sit amet",
    "simple.doc": "This is my first thought",
    "fake-doc-emphasized-text.doc": "Header Col 1",
    "fake-doc.rtf": "My first paragraph",
    "fake-power-point.ppt": "Adding a Bullet Slide",
    "fake.odt": "Lorem ipsum dolor sit amet",
    "simple.odt": "This is my first thought",
}


@pytest.fixture(scope="module")
def parser():
    parser = DocumentParser(timeout=120)
    yield parser
    parser.close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_legacy_file_is_read_through_libreoffice(parser, corpora, name) -> None:
    data = (corpora / "example-docs" / name).read_bytes()
    document = parser.run(source_doc(name, data), data)
    assert EXPECTED[name] in document.text
    assert "\\rtf1" not in document.text and "\\par" not in document.text  # RTF read as text, not as markup
    assert document.metadata["doc_type"] == name.rsplit(".", 1)[1]


@pytest.mark.parametrize("name", ["eng_spa_mult.doc", "eng_spa_mult.ppt"])
def test_an_ooxml_file_under_a_legacy_name_is_read_by_its_content(parser, corpora, name) -> None:
    data = (corpora / "example-docs" / "language-docs" / name).read_bytes()
    assert data.startswith(b"PK\x03\x04")  # a .docx / .pptx named .doc / .ppt
    assert "All human beings are born free and equal" in parser.run(source_doc(name, data), data).text


def test_a_corrupt_legacy_file_fails_with_a_reason(parser) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + random.Random(3).randbytes(20_000)  # an OLE signature, then noise
    with pytest.raises(ParseError) as info:
        parser.run(source_doc("broken.doc", data), data)
    assert info.value.status == "failed" and info.value.reason
    assert "LibreOffice" in info.value.detail or info.value.reason == "encrypted"


def test_a_conversion_past_the_time_limit_is_killed_with_libreoffice(corpora) -> None:
    data = (corpora / "example-docs" / "fake-power-point.ppt").read_bytes()
    parser = DocumentParser(timeout=60)
    try:
        parser.run(source_doc("warm.txt", b"start the worker"), b"start the worker")
        parser.timeout = 0.3  # LibreOffice needs more than a second to start
        worker = parser._worker
        group, profile = worker.process.pid, worker.office_profile
        started = time.monotonic()
        with pytest.raises(ParseError) as info:
            parser.run(source_doc("slides.ppt", data), data)
        assert time.monotonic() - started < 10
    finally:
        parser.close()
    assert (info.value.status, info.value.reason) == ("failed", "timeout")
    left = survivors(group)
    assert not left, f"processes of the killed parse worker outlived it: {left}"
    assert not Path(profile).exists()  # the worker's LibreOffice profile goes with it


def test_without_libreoffice_legacy_files_are_skipped_with_a_reason(corpora, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # the worker starts by absolute path and inherits this
    parser = DocumentParser()
    data = (corpora / "example-docs" / "fake.doc").read_bytes()
    try:
        assert not parser.reads(".doc") and not parser.reads(".odt") and parser.reads(".docx")
        with pytest.raises(ParseError) as info:
            parser.run(source_doc("fake.doc", data), data)
    finally:
        parser.close()
    assert (info.value.status, info.value.reason) == ("skipped", "no office converter")
    assert "make office" in info.value.detail
