"""Several serving processes (``enclave serve --workers N``, or hosts behind a balancer) each keep their own rate
limits and circuit breakers, as the README says: a caller gets ``requests_per_minute`` from every process, and a
failing generator is found out by each process on its own. Two real ``enclave serve`` processes on two ports show
it (with ``--workers`` the balancer is the kernel, which picks the worker: a test could not say which it hit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from prefect_server import free_port, stop_process_group
from typer.testing import CliRunner

from enclave.cli import app as cli
from enclave.server.authentication import api_key_hash

KEYS = {"rate": "enc-workers-rate", "first": "enc-workers-first", "second": "enc-workers-second"}


def _config(folder: Path, **index) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "enclave.yaml"
    config.write_text(json.dumps({
        "data_dir": str(folder / "data"),
        "embedder": {"backend": "sentence-transformers"},  # starts sooner than OpenVINO's compiled model
        "index": index or {"backend": "edge"},
        "generators": [{"name": "ollama", "kind": "ollama", "model": "llama3.1:8b", "host": "http://127.0.0.1:9",
                        "connect_timeout": 1},
                       {"name": "extractive", "kind": "extractive"}],
        "circuit_breaker": {"failures": 1, "cooldown": 600},
        "abstention": {"enabled": False},  # the route runs even with nothing retrieved
        "server": {"auth": {"api_keys": [{"principal": p, "groups": ["everyone"], "sha256": api_key_hash(k)}
                                         for p, k in KEYS.items()]},
                   "limits": {"requests_per_minute": 1, "burst": 1}},
    }), encoding="utf-8")
    return config


@contextmanager
def _serving(configs: list[Path], timeout: float = 240.0):
    """``enclave serve`` for each config, started together, on free ports; yields their URLs once all answer."""
    with ExitStack() as stack:
        started = []
        for config in configs:
            port, log = free_port(), open(config.parent / "serve.log", "wb")
            stack.enter_context(log)
            process = subprocess.Popen([sys.executable, "-m", "enclave.cli", "serve", "--config", str(config), "--port",
                                        str(port)], stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                       start_new_session=True)
            stack.callback(stop_process_group, process)
            started.append((process, f"http://127.0.0.1:{port}", config.parent / "serve.log"))
        deadline = time.monotonic() + timeout
        for process, url, log_path in started:
            while True:
                assert process.poll() is None, f"enclave serve exited:\n{log_path.read_text()[-3000:]}"
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"enclave serve did not start:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.3)
        yield [url for _, url, _ in started]


def _models(url: str, key: str) -> int:
    return httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEYS[key]}"}, timeout=30).status_code


def _route(url: str, key: str) -> list[tuple[str, str]]:
    response = httpx.post(f"{url}/v1/ask", json={"question": "How many days of paid leave do I get?"},
                          headers={"Authorization": f"Bearer {KEYS[key]}"}, timeout=60)
    assert response.status_code == 200, response.text
    return [(attempt["generator"], attempt["outcome"]) for attempt in response.json()["route"]]


@pytest.mark.slow
def test_each_serving_process_keeps_its_own_rate_limits_and_circuit_breakers(tmp_path):
    with _serving([_config(tmp_path / "a"), _config(tmp_path / "b")]) as (a, b):
        # rate limit 1 a minute, burst 1: each process lets the same caller through once
        assert [_models(a, "rate"), _models(a, "rate")] == [200, 429]
        assert [_models(b, "rate"), _models(b, "rate")] == [200, 429]
        # Ollama is down; its breaker opens after 1 failure, in the process that saw the failure only
        assert _route(a, "first") == [("ollama", "failed"), ("extractive", "answered")]
        assert _route(a, "second") == [("ollama", "skipped"), ("extractive", "answered")]
        assert _route(b, "first") == [("ollama", "failed"), ("extractive", "answered")]
        assert _route(b, "second") == [("ollama", "skipped"), ("extractive", "answered")]


def test_workers_need_a_qdrant_server(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--workers", "2", "--config", str(_config(tmp_path))])
    assert result.exit_code == 2
    assert "--workers needs index.backend server" in result.output


def test_a_worker_builds_its_app_from_the_config_file(tmp_path, monkeypatch):
    from enclave.server.app import app_from_config

    config = _config(tmp_path, backend="server", url="http://127.0.0.1:6333")
    monkeypatch.setenv("ENCLAVE_CONFIG", str(config))
    app = app_from_config()  # builds nothing yet: the pipeline comes at start-up, in the worker
    settings = app.state.settings
    assert settings.index.backend == "server" and settings.data_dir == tmp_path / "data"
    assert app.state.rate_limiter.burst == 1  # this worker's own bucket per caller
