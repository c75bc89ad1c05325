"""The real `enclave` CLI in a subprocess: ingest with counts and reasons, re-run, ask with citations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _enclave(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enclave.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, examples) -> Path:
    work = tmp_path_factory.mktemp("cli")
    shutil.copytree(examples, work / "docs")
    (work / "docs" / "broken.docx").write_bytes(b"PK\x03\x04 not a real docx")
    (work / "enclave.yaml").write_text(yaml.safe_dump({
        "data_dir": str(work / "data"),
        "sources": [{"name": "halvard", "path": str(work / "docs"), "groups": ["everyone"]}],
    }), encoding="utf-8")
    return work


def test_ingest_reports_counts_and_reasons_then_nothing_on_rerun(workdir):
    first = _enclave("ingest", "--source", "halvard", cwd=workdir)
    assert first.returncode == 1, first.stdout + first.stderr  # one file failed
    assert "14 indexed" in first.stdout and "1 failed" in first.stdout
    assert "broken.docx" in first.stdout and "corrupt" in first.stdout

    # nothing changed: nothing embedded, and the known failure still sets the exit code
    second = _enclave("ingest", "--source", "halvard", cwd=workdir)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "14 unchanged" in second.stdout and "1 failed" in second.stdout and "0 chunks embedded" in second.stdout
    assert "broken.docx" in second.stdout and "not retried" in second.stdout

    # status: per source documents by status, chunks, the last run, failures by reason; no model needed
    status = _enclave("status", cwd=workdir)
    assert status.returncode == 0, status.stderr
    assert "halvard: 15 documents (14 indexed, 0 skipped, 1 failed, 0 pending)" in status.stdout
    assert "last run: " in status.stdout and "(14 unchanged, 1 failed)" not in status.stdout  # counts are sorted
    assert "1 failed, 14 unchanged" in status.stdout and "failures by reason: 1 corrupt or unreadable" in status.stdout
    failures = _enclave("status", "--failures", cwd=workdir)
    assert "failed: halvard: broken.docx: corrupt or unreadable" in failures.stdout, failures.stdout


def test_status_without_an_index_says_so(tmp_path):
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    result = _enclave("status", cwd=tmp_path)
    assert result.returncode == 2 and "run `enclave ingest` first" in result.stderr, result.stdout + result.stderr


def test_ask_prints_a_cited_answer(workdir):
    _enclave("ingest", "--source", "halvard", cwd=workdir)
    result = _enclave("ask", "What was the root cause of incident INC-2291?", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "expired TLS certificate" in result.stdout
    assert "incident-postmortem-inc-2291.md" in result.stdout
    assert "route: ollama (failed:" in result.stdout and "extractive" in result.stdout


def test_invalid_config_names_the_field(tmp_path):
    (tmp_path / "enclave.yaml").write_text("index:\n  backend: elastic\n", encoding="utf-8")
    result = _enclave("ask", "anything", cwd=tmp_path)
    assert result.returncode == 2
    assert "index.backend" in result.stderr


def test_eval_prints_the_table_and_writes_the_report(tmp_path, examples):
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    questions = examples.parent / "questions.yaml"
    result = _enclave("eval", str(questions), "--documents", str(examples), "--modes", "sparse,hybrid",
                      "-o", str(tmp_path / "report"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| sparse |", "| hybrid |"))]
    assert len(rows) == 2, result.stdout
    assert "ndcg@10" in result.stdout and "p95 ms" in result.stdout
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"evaluation.json", "evaluation.md", "evaluation.png"}

    bad_mode = _enclave("eval", str(questions), "--modes", "dense,fuzzy", cwd=tmp_path)
    assert bad_mode.returncode == 2 and "fuzzy" in bad_mode.stderr
    no_documents = _enclave("eval", str(questions), cwd=tmp_path)
    assert no_documents.returncode == 2 and "--documents" in no_documents.stderr
