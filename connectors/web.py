"""Web sites: crawl from start URLs (and sitemap.xml) within allowed domains, one document per page or
linked document (PDF, DOCX, ...), with robots.txt respected and conditional GETs for pages already seen."""

from __future__ import annotations

import hashlib
import logging
import xml.etree.ElementTree as ElementTree
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from enclave.connectors.path_patterns import matches_any
from enclave.connectors.patient_http import AccessDenied, PatientHttp
from enclave.contracts import Classification, SourceDocument, SourceUnavailable

logger = logging.getLogger(__name__)

#: Content types read as documents, and the file type the parser is told.
DOCUMENT_TYPES = {
    "text/html": ".html", "application/xhtml+xml": ".html", "text/plain": ".txt", "text/markdown": ".md",
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}
#: Linked files checked with HEAD while crawling (their bytes are fetched only when new or changed).
FILE_SUFFIXES = (".pdf", ".docx", ".pptx", ".xlsx", ".txt", ".md")
#: Links never followed: images, media, styles, scripts, archives (not documents; not asked for at all).
ASSET_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js", ".mjs", ".woff", ".woff2",
                  ".ttf", ".mp3", ".mp4", ".webm", ".avi", ".mov", ".zip", ".gz", ".tar", ".7z", ".exe", ".dmg", ".iso")


@dataclass
class _Seen:
    """What the last crawl saw of a URL: its validators, its version and (for a page) its links."""

    etag: str = ""
    last_modified: str = ""
    version: str = ""
    links: tuple[str, ...] = ()
    extension: str = ".html"


