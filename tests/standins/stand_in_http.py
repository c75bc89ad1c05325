"""What every HTTP stand-in of the connector tests shares: a handler that speaks keep-alive HTTP/1.1
without Nagle's delay and logs nothing, a threaded server that ignores connections cut on purpose, and
starting one on a free port of 127.0.0.1."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args: object) -> None:
        pass

    def cut(self) -> None:
        """Close the connection without an answer (an outage mid-request)."""
        self.close_connection = True
        self.connection.shutdown(2)


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection cut on purpose, or one its client gave up on


def start(handler: type[BaseHTTPRequestHandler]) -> tuple[StandInServer, threading.Thread, str]:
    """Serve ``handler`` on a free port of 127.0.0.1 in a daemon thread: (server, thread, base URL)."""
    server = StandInServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_address[1]}"
