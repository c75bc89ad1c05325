"""Embedding throughput of the default embedder by batch size, on real 256-word-piece chunks.

Run: ``.venv/bin/python bench/embedder_batch.py [--chunks 160]``. Prints chunks/s per batch size and
the ratio to batch 32 (sentence-transformers' default), measured in this one process run. The
chunks are Enclave's own: War and Peace from ../shared/corpora (or $ENCLAVE_TEST_CORPORA) through
the real parser and chunker, so each is as long as ingestion makes them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from enclave.connectors import FilesystemConnector  # noqa: E402
from enclave.indexes import DenseEmbedder, DocumentParser, MarkdownChunker  # noqa: E402

CORPORA = Path(os.environ.get("ENCLAVE_TEST_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))


def chunk_texts(embedder: DenseEmbedder, count: int) -> list[str]:
    connector = FilesystemConnector("bench", CORPORA / "example-docs", include=["book-war-and-peace-1225p.txt"])
    [doc] = list(connector.list_documents())
    parser = DocumentParser()
    try:
        document = parser.run(doc, connector.fetch(doc))
    finally:
        parser.close()
    chunks = MarkdownChunker(embedder, embedder.max_tokens).run(document)
    return [chunk.text for chunk in chunks[:count]]


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--chunks", type=int, default=160)
    options = args.parse_args()

    embedder = DenseEmbedder()
    texts = chunk_texts(embedder, options.chunks)
    tokens = sum(embedder.count_tokens(t) for t in texts) / len(texts)
    embedder.model.encode(texts[:16])  # warm up
    rates = {}
    for batch in (8, 16, 32):
        started = time.perf_counter()
        embedder.model.encode(texts, batch_size=batch)
        rates[batch] = len(texts) / (time.perf_counter() - started)
    print(f"{len(texts)} chunks, {tokens:.0f} word pieces on average")
    for batch, rate in rates.items():
        print(f"batch {batch:>2}: {rate:6.1f} chunks/s  ratio to batch 32: {rate / rates[32]:.2f}")


if __name__ == "__main__":
    main()
