"""``enclave backup`` and ``enclave restore``: the configured index to one file and back, while ``enclave
serve`` goes on answering and an ingest goes on writing.

Usage::

    from enclave.flows.backup_flow import backup_index, restore_index

    report = backup_index(settings, "/backups/enclave-2026-11-29.tar")
    report.manifest.points, report.bytes, report.seconds       # {"chunks": 113, ...}, 412160, 0.2
    restored = restore_index(settings, "/backups/enclave-2026-11-29.tar", force=True)
    restored.live, restored.previous                           # "enclave__20261129T...", "enclave"

**Backup** reads the live generation of the configured index (the file format, and how its three stores
are read at one point in time, are in [enclave.indexes.index_backup][]):

- embedded, held by no other process: this process opens it and reads it with its writes paused;
- embedded, owned by ``enclave serve``: the server writes the backup with its writes paused (an ingest
  writing through it waits for those seconds, answers go on) and streams it here;
- embedded, held by an ``enclave ingest`` run without a server: IndexLocked; back up after the run;
- a Qdrant server: read directly, the ledger before and after the chunks.

**Restore** never writes into the live index. It checks the file (every member's sha256) and that the
backup's embedder and BM25 language are the configured ones. It then loads the backup into a new
generation beside the live one and switches readers to it atomically, as ``enclave reindex`` does:
the ``.live`` file on Edge, the aliases on a server. A running ``enclave serve`` follows the switch
within ``server.follow_interval`` and needs no restart; ``enclave ingest`` and ``enclave status``
open the restored generation from then on. The previous generation is dropped once no process holds
it, within ``grace`` seconds. A restore that fails leaves the live index as it was and deletes its
new generation.

These are plain functions, not Prefect flows: a backup takes seconds and needs no flow run. Wrap them
in a flow of your own to schedule one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enclave.flows.index_location import generations, open_index
from enclave.flows.index_manifest import manifest_differences
from enclave.indexes.index_backend import IndexBackend, IndexMissing, Store
from enclave.indexes.index_backup import (
    BackupIncompatible,
    BackupManifest,
    BackupRefused,
    load_backup,
    verify_backup,
    write_backup,
)
from enclave.indexes.index_generations import IndexGenerations, ServerGenerations
from enclave.settings import Settings


@dataclass
class BackupReport:
    """What ``backup_index`` wrote: the file at ``path``, its [BackupManifest][enclave.indexes.index_backup.BackupManifest],
    the file's size in ``bytes`` and the ``seconds`` the backup took."""

    path: Path
    manifest: BackupManifest
    bytes: int
    seconds: float


@dataclass
class RestoreReport:
    """What ``restore_index`` did: the backup at ``path`` (its ``manifest``) is now the ``live`` generation;
    ``previous`` was live before it (None: there was no index), and ``dropped`` says whether it was deleted
    (False: a process still held it after the grace; ``enclave reindex --drop-stale`` later).
    ``outdated`` holds the chunker and BM25 fields that differ from the settings, as ``{"chunker.chunk_tokens":
    (in the backup, configured)}``: the next ingest asks for ``enclave reindex`` until they agree.
    ``seconds`` is the whole restore's time."""

    path: Path
    manifest: BackupManifest
    live: str
    previous: str | None
    dropped: bool
    seconds: float
    outdated: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def backup_index(settings: Settings, path: str | Path, index_generations: IndexGenerations | None = None) -> BackupReport:
    """Write a backup of the configured index's live generation to the file ``path`` (never overwritten).

    ``index_generations`` replaces the configured ones (tests pass a ``ServerGenerations`` over an
    in-memory client). Raises [BackupRefused][enclave.indexes.index_backup.BackupRefused] if ``path``
    exists, [IndexMissing][enclave.indexes.IndexMissing] when there is no index yet, and
    [IndexUnavailable][enclave.indexes.IndexUnavailable] (IndexLocked: an ingest without a server holds
    the embedded index) when it cannot be read.
    """
    started = time.perf_counter()
    generations_given = index_generations is not None
    chosen = index_generations or generations(settings)
    try:
        live = chosen.live()
        index = chosen.open(live) if generations_given else open_index(settings)
        try:
            manifest = write_backup(index, path, backend=settings.index.backend, collection=settings.index.collection,
                                    generation=live)
        finally:
            _release(index, chosen)
    finally:
        if not generations_given:
            _close_generations(chosen)
    return BackupReport(Path(path), manifest, Path(path).stat().st_size, time.perf_counter() - started)


