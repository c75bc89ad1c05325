"""A real ``prefect server start`` on 127.0.0.1 for tests whose subprocesses run flows.

Without ``PREFECT_API_URL`` every ``enclave`` process starts its own temporary API server (several
seconds each); tests that run the CLI many times point them all at one real server instead.
"""

from __future__ import annotations

import os
import signal
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


def prefect_command() -> list[str]:
    """The ``prefect`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "prefect"
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


def server_environment(home: Path) -> dict[str, str]:
    """Environment of a private Prefect server: its own home and SQLite database, no UI, no analytics,
    and no scheduler service (so no cron run joins in beside the runs a test triggers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    return env


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process's group, then SIGKILL whatever is left of it."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:
            os.killpg(process.pid, signal.SIGKILL)  # children may outlive the leader
        except ProcessLookupError:
            pass
        return


@contextmanager
def running_prefect_server(home: Path, timeout: float = 180) -> Iterator[str]:
    """Start ``prefect server start`` with its home in ``home``; yields the API URL (``http://127.0.0.1:N/api``).
    Raises AssertionError with the server's log if it does not answer /api/health within ``timeout`` s."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            prefect_command() + ["server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_environment(home), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prefect server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prefect server did not answer within {timeout} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(process)
