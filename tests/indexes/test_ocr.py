"""OCR in the parse worker: images and the scanned pages of PDFs are read by Tesseract within the parse
limits; a page OCR cannot read is noted; and a fact only in a scan is answered, citing the scan.

The scans are generated here: a page of text rendered by Pillow, slightly rotated, with noise, as a
scanner or a fax would give it."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import time

import pytest
from parse_cases import source_doc, survivors
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from enclave.indexes.parse_worker import OcrOptions
from enclave.indexes.parser import DocumentParser, ParseError

# Tesseract runs for seconds a file: make test runs these, the fast lane does not
pytestmark = pytest.mark.slow

if shutil.which("tesseract") is None:
    if os.environ.get("CI") == "true":
        pytest.fail("tesseract is not installed: `make ocr` installs it, and CI runs it", pytrace=False)
    pytest.skip("tesseract is not installed (run `make ocr`)", allow_module_level=True)

FIRE_DRILL = ("Memo from facilities. The annual fire drill at Halvard is held on the second Tuesday of "
              "March. Everyone gathers at assembly point Lindstrom by the north car park. The drill "
              "warden is Ingrid Solberg, reachable on extension 4471.")
BUDGET = "The travel budget for the Bergen office is NOK 84,000 for the year, approved by Ola Nordmann."


def scan(text: str, seed: int = 1, angle: float = 1.2, size: tuple[int, int] = (1700, 2200)) -> Image.Image:
    """A page of ``text`` at about 200 dpi, rotated by ``angle`` degrees, with speckle noise: a scan."""
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=40)
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) > size[0] - 300:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    for number, line in enumerate(lines):
        draw.text((150, 200 + number * 62), line, fill=0, font=font)
    rng = random.Random(seed)
    pixels = page.load()
    for _ in range(size[0] * size[1] // 200):
        pixels[rng.randrange(size[0]), rng.randrange(size[1])] = rng.choice((0, 160, 255))
    return page.rotate(angle, fillcolor=255, expand=False).filter(ImageFilter.GaussianBlur(0.6))


def image_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def recall(expected: str, got: str) -> float:
    found = set(words(got))
    wanted = words(expected)
    return sum(word in found for word in wanted) / len(wanted)


@pytest.fixture(scope="module")
def parser():
    parser = DocumentParser(timeout=120)
    yield parser
    parser.close()


@pytest.mark.parametrize("fmt", [("memo.png", "PNG"), ("memo.jpg", "JPEG"), ("memo.tiff", "TIFF"), ("memo.bmp", "BMP")])
def test_an_image_is_read_by_ocr(parser, fmt) -> None:
    name, kind = fmt
    data = image_bytes(scan(FIRE_DRILL).convert("RGB"), kind)
    document = parser.run(source_doc(name, data), data)
    assert recall(FIRE_DRILL, document.text) >= 0.9, document.text
    assert "Lindstrom" in document.text and "4471" in document.text
    assert document.metadata["doc_type"] == name.rsplit(".", 1)[1] and document.metadata["parse_notes"] == []


def test_a_multi_page_tiff_is_read_page_by_page(parser) -> None:
    first, second = scan(FIRE_DRILL), scan(BUDGET, seed=2, angle=-0.8)
    data = image_bytes(first, "TIFF", save_all=True, append_images=[second])
    text = parser.run(source_doc("pages.tiff", data), data).text
    assert text.startswith("## Page 1\n") and "\n## Page 2\n" in text
    page_one, page_two = text.split("## Page 2")
    assert recall(FIRE_DRILL, page_one) >= 0.9 and recall(BUDGET, page_two) >= 0.9


def test_a_pdf_of_scans_is_read_by_ocr(parser) -> None:
    data = image_bytes(scan(FIRE_DRILL).convert("RGB"), "PDF", resolution=200)  # an image on a page, no text layer
    document = parser.run(source_doc("memo.pdf", data), data)
    assert document.text.startswith("## Page 1\n")
    assert recall(FIRE_DRILL, document.text) >= 0.9


def test_a_mixed_pdf_ocrs_only_its_scanned_pages(parser, corpora) -> None:
    import pypdfium2

    # page 1: a PDF with a text layer (markitdown reads it); page 2: a scan, appended
    typed = (corpora / "example-docs" / "pdf" / "fake-memo.pdf").read_bytes()
    merged = pypdfium2.PdfDocument(typed)
    merged.import_pages(pypdfium2.PdfDocument(image_bytes(scan(FIRE_DRILL).convert("RGB"), "PDF", resolution=200)))
    out = io.BytesIO()
    merged.save(out)
    data = out.getvalue()

    document = parser.run(source_doc("mixed.pdf", data), data)
    typed_text, _, scanned = document.text.partition("## Scanned page 2\n")
    assert scanned, document.text[-500:]
    assert "Page 1" not in document.text  # the typed page is not OCR'd
    plain = DocumentParser(ocr=None)
    try:
        assert plain.run(source_doc("memo.pdf", typed), typed).text.strip() == typed_text.strip()
    finally:
        plain.close()
    assert recall(FIRE_DRILL, scanned) >= 0.9


def test_a_pdf_pdfium_cannot_open_keeps_the_text_markitdown_read(parser, corpora) -> None:
    # a user password pdfminer gets past and pdfium does not: the scanned pages are not looked for, and noted
    data = (corpora / "parser-extras" / "pypdf-resources" / "encryption" / "r5-user-password.pdf").read_bytes()
    document = parser.run(source_doc("r5.pdf", data), data)
    assert "pdf encryption test" in document.text
    [note] = document.metadata["parse_notes"]
    assert note.startswith("scanned pages not looked for: PdfiumError")


def test_a_page_without_text_is_noted_and_a_blank_image_is_skipped(parser) -> None:
    blank = Image.new("RGB", (1200, 1600), "white")
    data = image_bytes(blank, "PNG")
    with pytest.raises(ParseError) as info:
        parser.run(source_doc("blank.png", data), data)
    assert (info.value.status, info.value.reason, info.value.detail) == ("skipped", "no text", "OCR found no text")

    data = image_bytes(scan(FIRE_DRILL), "TIFF", save_all=True, append_images=[Image.new("L", (1700, 2200), 255)])
    document = parser.run(source_doc("two.tiff", data), data)
    assert document.metadata["parse_notes"] == ["page 2: OCR found no text"]
    assert recall(FIRE_DRILL, document.text) >= 0.9


def test_a_broken_image_fails_with_a_reason(parser) -> None:
    data = b"\x89PNG\r\n\x1a\n but nothing after the signature"
    with pytest.raises(ParseError) as info:
        parser.run(source_doc("broken.png", data), data)
    assert (info.value.status, info.value.reason) == ("failed", "corrupt or unreadable")


def test_ocr_off_skips_images_as_unsupported() -> None:
    parser = DocumentParser(ocr=None)
    data = image_bytes(scan(FIRE_DRILL), "PNG")
    with pytest.raises(ParseError) as info:
        parser.run(source_doc("memo.png", data), data)
    assert (info.value.status, info.value.reason) == ("skipped", "unsupported type")
    assert not parser.reads(".png") and parser.reads(".pdf")


def test_a_missing_language_is_no_ocr_engine() -> None:
    parser = DocumentParser(ocr=OcrOptions(languages=("klingon",)))
    data = image_bytes(scan(FIRE_DRILL), "PNG")
    try:
        with pytest.raises(ParseError) as info:
            parser.run(source_doc("memo.png", data), data)
    finally:
        parser.close()
    assert (info.value.status, info.value.reason) == ("skipped", "no OCR engine")
    assert "klingon" in info.value.detail


def test_ocr_past_the_time_limit_is_killed_with_its_tesseract() -> None:
    # pages big enough that Tesseract takes seconds on each: one that outlived the kill would still be running
    pages = [scan(FIRE_DRILL, seed=n).resize((3400, 4400)) for n in range(4)]
    data = image_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    parser = DocumentParser(timeout=60)
    try:
        parser.run(source_doc("warm.txt", b"start the worker"), b"start the worker")
        parser.timeout = 1.5  # each page takes Tesseract several seconds
        group = parser._worker.process.pid  # the worker leads its own process group; tesseract runs in it
        started = time.monotonic()
        with pytest.raises(ParseError) as info:
            parser.run(source_doc("long.tiff", data), data)
        assert time.monotonic() - started < 15
    finally:
        parser.close()
    assert (info.value.status, info.value.reason) == ("failed", "timeout")
    left = survivors(group)
    assert not left, f"processes of the killed parse worker outlived it: {left}"


def test_a_fact_only_in_a_scan_is_answered_citing_the_scan(tmp_path, embedder) -> None:
    from enclave.flows import AnswerPipeline, IngestPipeline, index_path
    from enclave.indexes import EdgeIndex
    from enclave.settings import GeneratorSettings, Settings, SourceSettings

    docs = tmp_path / "share"
    docs.mkdir()
    (docs / "fire-drill-memo.png").write_bytes(image_bytes(scan(FIRE_DRILL), "PNG"))
    (docs / "canteen.md").write_text("# Canteen\n\nThe canteen serves lunch from 11:00 to 13:30 on weekdays.\n",
                                     encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="share", path=docs, groups=["staff"])],
                        generators=[GeneratorSettings(name="extractive", kind="extractive")])
    index = EdgeIndex(index_path(settings), embedder.dimension)
    try:
        with IngestPipeline.from_settings(settings.model_copy(update={"ingest": settings.ingest.model_copy(
                update={"ocr": False})}), index=index, embedder=embedder) as pipeline:
            before = pipeline.run("share")
        [skipped] = [o for o in before.outcomes if o.doc_id.endswith(".png")]
        assert (skipped.status, skipped.reason) == ("skipped", "unsupported type")

        # OCR turned on (or Tesseract installed): the image is read on the next sync, its version unchanged
        with IngestPipeline.from_settings(settings, index=index, embedder=embedder) as pipeline:
            report = pipeline.run("share")
        [memo] = [o for o in report.outcomes if o.doc_id.endswith(".png")]
        assert memo.status == "updated" and memo.chunks >= 1
        assert report.counts().get("unchanged") == 1  # the Markdown file is not touched again

        pipeline = AnswerPipeline.from_settings(settings, embedder=embedder, index=index)
        answer = pipeline.ask("Who is the fire drill warden?", groups=["staff"])
        assert answer.answered and "Ingrid Solberg" in answer.text
        assert {c.doc_id for c in answer.citations} == {"share:fire-drill-memo.png"}
        assert pipeline.ask("Who is the fire drill warden?", groups=["other"]).answered is False
    finally:
        index.close()