def restore_index(settings: Settings, path: str | Path, force: bool = False, grace: float = 30.0,
                  index_generations: IndexGenerations | None = None) -> RestoreReport:
    """Make the backup at ``path`` the configured index's live generation; returns what was done.

    Refuses, before writing anything: a damaged file
    ([BackupCorrupt][enclave.indexes.index_backup.BackupCorrupt]); a backup in a newer format or whose
    embedder or BM25 language differ from the settings, so the restored index could not answer with them
    ([BackupIncompatible][enclave.indexes.index_backup.BackupIncompatible]); a live index that holds any
    point, unless ``force`` ([BackupRefused][enclave.indexes.index_backup.BackupRefused]). ``grace`` is
    how long processes may keep the previous generation open before it is deleted.
    ``index_generations`` replaces the configured ones. Raises
    [IndexUnavailable][enclave.indexes.IndexUnavailable] when the index cannot be reached.
    """
    started = time.perf_counter()
    manifest = verify_backup(path)
    outdated: dict[str, tuple[Any, Any]] = {}
    if manifest.index_manifest:
        differences = manifest_differences(manifest.index_manifest, settings, answering=True)
        if differences:
            said = "; ".join(f"{name} {stored!r} in the backup, {wanted!r} in the settings"
                             for name, (stored, wanted) in differences.items())
            raise BackupIncompatible(f"the backup's index was built with other settings than the configured ones ({said}): "
                                     "configure the backup's embedder and BM25 language to restore it")
        outdated = manifest_differences(manifest.index_manifest, settings)
    generations_given = index_generations is not None
    chosen = index_generations or generations(settings)
    try:
        previous = _live_generation(settings, chosen, generations_given, force)
        name = chosen.new_name()
        index = chosen.open(name, manifest.dimension)
        try:
            load_backup(path, index, manifest)
        except BaseException:
            _release(index, chosen)
            chosen.drop(name)
            raise
        _release(index, chosen)  # an embedded generation must be let go of before a server can follow the switch
        chosen.switch(name)
        dropped = True
        replaced_plain = isinstance(chosen, ServerGenerations) and previous == chosen.collection  # switch deleted it
        if previous is not None and previous != name and not replaced_plain:
            dropped = chosen.drop(previous, wait=grace)
    finally:
        if not generations_given:
            _close_generations(chosen)
    return RestoreReport(Path(path), manifest, name, previous, dropped, time.perf_counter() - started, outdated)


def _live_generation(settings: Settings, chosen: IndexGenerations, generations_given: bool, force: bool) -> str | None:
    """The live generation's name, or None when there is no index; refuses one that holds points unless ``force``."""
    live = chosen.live()
    try:
        index = chosen.open(live) if generations_given else open_index(settings)
    except IndexMissing:
        return None
    try:
        held = {str(store): n for store in Store if (n := index.count(store))}
    finally:
        _release(index, chosen)
    if held and not force:
        raise BackupRefused(f"the index {settings.index.collection!r} (generation {live}) is not empty ({held}): "
                            "pass --force (force=True) to replace it with the backup")
    return live


def _release(index: IndexBackend, chosen: IndexGenerations) -> None:
    """Close ``index``, except a server index opened through ``chosen``: it shares their client, which
    ``switch`` and ``drop`` still need (closing a ServerIndex closes its client)."""
    if getattr(index, "client", None) is not getattr(chosen, "client", object()):
        index.close()


def _close_generations(chosen: IndexGenerations) -> None:
    client = getattr(chosen, "client", None)
    if client is not None:
        client.close()
