"""Backups of an index: one file with its chunks (vectors included), its sync ledger and its run log, read
at one point in time, and the restore of such a file into an empty index.

Usage::

    from enclave.indexes.index_backup import load_backup, verify_backup, write_backup

    manifest = write_backup(EdgeIndex(".enclave/index/enclave"), "/backups/enclave.tar",
                            backend="edge", collection="enclave", generation="enclave")
    manifest.points                      # {"chunks": 9743, "ledger": 5185, "runs": 4}
    verify_backup("/backups/enclave.tar")                     # raises BackupCorrupt if a byte changed
    load_backup("/backups/enclave.tar", EdgeIndex(new_folder, dimension=manifest.dimension))

``enclave backup`` and ``enclave restore`` ([enclave.flows.backup_flow][]) wrap these with the configured
index: its live generation, the serving process that owns it, and a restore into a new generation.

**The file** is an uncompressed tar (readable with ``tar tf``), written with mode 0600 because it holds
every chunk's text:

- ``manifest.json`` first: the [BackupManifest][enclave.indexes.index_backup.BackupManifest] (format
  version, Enclave version, backend, collection, generation, dense dimension, the index manifest
  with the embedder, chunker and BM25 settings, point counts, documents by status, created_at, and
  the sha256 and size of each data member);
- ``chunks.jsonl.gz``, ``ledger.jsonl.gz``, ``runs.jsonl.gz``: one point per line,
  ``{"id", "payload", "dense"?, "sparse"?}``; ``dense`` is the vector's little-endian float32 bytes
  in base64, ``sparse`` ``{"indices": uint32, "values": float32}`` the same way. Logical points and
  not the engine's files, so a backup of an Edge index restores onto a Qdrant server and back, and
  does not depend on how a Qdrant version lays out its segments.

**One point in time.** A backend that can hold back writes (an [EdgeIndex][enclave.indexes.EdgeIndex],
through ``writes_paused``) is read with its writers waiting at the gate, searches going on: the ledger,
runs and chunks then agree exactly, as if the ingest had been stopped between two writes. Because the
ingest's write order survives a crash at any point (``enclave.flows.ingest_tasks.upsert_chunks``), that
state is one the next sync completes. A Qdrant server cannot pause the other processes' writes, so
there the ledger is read before and after the chunks. An entry that changed between the two reads
belongs to a document whose chunks were being written meanwhile. It goes into the backup as
``pending`` (no version), so the first sync after a restore redoes that document, or deletes it if
the source dropped it. Every other entry matches its chunks, because an ingest writes a document's
ledger entry after its chunks.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from enclave.contracts import DocumentStatus
from enclave.indexes.index_backend import IndexBackend, Point, SparseVector, Store, now_iso
from enclave.indexes.remote_index import BackupBody
from enclave.indexes.sync_ledger import MANIFEST, LedgerEntry

#: What ``manifest.json`` calls the format, and the newest version this code reads and writes.
FORMAT = "enclave-index-backup"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
#: The member of each store.
DATA_FILES = {Store.CHUNKS: "chunks.jsonl.gz", Store.LEDGER: "ledger.jsonl.gz", Store.RUNS: "runs.jsonl.gz"}
#: How a backup was made consistent (``BackupManifest.consistency``).
WRITES_PAUSED = "writes paused"
LEDGER_BRACKETED = "ledger read before and after the chunks"
_BATCH = 256


class BackupError(RuntimeError):
    """A backup could not be written or restored; the message says why. The base of the three below."""


class BackupCorrupt(BackupError):
    """The file is not a sound backup: not a tar file, ``manifest.json`` missing or malformed, a member
    missing or extra, a member whose sha256 or size differs from the manifest, or a point that cannot be
    read. Nothing was written to any index."""


class BackupIncompatible(BackupError):
    """A sound backup that cannot go where it was asked to: written in a newer format than this Enclave
    reads, or holding vectors of another dimension (or another embedder) than the target's."""


