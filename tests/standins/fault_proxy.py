"""An HTTP proxy on 127.0.0.1 in front of a real server (moto's S3 server), which counts the requests it
forwards and can be told to answer some of them with an error or to cut the connection: an outage
mid-listing, a throttled or denied request, on the real wire."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from standins.stand_in_http import StandInHandler, start

#: (method, path, query) -> whether a fault applies to this request
Match = Callable[[str, str, dict[str, list[str]]], bool]


@dataclass
class Fault:
    match: Match
    status: int = 0  # 0: close the connection without an answer
    headers: tuple[tuple[str, str], ...] = ()
    times: int = 1_000_000  # how many matching requests it hits


def s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    """The S3 operation a path-style request is (enough for what the connector sends)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) <= 1:
        return "ListObjectsV2" if method == "GET" and "list-type" in query else f"{method} bucket"
    if "tagging" in query:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(method, method)
    return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(method, method)


class FaultProxy:
    """Usage::

        with FaultProxy("127.0.0.1", moto_port) as proxy:
            client = boto3.client("s3", endpoint_url=proxy.url, ...)
            proxy.counts.clear(); ...; proxy.counts["GetObject"]
            proxy.faults.append(Fault(lambda m, p, q: "continuation-token" in q))   # cut the second page
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(StandInHandler):

            def _handle(self) -> None:
                split = urlsplit(self.path)
                query = parse_qs(split.query, keep_blank_values=True)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._fault(self.command, split.path, query)
                if fault is not None:
                    if fault.status == 0:
                        self.cut()
                        return
                    payload = b"<Error><Code>InjectedFault</Code><Message>injected by the test</Message></Error>"
                    self.send_response(fault.status)
                    for name, value in fault.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                with proxy._lock:
                    proxy.counts[s3_operation(self.command, split.path, query)] += 1
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._handler = Handler
        self.url = ""  # set when the proxy starts (entering the with block)

    def _fault(self, method: str, path: str, query: dict[str, list[str]]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match(method, path, query):
                    fault.times -= 1
                    return fault
        return None

    def __enter__(self) -> FaultProxy:
        self._server, _, self.url = start(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
