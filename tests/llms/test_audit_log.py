"""llms.audit_log: records survive as written, filters work, torn lines are skipped, nothing is rewritten."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import pytest

from enclave.llms.audit_log import AuditLog, AuditRecord


def _record(n: int, principal: str = "ola", time: str = "2026-11-20T10:00:00+00:00") -> AuditRecord:
    return AuditRecord(time=time, principal=principal, generator="openai", model="gpt-4o-mini", outcome="sent",
                       chunks_sent=[f"c{n}"], chunks_withheld=["secret"], redactions={"EMAIL_ADDRESS": n},
                       tokens_in=100 + n, tokens_out=10, cost=0.001 * n)


def _append_many(path: str, start: int) -> None:
    log = AuditLog(path)
    for n in range(start, start + 50):
        log.append(_record(n))


def test_records_read_back_exactly_and_filter(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(_record(1))
    log.append(_record(2, principal="kari", time="2026-11-21T09:00:00+00:00"))
    log.append(_record(3, time="2026-11-22T09:00:00+00:00"))
    assert list(log.records()) == [_record(1), _record(2, "kari", "2026-11-21T09:00:00+00:00"),
                                   _record(3, time="2026-11-22T09:00:00+00:00")]
    assert [r.chunks_sent for r in log.records(principal="ola")] == [["c1"], ["c3"]]
    assert [r.principal for r in log.records(since=datetime(2026, 11, 21, tzinfo=UTC))] == ["kari", "ola"]
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="unknown field"):
        list(log.records(colour="red"))


def test_a_torn_line_is_skipped_and_the_rest_kept(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(_record(1))
    with (tmp_path / "audit.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"time": "2026-11-20T10:00:00+00:00", "principal": "o')  # a power cut mid-write
    log.append(_record(2))
    before = (tmp_path / "audit.jsonl").read_bytes()
    assert [r.chunks_sent for r in log.records()] == [["c1"], ["c2"]]  # the record after the torn line survives
    assert (tmp_path / "audit.jsonl").read_bytes() == before  # reading never rewrites


def test_processes_appending_together_lose_nothing(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    processes = [multiprocessing.get_context("spawn").Process(target=_append_many, args=(path, s)) for s in (0, 1000)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    sent = sorted(int(r.chunks_sent[0][1:]) for r in AuditLog(path).records())
    assert sent == list(range(50)) + list(range(1000, 1050))


def test_no_file_yet_means_no_records(tmp_path):
    assert list(AuditLog(tmp_path / "none.jsonl").records()) == []
