"""indexes.chunker: header-aware chunks bounded by the embedder's own tokenizer."""

from __future__ import annotations

import random
import re

import pytest
from llama_index.core import Document

from enclave.contracts import Chunk, point_id
from enclave.indexes.chunker import MarkdownChunker

# every section draws its words from its own vocabulary, so a chunk mixing two sections shows
VOCAB = {
    "Guide": "welcome overview purpose audience scope",
    "Guide > Install": "download package archive verify checksum unpack binary path",
    "Guide > Configure > Options": "setting value default override flag toggle threshold option",
    "Guide > Data": "item row column table ab",
}
HEADING_WORDS = {"guide", "install", "configure", "empty", "options", "data"}
DOC_ID = "handbook:guide.md"
METADATA = {
    "source": "handbook", "title": "Guide", "uri": "file:///srv/guide.md", "groups": ["eng", "ops"],
    "classification": "internal", "version": "1-2", "content_hash": "abc123",
}


def _paragraph(rng: random.Random, vocab: str, sentences: int) -> str:
    words = vocab.split()
    out = []
    for _ in range(sentences):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 22)))
        out.append(sentence.capitalize() + ".")
    return " ".join(out)


def _long_markdown() -> str:
    rng = random.Random(42)
    table = "| item | row | column |\n|---|---|---|\n" + "\n".join(
        f"| item {i} | row {i * 7} | column {rng.random():.6f} |" for i in range(250)
    )
    return "\n\n".join([
        "# Guide",
        _paragraph(rng, VOCAB["Guide"], 4),
        "## Install",
        *(_paragraph(rng, VOCAB["Guide > Install"], rng.randint(10, 30)) for _ in range(6)),
        "## Configure",
        "### Empty",
        "### Options",
        *(_paragraph(rng, VOCAB["Guide > Configure > Options"], 25) for _ in range(2)),
        "## Data",
        "x" * 3000,  # one very long word without spaces
        "ab," * 1200,  # no spaces either, and 2400 word pieces
        table,
    ]) + "\n"


@pytest.fixture(scope="module")
def document() -> Document:
    return Document(id_=DOC_ID, text=_long_markdown(), metadata=dict(METADATA))


@pytest.fixture(scope="module")
def chunks(embedder, document: Document):
    return MarkdownChunker(tokenizer=embedder, max_tokens=embedder.max_tokens).run(document)


def test_every_chunk_fits_the_embedder(embedder, chunks) -> None:
    assert len(chunks) > 10
    sizes = [embedder.count_tokens(node.embedding_text) for node in chunks]  # the header counts too
    assert max(sizes) <= embedder.max_tokens, sizes
    assert all(node.text.strip() == node.text and node.text for node in chunks)


def test_no_text_is_lost(chunks, document: Document) -> None:
    joined = "\n".join(node.text for node in chunks)
    assert joined.count("x") >= 3000
    assert joined.count("ab,") >= 1200
    for i in range(250):
        assert f"| item {i} |" in joined


def test_sections_never_mix(chunks) -> None:
    assert [n.section for n in chunks][0] == "Guide"
    assert {n.section for n in chunks} == set(VOCAB)
    for node in chunks:
        section = node.section
        allowed = set(VOCAB[section].split()) | HEADING_WORDS
        words = set(re.findall(r"[a-z]+", node.text.lower()))
        foreign = {w for w in words - allowed if not re.fullmatch(r"x+", w) or section != "Guide > Data"}
        assert not foreign, (section, foreign, node.text[:120])
    # sections come in document order, each in one run
    order = [n.section for n in chunks]
    runs = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
    assert runs == list(VOCAB)


def test_heading_only_sections_merge_into_the_next(chunks) -> None:
    options = [n for n in chunks if n.section == "Guide > Configure > Options"]
    assert options
    first = options[0].text
    assert first.startswith("## Configure\n### Empty\n### Options")
    options = set(VOCAB["Guide > Configure > Options"].split())
    assert set(re.findall(r"[a-z]+", first.split("### Options", 1)[1].lower())) <= options
    # no chunk holds nothing but headings
    for node in chunks:
        body = [line for line in node.text.splitlines() if line.strip() and not line.startswith("#")]
        assert body, node.text


def test_ids_numbers_and_metadata(chunks) -> None:
    assert all(isinstance(n, Chunk) for n in chunks)
    assert [n.chunk for n in chunks] == list(range(len(chunks)))
    assert [n.id for n in chunks] == [point_id(DOC_ID, i) for i in range(len(chunks))]
    assert len({n.id for n in chunks}) == len(chunks)
    for node in chunks:
        assert (node.doc_id, node.source, node.title, node.uri, node.groups, node.classification, node.content_hash) == (
            DOC_ID, METADATA["source"], METADATA["title"], METADATA["uri"], tuple(METADATA["groups"]),
            METADATA["classification"], METADATA["content_hash"])


def test_deterministic_across_runs(embedder, chunks) -> None:
    again = MarkdownChunker(tokenizer=embedder, max_tokens=embedder.max_tokens).run(
        Document(id_=DOC_ID, text=_long_markdown(), metadata=dict(METADATA))
    )
    assert again == chunks


def test_point_id_is_uuid5_of_doc_and_number() -> None:
    assert point_id("a:b.md", 0) == point_id("a:b.md", 0)
    assert point_id("a:b.md", 0) != point_id("a:b.md", 1)
    assert point_id("a:b.md", 1) != point_id("a:c.md", 1)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", point_id("a:b.md", 3))


class WhitespaceTokenizer:
    """One token per whitespace-separated word."""

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        words = text.split()
        return [" ".join(words[i : i + max_tokens]) for i in range(0, len(words), max_tokens)]