class BackupRefused(BackupError):
    """Nothing was done because something would be overwritten: the backup file already exists, or the
    index to restore into is not empty."""


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds: ``manifest.json``.

    ``backend`` (``edge`` or ``server``), ``collection`` and ``generation`` name the index it was read
    from; ``dimension`` is its dense vector size; ``index_manifest`` the embedder, chunker and BM25
    settings its ledger recorded (None: none recorded). ``points`` counts the points per store
    (``{"chunks": n, "ledger": n, "runs": n}``), ``documents`` the ledger entries by status
    (``{"indexed": 12, "pending": 1}``). ``consistency`` says how the stores were read at one point
    in time (``writes paused``, or ``ledger read before and after the chunks``); ``pending`` lists
    the documents whose entries changed during the read and were stored as pending. ``files`` maps
    each data member to ``{"sha256": hex, "bytes": n}``. ``created_at`` is ISO 8601 UTC.
    """

    created_at: str
    enclave_version: str
    backend: str
    collection: str
    generation: str
    dimension: int
    index_manifest: dict[str, Any] | None
    points: dict[str, int]
    documents: dict[str, int]
    consistency: str
    files: dict[str, dict[str, Any]]
    pending: list[str] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        """The manifest as ``manifest.json`` holds it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> BackupManifest:
        """A manifest read from ``manifest.json``. Raises [BackupCorrupt][enclave.indexes.index_backup.BackupCorrupt]
        for one that is not an Enclave backup's, and
        [BackupIncompatible][enclave.indexes.index_backup.BackupIncompatible] for a newer format version."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupCorrupt(f"manifest.json is not an Enclave index backup's (format {FORMAT!r} expected)")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise BackupIncompatible(f"the backup is in format version {version!r}; this Enclave reads version "
                                     f"{FORMAT_VERSION} and older: restore it with a newer Enclave")
        try:
            manifest = cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
            int(manifest.dimension)
            sizes = {name: (str(meta["sha256"]), int(meta["bytes"])) for name, meta in manifest.files.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupCorrupt(f"manifest.json is incomplete or malformed: {exc!r}") from None
        if set(sizes) != set(DATA_FILES.values()):
            raise BackupCorrupt(f"manifest.json lists the members {sorted(sizes)}, not {sorted(DATA_FILES.values())}")
        return manifest

    @property
    def data_bytes(self) -> int:
        """The size of the data members together (compressed, as stored)."""
        return sum(int(meta["bytes"]) for meta in self.files.values())


def write_backup(index: IndexBackend, path: str | Path, *, backend: str, collection: str, generation: str) -> BackupManifest:
    """Write a backup of ``index`` to the file ``path``; returns its manifest.

    ``backend``, ``collection`` and ``generation`` are recorded in the manifest. An index that can hold
    back writes (Edge) is read with its writers waiting and its searches going on; a
    [RemoteIndex][enclave.indexes.RemoteIndex] has its owner write the backup that way and streams it
    here; any other backend with ``export_points`` (a Qdrant server) is read with the ledger read before
    and after the chunks (see the module's text). The file appears complete or not at all: it is written
    beside ``path`` under a temporary name, verified where it came over HTTP, then linked into place.
    Raises [BackupRefused][enclave.indexes.index_backup.BackupRefused] if ``path`` exists,
    [BackupError][enclave.indexes.index_backup.BackupError] for a backend that cannot export its points,
    and [IndexUnavailable][enclave.indexes.IndexUnavailable] when the index cannot be read.
    """
    path = Path(path)
    if path.exists():
        raise BackupRefused(f"{path} exists: a backup never overwrites a file; choose another path or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        download = getattr(index, "download_backup", None)
        if download is not None:  # the owner of an embedded index writes it; this process keeps it
            with _private_file(partial) as out:
                download(BackupBody(collection=collection, generation=generation), out)
                out.flush()
                os.fsync(out.fileno())
            manifest = verify_backup(partial)
        else:
            if getattr(index, "export_points", None) is None:
                raise BackupError(f"a {type(index).__name__} cannot export its points: back up the index it stands for")
            with tempfile.TemporaryDirectory(prefix=".enclave-backup-", dir=path.parent) as work:
                manifest = _export(index, Path(work), backend=backend, collection=collection, generation=generation)
                _pack(Path(work), manifest, partial)
        try:
            os.link(partial, path)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise BackupRefused(f"{path} appeared while the backup was written; it was left as it was") from None
        _sync_folder(path.parent)
        return manifest
    finally:
        partial.unlink(missing_ok=True)


def verify_backup(path: str | Path) -> BackupManifest:
    """The manifest of the backup at ``path``, after checking that the file holds exactly its members and
    that each one's sha256 and size match. Raises [BackupCorrupt][enclave.indexes.index_backup.BackupCorrupt],
    [BackupIncompatible][enclave.indexes.index_backup.BackupIncompatible] (a newer format), or
    [BackupError][enclave.indexes.index_backup.BackupError] when there is no file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"there is no backup file at {path}")
    try:
        with tarfile.open(path, "r:") as tar:
            members = {member.name: member for member in tar.getmembers()}
            if MANIFEST_FILE not in members:
                raise BackupCorrupt(f"{path} has no {MANIFEST_FILE}: it is not an Enclave index backup")
            manifest = BackupManifest.from_json(json.load(_member(tar, members[MANIFEST_FILE])))
            unexpected = sorted(set(members) - set(manifest.files) - {MANIFEST_FILE})
            missing = sorted(set(manifest.files) - set(members))
            if unexpected or missing:
                raise BackupCorrupt(f"{path} does not hold what its manifest lists (missing: {missing or 'none'}, "
                                    f"not listed: {unexpected or 'none'})")
            for name, meta in manifest.files.items():
                digest, size = _sha256(_member(tar, members[name]))
                if digest != meta["sha256"] or size != int(meta["bytes"]):
                    raise BackupCorrupt(f"{name} in {path} does not match the sha256 and size its manifest records: "
                                        "the file was changed or damaged after it was written")
    except (tarfile.TarError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupCorrupt(f"{path} is not a readable Enclave index backup: {exc}") from None
    return manifest


def backup_points(path: str | Path, store: Store) -> Iterator[Point]:
    """The points of ``store`` in the backup at ``path``, in the order they were read (id order). Reads
    without checking sums: call [verify_backup][enclave.indexes.index_backup.verify_backup] first.
    Raises [BackupCorrupt][enclave.indexes.index_backup.BackupCorrupt] for a point it cannot read."""
    try:
        with tarfile.open(path, "r:") as tar, gzip.open(_member(tar, tar.getmember(DATA_FILES[store]))) as lines:
            for line in lines:
                yield _decode(json.loads(line))
    except (tarfile.TarError, KeyError, TypeError, ValueError, EOFError, OSError, zlib.error) as exc:
        raise BackupCorrupt(f"{path}: a point of {DATA_FILES[store]} cannot be read: {exc!r}") from None


def load_backup(path: str | Path, index: IndexBackend, manifest: BackupManifest | None = None) -> BackupManifest:
    """Write every point of the backup at ``path`` into ``index``, which must be empty; returns the manifest.

    The file is verified first (pass ``manifest`` from [verify_backup][enclave.indexes.index_backup.verify_backup]
    to skip the second pass), so a damaged backup writes nothing. Load into a fresh index, or a new
    generation as ``enclave restore`` does: a load that stops midway leaves that index part-written.
    Raises [BackupIncompatible][enclave.indexes.index_backup.BackupIncompatible] when ``index`` holds
    vectors of another dimension, [BackupRefused][enclave.indexes.index_backup.BackupRefused] when it is
    not empty, [BackupCorrupt][enclave.indexes.index_backup.BackupCorrupt] when the file is damaged or
    the index ends with other point counts than the manifest's.
    """
    manifest = manifest or verify_backup(path)
    if index.dimension != manifest.dimension:
        raise BackupIncompatible(f"the backup holds vectors of size {manifest.dimension}, the index to restore into "
                                 f"{index.dimension}: it was built with another embedding model")
    held = {str(store): n for store in Store if (n := index.count(store))}
    if held:
        raise BackupRefused(f"the index to restore into is not empty ({held}): restore into an empty one")
    for store in (Store.RUNS, Store.CHUNKS, Store.LEDGER):  # the ledger last, as an ingest writes it
        for batch in _batched(backup_points(path, store), _BATCH):
            index.upsert(store, batch)
    counts = {str(store): index.count(store) for store in Store}
    if counts != {str(store): manifest.points.get(str(store)) for store in Store}:
        raise BackupCorrupt(f"the restored index holds {counts} points, the backup's manifest says {manifest.points}")
    return manifest


def reconcile_ledger(before: dict[str, dict[str, Any]],
                     after: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The ledger points (id -> payload) to back up with chunks read between the ledger reads ``before`` and
    ``after``, and the doc ids stored as ``pending``. An entry that differs between the two (written,
    rewritten or forgotten meanwhile) becomes a pending entry: its document's chunks may be half of one
    version and half of another, and the first sync after a restore redoes it (or deletes it if the
    source dropped it). The manifest and connector states keep their ``before`` value (a manifest
    written meanwhile, the ``after`` one)."""
    ledger, pending = dict(before), []
    for point_id in sorted(before.keys() | after.keys()):
        old, new = before.get(point_id), after.get(point_id)
        if old == new:
            continue
        payload = old if old is not None else new
        assert payload is not None
        if MANIFEST in payload:
            ledger[point_id] = old or new
        elif "state_of" not in payload:
            entry = LedgerEntry.from_payload(payload)
            pending.append(entry.doc_id)
            ledger[point_id] = _entry_payload(LedgerEntry(
                doc_id=entry.doc_id, source=entry.source, version="", content_hash="", chunks=0,
                status=DocumentStatus.PENDING, uri=entry.uri))
    return ledger, pending


# -- writing ------------------------------------------------------------------------------------------------------------

def _export(index: Any, work: Path, *, backend: str, collection: str, generation: str) -> BackupManifest:
    """The three stores into ``work`` as gzipped JSON lines, read at one point in time; their manifest."""
    pause = getattr(index, "writes_paused", None)
    with pause() if pause is not None else nullcontext():
        before = {p.id: p.payload for p in index.export_points(Store.LEDGER)}
        chunks = _write_points(work / DATA_FILES[Store.CHUNKS], index.export_points(Store.CHUNKS))
        runs = _write_points(work / DATA_FILES[Store.RUNS], index.export_points(Store.RUNS))
        after = before if pause is not None else {p.id: p.payload for p in index.export_points(Store.LEDGER)}
    ledger, pending = reconcile_ledger(before, after)
    entries = _write_points(work / DATA_FILES[Store.LEDGER], (Point(pid, payload) for pid, payload in ledger.items()))
    files = {DATA_FILES[store]: _file_meta(work / DATA_FILES[store]) for store in Store}
    index_manifest = next((p[MANIFEST] for p in ledger.values() if MANIFEST in p), None)
    statuses = Counter(str(p.get("status")) for p in ledger.values() if MANIFEST not in p and "state_of" not in p)
    return BackupManifest(
        created_at=now_iso(), enclave_version=_enclave_version(), backend=backend, collection=collection,
        generation=generation, dimension=int(index.dimension), index_manifest=index_manifest,
        points={str(Store.CHUNKS): chunks, str(Store.LEDGER): entries, str(Store.RUNS): runs},
        documents=dict(sorted(statuses.items())),
        consistency=WRITES_PAUSED if pause is not None else LEDGER_BRACKETED, files=files, pending=pending)


def _write_points(path: Path, points: Iterable[Point]) -> int:
    count = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        for point in points:
            out.write(json.dumps(_encode(point), ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
            count += 1
    return count


def _pack(work: Path, manifest: BackupManifest, target: Path) -> None:
    """The tar file: manifest.json first, then the data members, with mode 0600, flushed to disk."""
    with _private_file(target) as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False).encode("utf-8")
            tar.addfile(_tar_info(MANIFEST_FILE, len(data)), io.BytesIO(data))
            for name in manifest.files:
                with open(work / name, "rb") as member:
                    tar.addfile(_tar_info(name, (work / name).stat().st_size), member)
        out.flush()
        os.fsync(out.fileno())


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    return info


def _private_file(path: Path) -> IO[bytes]:
    """A new file only its owner can read (a backup holds every chunk's text)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _file_meta(path: Path) -> dict[str, Any]:
    with open(path, "rb") as data:
        digest, size = _sha256(data)
    return {"sha256": digest, "bytes": size}


def _sha256(stream: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while block := stream.read(1 << 20):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    stream = tar.extractfile(member)
    if stream is None:
        raise BackupCorrupt(f"{member.name} in the backup is not a regular file")
    return stream


def _enclave_version() -> str:
    try:
        return metadata.version("enclave")
    except metadata.PackageNotFoundError:
        return "unknown"


def _entry_payload(entry: LedgerEntry) -> dict[str, Any]:
    payload = asdict(entry)
    payload["status"] = str(entry.status)
    return payload


# -- points as JSON lines --------------------------------------------------------------------------------------------

def _b64(values: Any, dtype: str) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype)


def _encode(point: Point) -> dict[str, Any]:
    line: dict[str, Any] = {"id": point.id, "payload": point.payload}
    if point.dense is not None:
        line["dense"] = _b64(point.dense, "<f4")
    if point.sparse is not None:
        line["sparse"] = {"indices": _b64(point.sparse.indices, "<u4"), "values": _b64(point.sparse.values, "<f4")}
    return line


def _decode(line: dict[str, Any]) -> Point:
    dense = _unb64(line["dense"], "<f4").tolist() if "dense" in line else None
    sparse = None
    if "sparse" in line:
        indices, values = _unb64(line["sparse"]["indices"], "<u4"), _unb64(line["sparse"]["values"], "<f4")
        if len(indices) != len(values):
            raise ValueError(f"point {line['id']}: {len(indices)} sparse indices but {len(values)} values")
        sparse = SparseVector(tuple(indices.tolist()), tuple(values.tolist()))
    if not isinstance(line["payload"], dict):
        raise ValueError(f"point {line['id']}: the payload is not an object")
    return Point(str(line["id"]), line["payload"], dense, sparse)


def _batched(points: Iterable[Point], size: int) -> Iterator[list[Point]]:
    batch: list[Point] = []
    for point in points:
        batch.append(point)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
