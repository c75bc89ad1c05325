"""What the parser reads of a corpus, with and without OCR and LibreOffice: outcomes by reason, time,
OCR time per page, the added chunks and the parse worker's peak memory.

Run: ``.venv/bin/python bench/parse_corpus.py [--corpus example-docs parser-extras] [--json FILE]``.
About 10 minutes on 2 cores (two passes over ../shared/corpora/example-docs and parser-extras, or
$ENCLAVE_TEST_CORPORA).

Each file goes through the production [DocumentParser][enclave.indexes.DocumentParser] (its parse
worker, limits and classification) and [MarkdownChunker][enclave.indexes.chunker.MarkdownChunker], as
the ingest flow runs them, twice in this process:

- **before**: ``ocr=None`` and LibreOffice hidden from the worker (its PATH has every program but
  ``soffice`` / ``libreoffice``): what Enclave read before OCR and office conversion;
- **after**: the defaults (Tesseract, English, 300 dpi; LibreOffice headless).

Printed per pass: outcomes by status and reason, files that changed outcome, parse seconds in all,
chunks (as the default embedder's tokenizer cuts them); for OCR: pages read and seconds per page
(images and scanned PDF pages; each file's parse time over its pages); the peak RSS of the parse
worker and the programs it ran (``getrusage(RUSAGE_CHILDREN)`` after each pass, its worker closed:
the largest process this process has waited for, so far).
Embedding is not run: the added ingest time is the added parse time plus the added chunks at the
flow's measured chunks/s (README, Benchmarks). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from enclave.connectors.filesystem import FilesystemConnector
from enclave.indexes import DocumentParser, ParseError
from enclave.indexes.chunker import MarkdownChunker
from enclave.indexes.embedder import DenseEmbedder
from enclave.indexes.parse_worker import IMAGE_EXTENSIONS

CORPORA = Path(os.environ.get("ENCLAVE_TEST_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
HIDDEN = {"soffice", "libreoffice"}


def path_without_libreoffice(folder: Path) -> str:
    """A PATH of one folder that links every program on the current PATH but LibreOffice's."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = folder / name
            if name not in HIDDEN and not target.exists():
                target.symlink_to(os.path.join(directory, name))
    return str(folder)


def run_pass(label: str, corpora: list[str], parser: DocumentParser, chunker: MarkdownChunker) -> dict:
    """Parse every file of ``corpora`` with ``parser`` (closed at the end, so its last worker is waited for)."""
    try:
        return _parse_all(label, corpora, parser, chunker)
    finally:
        parser.close()


def _parse_all(label: str, corpora: list[str], parser: DocumentParser, chunker: MarkdownChunker) -> dict:
    outcomes, seconds, chunks, ocr_pages, ocr_seconds = {}, 0.0, 0, 0, 0.0
    for name in corpora:
        connector = FilesystemConnector(name, CORPORA / name)
        for doc in connector.list_documents():
            data = connector.fetch(doc)
            started = time.perf_counter()
            try:
                document = parser.run(doc, data)
            except ParseError as exc:
                spent = time.perf_counter() - started
                outcomes[doc.doc_id] = (str(exc.status), exc.reason)
            else:
                spent = time.perf_counter() - started
                pieces = chunker.run(document)
                chunks += len(pieces)
                outcomes[doc.doc_id] = ("indexed", "")
                pages = document.text.count("## Page ") + document.text.count("## Scanned page ")
                if doc.extension in IMAGE_EXTENSIONS:
                    pages = max(pages, 1)
                if pages:
                    ocr_pages += pages
                    ocr_seconds += spent
            seconds += spent
    parser.close()  # the worker is waited for: its peak counts in RUSAGE_CHILDREN (with Tesseract's and LibreOffice's)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = Counter(f"{status}: {reason}" if reason else status for status, reason in outcomes.values())
    print(f"\n== {label}: {len(outcomes)} files, parse {seconds:.1f} s, {chunks} chunks, worker peak RSS {peak:.0f} MiB")
    for key, count in sorted(counts.items()):
        print(f"  {key:40s} {count}")
    if ocr_pages:
        print(f"  OCR: {ocr_pages} pages in files read by OCR, {ocr_seconds:.1f} s, {ocr_seconds / ocr_pages:.2f} s per page")
    return {"outcomes": outcomes, "seconds": seconds, "chunks": chunks, "ocr_pages": ocr_pages,
            "ocr_seconds": ocr_seconds, "peak_rss_mib": peak, "counts": dict(counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="+", default=["example-docs", "parser-extras"])
    parser.add_argument("--json", type=Path, help="write both passes' results here")
    args = parser.parse_args()
    missing = [c for c in args.corpus if not (CORPORA / c).is_dir()]
    if missing:
        raise SystemExit(f"{missing} not found under {CORPORA} (set ENCLAVE_TEST_CORPORA)")
    embedder = DenseEmbedder()
    chunker = MarkdownChunker(embedder, embedder.max_tokens)
    print(f"tesseract: {shutil.which('tesseract')}, soffice: {shutil.which('soffice')}, corpora: {args.corpus}")

    with tempfile.TemporaryDirectory(prefix="enclave-bench-path-") as folder:
        saved = os.environ["PATH"]
        os.environ["PATH"] = path_without_libreoffice(Path(folder))
        try:
            before = run_pass("before (no OCR, no LibreOffice)", args.corpus, DocumentParser(ocr=None), chunker)
        finally:
            os.environ["PATH"] = saved
    after = run_pass("after (OCR + LibreOffice)", args.corpus, DocumentParser(), chunker)

    changed = {doc_id: (before["outcomes"][doc_id], outcome) for doc_id, outcome in after["outcomes"].items()
               if before["outcomes"].get(doc_id) != outcome}
    print(f"\n== {len(changed)} files changed outcome")
    for doc_id, (was, now) in sorted(changed.items()):
        print(f"  {doc_id}: {' '.join(filter(None, was))} -> {' '.join(filter(None, now))}")
    print(f"\nadded parse time {after['seconds'] - before['seconds']:.1f} s; added chunks {after['chunks'] - before['chunks']}")
    if args.json:
        args.json.write_text(json.dumps({"before": before, "after": after}, indent=1, default=list), encoding="utf-8")


if __name__ == "__main__":
    main()
