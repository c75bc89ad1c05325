"""The index manifest: the settings that shaped an index's stored vectors (embedder, chunker, BM25),
kept in its ledger by the first ingest. An index whose manifest differs from the configured settings is
refused with [IndexOutdated][enclave.flows.index_manifest.IndexOutdated], naming both sides and
``enclave reindex``: mixing two embedders' vectors in one index would rank by noise.
"""

from __future__ import annotations

from typing import Any

from enclave.indexes.index_backend import IndexBackend, IndexMismatch
from enclave.indexes.sync_ledger import SyncLedger
from enclave.settings import Bm25Settings, ChunkerSettings, EmbedderSettings, Settings

#: Embedder backends that give the same vectors for the same model (OpenVINO runs the sentence-transformers
#: model's own transformer): switching between them needs no re-index.
SAME_VECTORS = {"openvino": "sentence-transformers"}
#: The fields of a manifest that answering depends on (queries are embedded and tokenised with them);
#: ingesting depends on all of them.
ANSWER_FIELDS = ("embedder.backend", "embedder.model", "bm25.language")
#: What a manifest written before a field existed means by its absence: the behaviour of that time.
BEFORE_FIELD = {"chunker.context_header": False}


class IndexOutdated(IndexMismatch):
    """The index was built with other embedder, chunker or BM25 settings than the configured ones.
    ``differences`` maps each field (``embedder.model``, ``chunker.chunk_tokens``...) to (stored, configured)."""

    def __init__(self, message: str, differences: dict[str, tuple[Any, Any]]) -> None:
        super().__init__(message)
        self.differences = differences


def index_manifest(settings: Settings, dimension: int) -> dict[str, Any]:
    """The manifest an index built with ``settings`` gets: ``{"embedder": {"backend", "model"}, "dimension",
    "chunker": {...}, "bm25": {...}}`` (JSON-able)."""
    embedder = settings.embedder.model_dump(include={"backend", "model"})
    return {"embedder": embedder, "dimension": dimension, "chunker": settings.chunker.model_dump(),
            "bm25": settings.bm25.model_dump()}


def manifest_differences(manifest: dict[str, Any], settings: Settings, answering: bool = False) -> dict[str, tuple]:
    """Fields whose stored value differs from the configured one, as ``{"embedder.model": (stored,
    configured)}``; ``answering`` compares only ``ANSWER_FIELDS`` (the embedder and the BM25 language)."""
    configured = index_manifest(settings, manifest.get("dimension", 0))
    differences = {}
    for group in ("embedder", "chunker", "bm25"):
        stored, wanted = manifest.get(group, {}), configured[group]
        for key in sorted(set(stored) | set(wanted)):
            name = f"{group}.{key}"
            if answering and name not in ANSWER_FIELDS:
                continue
            before, now = stored.get(key, BEFORE_FIELD.get(name)), wanted.get(key)
            if name == "embedder.backend":
                before, now = SAME_VECTORS.get(before, before), SAME_VECTORS.get(now, now)
            if before != now:
                differences[name] = (stored.get(key, BEFORE_FIELD.get(name)), wanted.get(key))
    return differences


def check_manifest(index: IndexBackend, settings: Settings, answering: bool = False) -> dict[str, Any] | None:
    """The index's manifest (None for one that has none yet), after checking it against ``settings``.
    Raises [IndexOutdated][enclave.flows.index_manifest.IndexOutdated] when they differ (only the
    embedder and the BM25 language matter for ``answering``)."""
    manifest = SyncLedger(index).manifest()
    if manifest is None:
        return None
    differences = manifest_differences(manifest, settings, answering)
    if differences:
        said = "; ".join(f"{name} {stored!r} in the index, {wanted!r} in the settings"
                         for name, (stored, wanted) in differences.items())
        raise IndexOutdated(
            f"the index {settings.index.collection!r} was built with other settings than the configured ones ({said}): "
            "run `enclave reindex` to rebuild it with the settings beside the live one, which keeps answering "
            "until the switch (or set the settings back)", differences)
    return manifest


def settings_for_index(settings: Settings, manifest: dict[str, Any] | None) -> Settings:
    """``settings`` with the embedder, chunker and BM25 settings the index was built with (unchanged when
    there is no manifest): what a long-running reader adopts when ``enclave reindex`` switches it to a
    generation built with new ones."""
    if not manifest:
        return settings
    stored = dict(manifest.get("embedder", {}))
    if SAME_VECTORS.get(stored.get("backend"), stored.get("backend")) == \
            SAME_VECTORS.get(settings.embedder.backend, settings.embedder.backend):
        stored["backend"] = settings.embedder.backend  # the same vectors: keep the configured (faster) backend
    embedder = settings.embedder.model_copy(update=stored)
    return settings.model_copy(update={
        "embedder": EmbedderSettings.model_validate(embedder.model_dump()),
        "chunker": ChunkerSettings.model_validate(manifest.get("chunker", settings.chunker.model_dump())),
        "bm25": Bm25Settings.model_validate(manifest.get("bm25", settings.bm25.model_dump())),
    })