def _words_doc(n_words: int, heading: str = "# Notes") -> Document:
    rng = random.Random(n_words)
    sentences, words = [], 0
    while words < n_words:
        length = rng.randint(5, 12)
        sentences.append(" ".join(f"w{rng.randint(0, 999)}" for _ in range(length)).capitalize() + ".")
        words += length
    return Document(id_="notes:n.md", text=f"{heading}\n\n" + " ".join(sentences), metadata={"title": "n"})


def test_chunk_tokens_is_the_target_size() -> None:
    chunker = MarkdownChunker(WhitespaceTokenizer(), max_tokens=200, chunk_tokens=50, overlap_tokens=0)
    assert (chunker.chunk_tokens, chunker.overlap_tokens) == (50, 0)
    document = _words_doc(1000)
    nodes = chunker.run(document)
    sizes = [len(n.text.split()) for n in nodes]
    assert max(sizes) <= 50
    assert min(sizes[:-1]) >= 35  # filled close to the target, not tiny pieces
    assert 20 <= len(nodes) <= 30
    assert sum(sizes) == len(document.text.split())  # every word once: no overlap asked


def test_overlap_repeats_words_between_chunks() -> None:
    chunker = MarkdownChunker(WhitespaceTokenizer(), max_tokens=200, chunk_tokens=60, overlap_tokens=15)
    document = _words_doc(600)
    nodes = chunker.run(document)
    assert sum(len(n.text.split()) for n in nodes) > len(document.text.split())
    assert max(len(n.text.split()) for n in nodes) <= 60


def test_chunk_tokens_is_capped_by_max_tokens() -> None:
    chunker = MarkdownChunker(WhitespaceTokenizer(), max_tokens=40, chunk_tokens=500, overlap_tokens=100)
    assert chunker.chunk_tokens == 40
    assert chunker.overlap_tokens == 10  # at most a quarter of a chunk
    nodes = chunker.run(_words_doc(400))
    assert max(len(n.text.split()) for n in nodes) <= 40


def test_default_chunk_tokens_is_max_tokens() -> None:
    chunker = MarkdownChunker(WhitespaceTokenizer(), max_tokens=80)
    assert chunker.chunk_tokens == 80
    assert max(len(n.text.split()) for n in chunker.run(_words_doc(800))) <= 80


def test_section_paths_and_trailing_heading() -> None:
    text = "# Handbook\n## Leave\n### Carry-over\nFive days carry over.\n## Sick\nCall in.\n## Appendix\n"
    nodes = MarkdownChunker(WhitespaceTokenizer(), max_tokens=100).run(Document(id_="h", text=text))
    assert [(n.section, n.text) for n in nodes] == [
        ("Handbook > Leave > Carry-over", "# Handbook\n## Leave\n### Carry-over\nFive days carry over."),
        ("Handbook > Sick", "## Sick\nCall in."),
        ("Handbook > Appendix", "## Appendix"),
    ]


def test_text_without_headings_and_empty_text() -> None:
    chunker = MarkdownChunker(WhitespaceTokenizer(), max_tokens=100)
    [node] = chunker.run(Document(id_="p", text="Just a plain paragraph."))
    assert node.section == ""
    assert node.text == "Just a plain paragraph."
    assert chunker.run(Document(id_="e", text="")) == []


def test_context_header_names_the_document_and_section_a_chunk_does_not_open_with() -> None:
    text = "# Handbook\n## Leave\n" + " ".join(f"Sentence number {i} about leave." for i in range(60))
    document = Document(id_="h", text=text, metadata={"title": "Staff handbook 2026"})
    nodes = MarkdownChunker(WhitespaceTokenizer(), max_tokens=60).run(document)
    assert len(nodes) > 3
    # the first chunk opens with its headings: only the title is left to say
    assert nodes[0].text.startswith("# Handbook\n## Leave")
    assert nodes[0].header == "Staff handbook 2026"
    # a chunk from the middle of the section names the document and the section path
    for node in nodes[1:]:
        assert not node.text.startswith("#")
        assert node.header == "Staff handbook 2026 > Handbook > Leave"
        assert node.embedding_text == f"{node.header}\n\n{node.text}"
        assert len(node.embedding_text.split()) <= 60  # header + text within max_tokens
    # the header is embedded, never stored: the payload holds the text alone
    assert "Staff handbook" not in nodes[1].payload(ingested_at="t")["text"]


def test_context_header_says_a_title_equal_to_the_heading_once() -> None:
    text = "# Leave policy\n\n" + " ".join(f"Sentence number {i} about leave." for i in range(40))
    nodes = MarkdownChunker(WhitespaceTokenizer(), max_tokens=50).run(
        Document(id_="p", text=text, metadata={"title": "Leave Policy"}))
    assert nodes[0].header == ""  # its own heading says the title
    assert nodes[0].embedding_text == nodes[0].text
    assert {n.header for n in nodes[1:]} == {"Leave Policy"}


def test_context_header_is_cut_and_can_be_turned_off() -> None:
    title = " ".join(f"t{i}" for i in range(100))
    document = Document(id_="t", text=" ".join(f"Word {i} here." for i in range(300)), metadata={"title": title})
    nodes = MarkdownChunker(WhitespaceTokenizer(), max_tokens=80).run(document)
    assert {n.header for n in nodes} == {" ".join(f"t{i}" for i in range(20))}  # a quarter of max_tokens
    assert max(len(n.embedding_text.split()) for n in nodes) <= 80
    plain = MarkdownChunker(WhitespaceTokenizer(), max_tokens=80, overlap_tokens=0, context_header=False).run(document)
    assert {n.header for n in plain} == {""}
    assert [n.embedding_text for n in plain] == [n.text for n in plain]
    assert " ".join(n.text for n in plain) == document.text  # nothing lost
