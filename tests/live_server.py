"""An ASGI app served for real: uvicorn on a free port of 127.0.0.1, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect_server import free_port


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` in a real uvicorn on a free port of 127.0.0.1, in a thread; yields its base URL
    (``http://127.0.0.1:<port>``) and stops the server on exit. Fails if it has not started in 30 s."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
