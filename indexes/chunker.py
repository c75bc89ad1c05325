"""Header-aware chunking sized by the embedding model's own tokenizer.

LlamaIndex's node parsers (and nltk under them, 1-2 s to import) load when a chunker is built, not when
this module is imported: an ingest with nothing to chunk never loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from enclave.contracts import Chunk, point_id

if TYPE_CHECKING:
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

#: Seconds nltk may spend on one regular-expression match when the sentence splitter finds sentence
#: ends. nltk >= 3.10 runs every match under a wall-clock limit (``nltk.redos.DEFAULT_TIMEOUT``, 5 s) and
#: raises TimeoutError beyond it; punkt's own (linear) sentence-end pattern over a long section passes
#: 5 s when the machine is busy, which failed the whole ingest. The patterns are nltk's, not a caller's.
SENTENCE_REGEX_TIMEOUT = 300.0


def _allow_slow_sentence_regex() -> None:
    try:
        from nltk import redos
    except ImportError:  # nltk < 3.10 has no limit
        return
    if redos.DEFAULT_TIMEOUT is not None and redos.DEFAULT_TIMEOUT < SENTENCE_REGEX_TIMEOUT:
        redos.DEFAULT_TIMEOUT = SENTENCE_REGEX_TIMEOUT


class Tokenizer(Protocol):
    """What the chunker needs of the embedder's tokenizer."""

    def count_tokens(self, text: str) -> int:
        """Number of tokens in ``text``, special tokens excluded."""

    def split_by_tokens(self, text: str, max_tokens: int) -> list[str]:
        """``text`` cut into consecutive pieces of at most ``max_tokens`` tokens each."""


