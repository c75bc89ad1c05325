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
    (work / "docs" / "jingle.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")  # nothing reads sound: skipped
    (work / "enclave.yaml").write_text(yaml.safe_dump({
        "data_dir": str(work / "data"),
        "sources": [{"name": "halvard", "path": str(work / "docs"), "groups": ["everyone"]}],
    }), encoding="utf-8")
    return work


@pytest.mark.slow  # the real CLI in a subprocess: a Prefect flow run and the model load
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
    assert "halvard: 16 documents (14 indexed, 1 skipped, 1 failed, 0 pending)" in status.stdout
    assert "last run: " in status.stdout and "(14 unchanged, 1 failed" not in status.stdout  # counts are sorted
    assert "1 failed, 1 skipped, 14 unchanged" in status.stdout
    assert "failures by reason: 1 corrupt or unreadable; skips by reason: 1 unsupported type" in status.stdout
    failures = _enclave("status", "--failures", cwd=workdir)
    assert "failed: halvard: broken.docx: corrupt or unreadable" in failures.stdout, failures.stdout
    assert "skipped: halvard: jingle.wav: unsupported type (.wav)" in failures.stdout, failures.stdout


def test_status_without_an_index_says_so(tmp_path):
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    result = _enclave("status", cwd=tmp_path)
    assert result.returncode == 2 and "run `enclave ingest` first" in result.stderr, result.stdout + result.stderr