class WebConnector:
    """A web site (an intranet, a docs site): one [SourceDocument][enclave.contracts.SourceDocument] per
    page or linked document the crawl reaches.

    Usage::

        connector = WebConnector("intranet", ["https://intranet.example/"], max_pages=500, max_depth=3,
                                 exclude=["*/calendar/*"], groups=["staff"])
        docs = list(connector.list_documents())     # crawls: robots.txt, sitemap.xml, links
        connector.fetch(docs[0])                    # the page's bytes (kept from the crawl when it was sent)
        state = connector.state()                   # validators and links, for the next crawl's 304s

    The crawl starts at ``start_urls`` and the URLs of the sites' ``sitemap.xml`` (and of sitemaps that
    robots.txt names), and follows ``<a href>`` links of HTML pages up to ``max_depth`` links away and
    ``max_pages`` documents, staying within ``allowed_domains`` (default: the start URLs' hosts) and the
    ``include``/``exclude`` globs (matched against the whole URL). robots.txt is obeyed for
    ``user_agent``. Redirects are followed within the allowed domains; the document is the final URL.
    A page seen before is asked for with ``If-None-Match``/``If-Modified-Since`` (from
    [restore][enclave.connectors.web.WebConnector.restore]d state), so an unchanged page costs one 304;
    linked files (``.pdf``, ``.docx``...) cost one HEAD while crawling and a GET only when new or
    changed. ``version`` is the ETag, else Last-Modified, else a hash of the bytes. A 404 or 410 means
    the page is gone; 429 and 503 are retried after their ``Retry-After`` (tenacity), within
    ``retry_budget`` seconds per source. ``timeout`` in seconds per request.

    ``list_documents`` raises [SourceUnavailable][enclave.contracts.SourceUnavailable] when a page
    cannot be read (unreachable, 401/403, 5xx, a timeout, throttling beyond the budget): a crawl cut
    short would look like removed pages, so the ingest deletes nothing. ``fetch`` raises
    FileNotFoundError (gone since), PermissionError (401/403) or ConnectionError (an outage).
    ``requests`` counts requests by ``"METHOD status"``.
    """

    def __init__(
        self,
        source: str,
        start_urls: list[str],
        *,
        allowed_domains: list[str] | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        max_pages: int = 1000,
        max_depth: int = 3,
        use_sitemap: bool = True,
        user_agent: str = "EnclaveBot/1.0",
        timeout: float = 30.0,
        retry_budget: float = 120.0,
        groups: list[str] | tuple[str, ...] | None = None,
        classification: str = Classification.INTERNAL,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not start_urls:
            raise ValueError("a web source needs at least one start URL")
        self.source = source
        self.start_urls = [urldefrag(u)[0] for u in start_urls]
        self.allowed_domains = {d.lower() for d in (allowed_domains or [urlsplit(u).hostname or "" for u in start_urls])}
        self.include = include or ["*"]
        self.exclude = exclude or []
        self.max_pages = max_pages
        self.max_depth = max_depth
        self.use_sitemap = use_sitemap
        self.user_agent = user_agent
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.groups = tuple(groups or ["everyone"])
        self.classification = str(classification)
        self.http = PatientHttp(source, headers={"User-Agent": user_agent}, timeout=timeout, retry_budget=retry_budget,
                                transport=transport)
        self._seen: dict[str, _Seen] = {}
        self._bodies: dict[str, bytes] = {}
        self._robots: dict[str, RobotFileParser] = {}

    def __getstate__(self) -> dict[str, Any]:  # the crawl's bodies stay here (Dask workers GET their own)
        return {**self.__dict__, "_bodies": {}}

    @property
    def requests(self) -> Counter[str]:
        """Requests made, by ``"METHOD status"``."""
        return self.http.requests

    # -- state kept between crawls (in the ledger) ----------------------------------------------------------------------
    def restore(self, state: dict[str, Any]) -> None:
        """Take the validators and links an earlier crawl saw (from [state][enclave.connectors.web.WebConnector.state])."""
        self._seen = {url: _Seen(seen[0], seen[1], seen[2], tuple(seen[3]), seen[4])
                      for url, seen in state.get("seen", {}).items()}

    def state(self) -> dict[str, Any]:
        """What the next crawl needs to send conditional GETs: per URL its ETag, Last-Modified, version, links."""
        return {"seen": {url: [s.etag, s.last_modified, s.version, list(s.links), s.extension]
                         for url, s in self._seen.items()}}

    # -- the connector --------------------------------------------------------------------------------------------------
    def list_documents(self) -> Iterator[SourceDocument]:
        """Crawl the site; yields each document reached, in crawl order. Raises SourceUnavailable."""
        self._bodies.clear()
        self.http.start_budget()
        seen_now: dict[str, _Seen] = {}
        queue: deque[tuple[str, int]] = deque((u, 0) for u in self.start_urls)
        if self.use_sitemap:
            queue.extend((u, 0) for u in self._sitemap_urls())
        queued = {u for u, _ in queue}
        documents = 0
        while queue and documents < self.max_pages:
            url, depth = queue.popleft()
            if not self._admitted(url):
                continue
            found = self._visit(url, seen_now)
            if found is None:
                continue
            doc, links = found
            documents += 1
            yield doc
            if depth < self.max_depth:
                for link in links:
                    if link not in queued:
                        queued.add(link)
                        queue.append((link, depth + 1))
        self._seen = seen_now

    def fetch(self, document: SourceDocument) -> bytes:
        """The document's bytes: those the crawl already received, else a GET. Raises FileNotFoundError,
        PermissionError or ConnectionError."""
        url = document.uri
        if url in self._bodies:
            return self._bodies.pop(url)
        try:
            response = self._request("GET", url)
        except AccessDenied:
            raise PermissionError(f"{url}: access denied") from None
        except SourceUnavailable as exc:
            raise ConnectionError(str(exc)) from None
        if response.status_code in (404, 410):
            raise FileNotFoundError(f"{url} is gone (HTTP {response.status_code})")
        if response.status_code != 200:
            raise ConnectionError(f"{url}: HTTP {response.status_code}")
        return response.content

    # -- crawling -------------------------------------------------------------------------------------------------------
    def _visit(self, url: str, seen_now: dict[str, _Seen]) -> tuple[SourceDocument, tuple[str, ...]] | None:
        """One URL: the document there and its links, or None (gone, not a document, redirected away)."""
        is_file = urlsplit(url).path.lower().endswith(FILE_SUFFIXES)
        response, final = self._follow("HEAD" if is_file else "GET", url)
        if response is not None and is_file and response.status_code == 405:  # a server without HEAD
            is_file = False
            response, final = self._follow("GET", url)
        if response is None:
            return None
        before = self._seen.get(final, _Seen())
        status = response.status_code
        if status == 304:
            seen_now[final] = before
            return self._document(final, before.version, before.extension, 0), before.links
        if status != 200:
            return None  # 404, 410: gone
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        extension = _extension(final, content_type)
        if extension is None:
            return None  # an image, a zip...: not a document
        etag, modified = response.headers.get("etag", ""), response.headers.get("last-modified", "")
        links: tuple[str, ...] = ()
        if is_file:
            version = etag or modified or f"len-{response.headers.get('content-length', '')}"
            size = int(response.headers.get("content-length") or 0)
        else:
            body = response.content
            version = etag or modified or hashlib.sha256(body).hexdigest()[:32]
            size = len(body)
            self._bodies[final] = body
            if extension == ".html":
                links = tuple(dict.fromkeys(self._links(final, body)))
        seen_now[final] = _Seen(etag, modified, version, links, extension)
        return self._document(final, version, extension, size), links

    def _follow(self, method: str, url: str) -> tuple[httpx.Response | None, str]:
        """The answer at ``url`` after redirects within the allowed domains (at most 10); a GET of a page
        seen before is conditional (If-None-Match / If-Modified-Since)."""
        for _ in range(10):
            before, headers = self._seen.get(url), {}
            if method == "GET" and before is not None:
                headers = {name: value for name, value in (("If-None-Match", before.etag),
                                                           ("If-Modified-Since", before.last_modified)) if value}
            response = self._request(method, url, headers)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response, url
            target = urldefrag(urljoin(url, response.headers.get("location", "")))[0]
            if not self._admitted(target):
                return None, url
            url = target
        return None, url

    def _request(self, method: str, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.request(method, url, headers=headers)

    def _admitted(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in self.allowed_domains:
            return False
        if parts.path.lower().endswith(ASSET_SUFFIXES):
            return False
        if not matches_any(url, self.include) or matches_any(url, self.exclude):
            return False
        return self._robots_for(url).can_fetch(self.user_agent, url)

    def _robots_for(self, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            robots = RobotFileParser(f"{origin}/robots.txt")
            try:
                response = self._request("GET", f"{origin}/robots.txt")
                lines = response.text.splitlines() if response.status_code == 200 else []
            except AccessDenied:  # RFC 9309 §2.3.1.3: a robots.txt that is unavailable (4xx) allows everything
                lines = []
            robots.parse(lines)
            self._robots[origin] = robots
        return self._robots[origin]

    def _sitemap_urls(self) -> list[str]:
        """Page URLs of each start host's sitemap.xml (and the sitemaps its robots.txt names), one level
        of sitemap index followed."""
        sitemaps: list[str] = []
        for url in self.start_urls:
            parts = urlsplit(url)
            robots = self._robots_for(url)
            sitemaps += robots.site_maps() or [f"{parts.scheme}://{parts.netloc}/sitemap.xml"]
        pages: list[str] = []
        for sitemap in dict.fromkeys(sitemaps):
            for loc, nested in self._sitemap(sitemap):
                if nested:
                    pages += [page for page, _ in self._sitemap(loc) if page]
                else:
                    pages.append(loc)
        return [urldefrag(p)[0] for p in pages]

    def _sitemap(self, url: str) -> list[tuple[str, bool]]:
        """(loc, whether it is a nested sitemap) of a sitemap; [] when there is none or it is not XML."""
        if not self._admitted_host(url):
            return []
        response = self._request("GET", url)
        if response.status_code != 200:
            return []
        try:
            root = ElementTree.fromstring(response.content)
        except ElementTree.ParseError:
            logger.warning("source %s: %s is not a valid sitemap; ignored", self.source, url)
            return []
        nested = root.tag.endswith("sitemapindex")
        return [(el.text.strip(), nested) for el in root.iter() if el.tag.endswith("loc") and el.text]

    def _admitted_host(self, url: str) -> bool:
        return (urlsplit(url).hostname or "").lower() in self.allowed_domains

    @staticmethod
    def _links(base: str, body: bytes) -> list[str]:
        collector = _LinkCollector()
        collector.feed(body.decode("utf-8", errors="replace"))
        return [urldefrag(urljoin(base, href))[0] for href in collector.hrefs]

    def _document(self, url: str, version: str, extension: str, size: int) -> SourceDocument:
        path = urlsplit(url).path
        title = path.rstrip("/").rsplit("/", 1)[-1] or urlsplit(url).netloc
        return SourceDocument(doc_id=f"{self.source}:{url}", source=self.source, uri=url, title=title,
                              version=version, size=size, groups=self.groups, classification=self.classification,
                              extension=extension)


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href and not href.startswith(("mailto:", "javascript:", "tel:")):
                self.hrefs.append(href)


def _extension(url: str, content_type: str) -> str | None:
    """The file type of a URL's content: from its content type, else its path's suffix, else None."""
    if content_type in DOCUMENT_TYPES:
        return DOCUMENT_TYPES[content_type]
    suffix = urlsplit(url).path.lower().rsplit("/", 1)[-1]
    suffix = f".{suffix.rsplit('.', 1)[-1]}" if "." in suffix else ""
    if suffix in FILE_SUFFIXES or suffix in (".html", ".htm"):
        return ".html" if suffix == ".htm" else suffix
    return ".html" if not content_type else None