class MarkdownChunker:
    """Splits a parsed Markdown document into [Chunk][enclave.contracts.Chunk]s by section, then by
    sentence (LlamaIndex's ``MarkdownNodeParser`` and ``SentenceSplitter``), sized by the embedder's
    own tokenizer.

    Usage::

        chunker = MarkdownChunker(tokenizer=embedder, max_tokens=embedder.max_tokens)
        chunks = chunker.run(document)      # list[Chunk], each <= max_tokens tokens
        chunks[0].section                   # "Handbook > Leave > Carry-over"

    ``document`` is what [DocumentParser][enclave.indexes.DocumentParser] returns (a LlamaIndex
    ``Document`` whose ``id_`` is the doc id and whose metadata holds source, title, uri, doc_type,
    modified_at, groups, classification and content_hash). ``tokenizer`` counts and cuts tokens the
    way the embedder does (see [Tokenizer][enclave.indexes.chunker.Tokenizer]); ``max_tokens`` is the
    hard upper bound per chunk, so the embedder never truncates a chunk. ``chunk_tokens`` (default
    ``max_tokens``) is the target size and ``overlap_tokens`` the overlap between consecutive chunks
    of one section. Chunk ids are [point_id][enclave.contracts.point_id] of (doc id, chunk number).

    ``context_header`` (default on) gives each chunk a contextual header, ``Title > Section > Subsection``
    without the headings its own text already opens with, embedded before the text (see
    [Chunk.embedding_text][enclave.contracts.Chunk.embedding_text]): a chunk cut from the middle of a
    long section still names its document and section to the embedder and to BM25. The header's tokens
    count against ``chunk_tokens`` and ``max_tokens``; a header is cut to at most a quarter of ``max_tokens``
    and half of ``chunk_tokens``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_tokens: int,
        chunk_tokens: int | None = None,
        overlap_tokens: int = 32,
        context_header: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.chunk_tokens = min(chunk_tokens or max_tokens, max_tokens)
        self.overlap_tokens = min(overlap_tokens, self.chunk_tokens // 4)
        self.context_header = context_header
        from llama_index.core.node_parser import MarkdownNodeParser

        _allow_slow_sentence_regex()
        # include_metadata: the nodes must carry header_path, the parents of their section
        self._sections = MarkdownNodeParser(include_metadata=True, include_prev_next_rel=False)
        self._splitters: dict[int, SentenceSplitter] = {}

    def run(self, document: Document) -> list[Chunk]:
        """Chunk ``document``; returns the chunks in document order (possibly empty)."""
        meta = document.metadata
        title = str(meta.get("title", ""))
        pieces: list[tuple[str, str, str]] = []
        for section_path, text in self._sections_of(document):
            header = self._header(title, section_path)
            used = self.tokenizer.count_tokens(header) if header else 0
            for piece in self._splitter(self.chunk_tokens - used).split_text(text):
                for bounded in self._bound(piece, self.max_tokens - used):
                    if bounded.strip():
                        pieces.append((section_path, bounded.strip(), self._unsaid(header, bounded.strip())))
        return [
            Chunk(id=point_id(document.id_, number), doc_id=document.id_, chunk=number, text=text, section=section,
                  source=meta.get("source", ""), title=title, uri=meta.get("uri", ""),
                  doc_type=meta.get("doc_type", ""), modified_at=meta.get("modified_at") or "",
                  groups=tuple(meta.get("groups", ())), classification=str(meta.get("classification", "internal")),
                  content_hash=meta.get("content_hash", ""), header=header)
            for number, (section, text, header) in enumerate(pieces)
        ]

    def _splitter(self, budget: int) -> SentenceSplitter:
        """LlamaIndex's sentence splitter for pieces of at most ``budget`` tokens (one per budget)."""
        if budget not in self._splitters:
            from llama_index.core.node_parser import SentenceSplitter

            self._splitters[budget] = SentenceSplitter(
                chunk_size=budget,
                chunk_overlap=min(self.overlap_tokens, budget // 4),
                tokenizer=lambda text: range(self.tokenizer.count_tokens(text)),
                include_metadata=False,
                include_prev_next_rel=False,
            )
        return self._splitters[budget]

    def _header(self, title: str, section_path: str) -> str:
        """``Title > Section > Subsection`` (a part equal to the one before it once), cut to a quarter of
        ``max_tokens``; "" when headers are off or there is nothing to say."""
        if not self.context_header:
            return ""
        parts: list[str] = []
        for part in [title, *section_path.split(" > ")]:
            part = " ".join(part.split())
            if part and (not parts or parts[-1].casefold() != part.casefold()):
                parts.append(part)
        header = " > ".join(parts)
        cap = max(min(self.max_tokens // 4, self.chunk_tokens // 2), 1)
        if header and self.tokenizer.count_tokens(header) > cap:
            header = self.tokenizer.split_by_tokens(header, cap)[0].strip()
        return header

    @staticmethod
    def _unsaid(header: str, text: str) -> str:
        """``header`` without its trailing parts that ``text`` opens with as Markdown headings (a
        section's first chunk already names its section); "" when nothing is left."""
        if not header:
            return ""
        opening = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            opening.append(" ".join(line.lstrip("#").split()).casefold())
        parts = header.split(" > ")
        while parts and opening and parts[-1].casefold() == opening[-1]:
            parts.pop()
            opening.pop()
        return " > ".join(parts)

    def _sections_of(self, document: Document) -> list[tuple[str, str]]:
        """(section path, text) per Markdown section; heading-only sections join the next one."""
        sections: list[tuple[str, str]] = []
        pending_heading = ""
        pending_path = ""
        from llama_index.core import Document

        for node in self._sections.get_nodes_from_documents([Document(text=document.text, id_=document.id_)]):
            text = node.get_content()
            first_line, _, body = text.partition("\n")
            heading = first_line.lstrip("#").strip() if first_line.startswith("#") else ""
            parents = [p for p in node.metadata.get("header_path", "/").split("/") if p]
            path = " > ".join([*parents, heading] if heading else parents)
            if heading and not body.strip():
                pending_heading += text.strip() + "\n"
                pending_path = pending_path or path
                continue
            sections.append((path, pending_heading + text))  # the section of the content, the deepest
            pending_heading, pending_path = "", ""
        if pending_heading.strip():
            sections.append((pending_path, pending_heading))
        return sections

    def _bound(self, text: str, limit: int) -> Sequence[str]:
        """Enforce ``limit`` tokens: a piece the sentence splitter could not shrink (one very long
        'word', a table row without spaces) is cut at token boundaries."""
        if self.tokenizer.count_tokens(text) <= limit:
            return [text]
        out: list[str] = []
        for piece in self.tokenizer.split_by_tokens(text, limit):
            # a cut inside a word can re-tokenise into a few more pieces: cut such a piece finer
            out.extend(self._bound(piece, limit) if len(piece) < len(text) else self.tokenizer.split_by_tokens(piece, limit // 2))
        return out
