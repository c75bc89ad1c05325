"""The audit log of external calls: one JSON line per call, appended and synced to disk before the
answer returns, never rewritten. ``enclave audit`` reads it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar


@dataclass
class AuditRecord:
    """One external call, or one refused by the egress policy.

    ``time``: ISO 8601 UTC; ``principal``: who asked; ``outcome``: ``sent`` (the generator answered),
    ``failed`` (it was called and failed: what was sent still left) or ``refused`` (the policy kept it
    local: nothing left); ``chunks_sent`` / ``chunks_withheld``: chunk ids; ``redactions``: spans
    redacted by entity type; ``cost`` in US dollars.
    """

    time: str
    principal: str
    generator: str
    model: str
    outcome: str
    chunks_sent: list[str] = field(default_factory=list)
    chunks_withheld: list[str] = field(default_factory=list)
    redactions: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    reason: str = ""


Record = TypeVar("Record")


def now_iso() -> str:
    """The current time, ISO 8601 UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JsonLinesLog(Generic[Record]):
    """An append-only JSON Lines file of dataclass records, safe for threads of one process and for
    several processes appending (each record is one ``write`` to a file opened with O_APPEND).

    Usage::

        log = AuditLog(Path(".enclave/audit.jsonl"))
        log.append(AuditRecord(time=now, principal="ola", generator="openai", model="gpt-4o-mini", outcome="sent"))
        [r.generator for r in log.records(since=datetime(2026, 11, 1, tzinfo=UTC))]

    ``append`` returns once the line is flushed and fsynced. A line that cannot be read back (a torn
    last line after a power cut) is skipped by ``records``, never repaired in place; the next append
    starts on a new line, so it is not lost with it.
    """

    record_type: type

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: Record) -> None:
        line = (json.dumps(asdict(record), ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(descriptor).st_size
                if size and os.pread(descriptor, 1, size - 1) != b"\n":
                    line = b"\n" + line  # after a torn last line: start afresh rather than lose this record
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def records(self, since: datetime | None = None, **equal: str) -> Iterator[Record]:
        """Records in the order written, from ``since`` on (an aware datetime), with each field named in
        ``equal`` equal to its value (e.g. ``principal="ola"``). Raises ValueError for an unknown field."""
        names = {f.name for f in fields(self.record_type)}
        unknown = set(equal) - names
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    data = json.loads(line)
                    record = self.record_type(**{k: v for k, v in data.items() if k in names})
                except (ValueError, TypeError):
                    continue  # a torn line: skipped, the log is never rewritten
                if since is not None and datetime.fromisoformat(data["time"]) < since:
                    continue
                if all(str(data.get(k)) == v for k, v in equal.items()):
                    yield record


class AuditLog(JsonLinesLog[AuditRecord]):
    """The audit log of external calls (see [JsonLinesLog][enclave.llms.audit_log.JsonLinesLog] for the file's guarantees)."""

    record_type = AuditRecord