@pytest.mark.slow  # the real CLI in a subprocess: a Prefect flow run and the model load
def test_ask_prints_a_cited_answer(workdir):
    _enclave("ingest", "--source", "halvard", cwd=workdir)
    result = _enclave("ask", "What was the root cause of incident INC-2291?", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "expired TLS certificate" in result.stdout
    assert "incident-postmortem-inc-2291.md" in result.stdout
    assert "route: ollama (failed:" in result.stdout and "extractive" in result.stdout
    assert "tokens in/out:" in result.stdout and "cost: $" in result.stdout and "answered: no" not in result.stdout
    refused = _enclave("ask", "What was the root cause of incident INC-3107?", cwd=workdir)
    assert refused.returncode == 0, refused.stderr
    assert "The documents do not answer this question." in refused.stdout
    assert "answered: no (no passage mentions inc-3107)" in refused.stdout


def test_invalid_config_names_the_field(tmp_path):
    (tmp_path / "enclave.yaml").write_text("index:\n  backend: elastic\n", encoding="utf-8")
    result = _enclave("ask", "anything", cwd=tmp_path)
    assert result.returncode == 2
    assert "index.backend" in result.stderr


@pytest.mark.slow  # the real CLI in a subprocess: a Prefect flow run and the model load
def test_eval_prints_the_table_and_writes_the_report(tmp_path, examples):
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    questions = examples.parent / "questions.yaml"
    result = _enclave("eval", str(questions), "--documents", str(examples), "--modes", "sparse,hybrid",
                      "--answers", "--generators", "extractive", "-o", str(tmp_path / "report"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| sparse |", "| hybrid |"))]
    assert len(rows) == 2, result.stdout
    assert "ndcg@10" in result.stdout and "p95 ms" in result.stdout
    assert "## Answers: 20 questions (14 answerable, 6 not)" in result.stdout
    [answers] = [line for line in result.stdout.splitlines() if line.startswith("| extractive |")]
    assert "abstention_recall" in result.stdout and len(answers.split("|")) == 19, answers  # 17 columns
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"evaluation.json", "evaluation.md", "evaluation.png"}

    bad_mode = _enclave("eval", str(questions), "--modes", "dense,fuzzy", cwd=tmp_path)
    assert bad_mode.returncode == 2 and "fuzzy" in bad_mode.stderr
    no_documents = _enclave("eval", str(questions), cwd=tmp_path)
    assert no_documents.returncode == 2 and "--documents" in no_documents.stderr
    bad_generator = _enclave("eval", str(questions), "--documents", str(examples), "--answers", "--generators", "gpt-9",
                             cwd=tmp_path)
    assert bad_generator.returncode == 2 and "choose from route, ollama, extractive" in bad_generator.stderr


def test_audit_and_costs_report_the_records_of_a_session(tmp_path):
    """Answers made in this process (one external through the OpenAI stand-in, one refused by policy,
    one local) leave records that `enclave audit` and `enclave costs` read back."""
    import json
    from types import SimpleNamespace

    from standins.openai_server import OpenAIStandIn

    from enclave.contracts import GenerationRequest
    from enclave.flows.components import build_breakers, build_route
    from enclave.prompts import answer_messages
    from enclave.settings import Settings

    class Chunk:
        def __init__(self, id_, label):
            self.id, self.classification, self.title, self.section = id_, label, "Price list", ""
            self.text = "The HX-400 costs NOK 12,000. Ask ola@halvard.no."

    with OpenAIStandIn(models=["gpt-4o-mini"]) as server:
        config = {
            "data_dir": str(tmp_path / "data"),
            "generators": [
                {"name": "gpt", "kind": "openai", "model": "gpt-4o-mini", "host": server.url, "api_key": "test",
                 "max_label": "internal", "redact_pii": True},
                {"name": "extractive", "kind": "extractive"},
            ],
            "costs": {"models": {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}, "local_hourly": {"extractive": 3600.0}},
        }
        (tmp_path / "enclave.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        settings = Settings(**config)
        no_model = SimpleNamespace(embed=None, embed_query=None)  # extractive: word overlap
        route = build_route(settings, no_model, build_breakers(settings))
        ask = [Chunk("c-public", "public"), Chunk("c-board", "restricted")]
        sent = route.run(GenerationRequest("What does it cost?", ask, answer_messages("What does it cost?", ask),
                                           principal="ola"))
        refused = route.run(GenerationRequest("Board?", ask[1:], answer_messages("Board?", ask[1:]), principal="kari"))
        [stand_in_usage] = [json.loads(r["raw"]) for r in server.chat_requests]
    assert sent.generator == "gpt" and refused.generator == "extractive"

    audit = _enclave("audit", cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(r["principal"], r["outcome"]) for r in records] == [("ola", "sent"), ("kari", "refused")]
    assert records[0]["chunks_sent"] == ["c-public"] and records[0]["chunks_withheld"] == ["c-board"]
    assert records[0]["redactions"] == {"EMAIL_ADDRESS": 1}
    prompt_words = sum(len(m["content"].split()) for m in stand_in_usage["messages"])
    assert (records[0]["tokens_in"], records[0]["tokens_out"]) == (prompt_words, len(sent.text.split()))
    assert records[0]["cost"] == pytest.approx((prompt_words * 0.15 + len(sent.text.split()) * 0.60) / 1e6)
    only_kari = _enclave("audit", "--principal", "kari", "--outcome", "refused", cwd=tmp_path)
    assert [json.loads(line)["principal"] for line in only_kari.stdout.splitlines()] == ["kari"]
    assert _enclave("audit", "--since", "2999-01-01", cwd=tmp_path).stdout == ""
    assert _enclave("audit", "--since", "last tuesday", cwd=tmp_path).returncode == 2

    costs = _enclave("costs", "--compare-with", "gpt-4o-mini", cwd=tmp_path)
    assert costs.returncode == 0, costs.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in costs.stdout.splitlines()[1:]}
    assert rows["gpt"][1] == "1" and float(rows["gpt"][5]) == pytest.approx(records[0]["cost"], abs=1e-6)
    assert rows["extractive"][1] == "1" and float(rows["extractive"][5]) > 0  # local: priced by the hour
    assert rows["total"][1] == "2"
    assert _enclave("costs", "--compare-with", "unpriced-model", cwd=tmp_path).returncode == 2


@pytest.mark.slow  # seven CLI subprocesses (no model): ~10 s
def test_backup_and_restore_from_the_command_line(tmp_path):
    import numpy as np
    from backup_cases import populate

    from enclave.flows import index_path
    from enclave.flows.index_manifest import index_manifest
    from enclave.indexes import EdgeIndex
    from enclave.settings import load_settings

    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    settings = load_settings(tmp_path / "enclave.yaml")
    index = EdgeIndex(index_path(settings), 4)  # random vectors: backup, restore and status load no model
    populate(index, np.random.default_rng(3), manifest=index_manifest(settings, 4))
    index.close()

    backup = _enclave("backup", "backup.tar", cwd=tmp_path)
    assert backup.returncode == 0, backup.stderr
    assert "backup.tar: 9 chunks, 4 documents (1 failed, 3 indexed), 1 runs;" in backup.stdout, backup.stdout
    assert "KiB in" in backup.stdout and "generation enclave, dimension 4); consistency: writes paused" in backup.stdout
    again = _enclave("backup", "backup.tar", cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr

    refused = _enclave("restore", "backup.tar", cwd=tmp_path)
    assert refused.returncode == 2 and "not empty" in refused.stderr and "--force" in refused.stderr, refused.stderr
    restored = _enclave("restore", "backup.tar", "--force", "--grace", "0", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "9 chunks, 4 documents, 1 runs" in restored.stdout and "(was enclave); old generation dropped" in restored.stdout
    status = _enclave("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "generation enclave__" in status.stdout, status.stdout
    assert "hb: 3 documents (2 indexed, 0 skipped, 1 failed, 0 pending), 5 chunks" in status.stdout, status.stdout

    damaged = bytearray((tmp_path / "backup.tar").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "damaged.tar").write_bytes(bytes(damaged))
    corrupt = _enclave("restore", "damaged.tar", "--force", cwd=tmp_path)
    assert corrupt.returncode == 1 and "the index is unchanged" in corrupt.stderr, corrupt.stderr
