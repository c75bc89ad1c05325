"""A small web site on 127.0.0.1 for the web connector's tests: HTML pages with links, a sitemap,
robots.txt, a PDF, a page that changes, one that redirects, one that 404s, one that robots.txt
disallows. It answers conditional GETs (ETag / If-None-Match, Last-Modified / If-Modified-Since) with
304, counts requests by (method, path, status), and can be told to fail or throttle a path."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import urlsplit

from standins.stand_in_http import StandInHandler, StandInServer, start


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    modified: float = 1_700_000_000.0
    validators: bool = True  # send ETag and Last-Modified

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class Trouble:
    """Answer ``status`` (with ``retry_after`` when set) to the next ``times`` requests for ``path``;
    status 0 closes the connection without an answer."""

    status: int
    times: int = 1_000_000
    retry_after: str | None = None


@dataclass
class WebSite:
    pages: dict[str, Page] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    trouble: dict[str, Trouble] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    url: str = ""

    def html(self, path: str, title: str, text: str, links: list[str] = ()) -> None:
        anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p><ul>{anchors}</ul>" \
               f"</body></html>"
        modified = self.pages[path].modified + 60 if path in self.pages else 1_700_000_000.0
        self.pages[path] = Page(body.encode(), modified=modified)

    def served(self, method: str | None = None, status: int | None = None) -> int:
        return sum(n for (m, _, s), n in self.counts.items() if method in (None, m) and status in (None, s))


def serve(site: WebSite) -> tuple[StandInServer, threading.Thread]:
    """Start ``site`` on a free port of 127.0.0.1 (``site.url`` is set); stop with ``server.shutdown()``."""

    class Handler(StandInHandler):

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            site.counts[(self.command, urlsplit(self.path).path, status)] += 1
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            trouble = site.trouble.get(path)
            if trouble and trouble.times > 0:
                trouble.times -= 1
                if trouble.status == 0:
                    site.counts[(self.command, path, 0)] += 1
                    self.cut()
                    return
                headers = {"Retry-After": trouble.retry_after} if trouble.retry_after else {}
                return self._answer(trouble.status, b"trouble", headers)
            if path in site.redirects:
                return self._answer(301, b"", {"Location": site.redirects[path]})
            page = site.pages.get(path)
            if page is None:
                return self._answer(404, b"not found", {"Content-Type": "text/plain"})
            headers = {"Content-Type": page.content_type}
            if page.validators:
                headers |= {"ETag": page.etag, "Last-Modified": formatdate(page.modified, usegmt=True)}
                if self.headers.get("If-None-Match") == page.etag:
                    return self._answer(304, b"", headers)
            return self._answer(200, page.body, headers)

        do_HEAD = do_GET

    server, thread, site.url = start(Handler)
    return server, thread
