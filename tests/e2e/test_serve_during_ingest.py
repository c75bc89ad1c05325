"""The embedded index while ``enclave serve`` owns it: ingestion writes through the server, which keeps
answering, and answers from the new content once the run ends.

Real processes throughout: ``enclave serve`` and ``enclave ingest`` / ``enclave status`` subprocesses
on one data_dir, a thread asking ``/v1/ask`` while the ingest runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from e2e_server import enclave_server

from enclave.server.authentication import api_key_hash

KEY = "enc-e2e-serve-during-ingest"

pytestmark = pytest.mark.e2e

NEEDLE = "The Vardø lighthouse lens was reground by Ingrid Solheim in 1987."
QUESTION = "Who reground the lens of the Vardø lighthouse?"


def _filler(i: int) -> str:
    topics = ["tide tables", "harbour dues", "pilot boats", "fog signals", "buoy maintenance", "ice charts"]
    topic = topics[i % len(topics)]
    return f"# Notice {i}: {topic}\n\n" + "\n\n".join(
        f"Section {j} of notice {i} explains {topic} for district {j}, with schedules, contacts and "
        f"the forms that captains file before entering the harbour in season {j + i}." * 3
        for j in range(4)
    )


def _cli(*args: str, config: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enclave.cli", *args, "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=600)


def test_serve_answers_during_an_ingest_and_from_its_content_after(tmp_path, monkeypatch, prefect_api):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "welcome.md").write_text("# Welcome\n\nThe harbour office opens at eight every weekday.\n", encoding="utf-8")
    config = tmp_path / "enclave.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "data"),
        "sources": [{"name": "harbour", "path": str(docs), "groups": ["everyone"]}],
        "generators": [{"name": "extractive", "kind": "extractive"}],
        "ingest": {"batch_documents": 4},
        "server": {"auth": {"api_keys": [{"principal": "e2e", "groups": ["everyone"], "sha256": api_key_hash(KEY)}]},
                   "limits": {"requests_per_minute": None}},
    }), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update({"PREFECT_API_URL": prefect_api, "HF_HUB_OFFLINE": "1"})
    assert _cli("ingest", config=config, env=env).returncode == 0  # the index exists before serve starts

    for i in range(40):  # enough to keep the ingest busy for a while
        (docs / f"notice-{i:02d}.md").write_text(_filler(i), encoding="utf-8")
    (docs / "lighthouse.md").write_text(f"# Lighthouse\n\n{NEEDLE}\n", encoding="utf-8")

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # enclave_server passes this process's environment
    with enclave_server(config, tmp_path / "serve.log") as url:
        answers: list[tuple[float, int, str]] = []
        stop = threading.Event()

        def keep_asking() -> None:
            with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    response = client.post(f"{url}/v1/ask", json={"question": "When does the harbour office open?"})
                    answers.append((time.monotonic() - started, response.status_code, response.text))
                    time.sleep(0.2)

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        ingest = _cli("ingest", config=config, env=env)  # the shard is the server's: ingest writes through it
        status = _cli("status", "--failures", config=config, env=env)
        stop.set()
        asker.join(timeout=60)

        assert ingest.returncode == 0, ingest.stdout + ingest.stderr[-3000:]
        assert "41 indexed" in ingest.stdout and "1 unchanged" in ingest.stdout, ingest.stdout
        assert len(answers) >= 5, "too few questions asked while the ingest ran"
        assert all(code == 200 for _, code, _ in answers), [a for a in answers if a[1] != 200][:3]
        assert all("welcome.md" in text for _, _, text in answers)

        # status reads the same index through the server, without loading a model
        assert status.returncode == 0, status.stderr[-2000:]
        assert "harbour: 42 documents (42 indexed, 0 skipped, 0 failed, 0 pending)" in status.stdout

        after = httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, timeout=60,
                           headers={"Authorization": f"Bearer {KEY}"}).json()
        assert "Ingrid Solheim" in after["answer"]
        assert any(c["title"] == "lighthouse.md" or c["uri"].endswith("lighthouse.md") for c in after["citations"])
