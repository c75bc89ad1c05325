"""Helpers for whole-system tests: free ports and a real `enclave serve` subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def enclave_server(config: Path, log: Path, timeout: float = 180.0) -> Iterator[str]:
    """Run ``enclave serve --config CONFIG`` on a free port; yields its base URL once /healthz answers."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "enclave.cli", "serve", "--config", str(config), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"enclave serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"enclave serve did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
