"""Confluence (Cloud and Data Center): pages and their attachments, with who may read them, through the
documented REST API (``/rest/api``) over httpx."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from enclave.connectors.patient_http import AccessDenied, PatientHttp
from enclave.contracts import Classification, SourceDocument, SourceUnavailable

#: What a page listing asks Confluence to expand: its version, ancestors, read restrictions and the first
#: page of its attachments (a page with more is listed on its own).
PAGE_EXPAND = ("version,ancestors,restrictions.read.restrictions.group,restrictions.read.restrictions.user,"
               "children.attachment.version")


@dataclass(frozen=True)
class _Page:
    id: str
    title: str
    version: int
    modified: str
    webui: str
    ancestors: tuple[str, ...]
    restricted_to: frozenset[str] | None  # None: no read restriction on this page itself
    attachments: tuple[dict[str, Any], ...] | None = None  # None: not all in the listing, ask for them


class ConfluenceConnector:
    """The pages (and attachments) of Confluence spaces: one
    [SourceDocument][enclave.contracts.SourceDocument] each, with the groups that may read it.

    Usage::

        connector = ConfluenceConnector("wiki", "https://acme.atlassian.net/wiki", ["ENG", "HR"],
                                        username="bot@acme.example", token=api_token)    # Cloud
        connector = ConfluenceConnector("wiki", "https://confluence.acme.local", ["ENG"], token=pat)  # Data Center
        for doc in connector.list_documents():
            print(doc.doc_id, doc.version, doc.groups)     # wiki:page:65601 7 ('engineering',)

    ``base_url`` is where ``/rest/api`` lives (Cloud: ``https://<site>.atlassian.net/wiki``). With a
    ``username`` the token is sent as HTTP Basic (a Cloud API token), without one as a Bearer token (a
    Data Center personal access token). ``doc_id`` is ``"<source>:page:<id>"`` or
    ``"<source>:attachment:<id>"``; ``version`` is Confluence's version number, so an unchanged page
    costs nothing but its line in the listing; ``uri`` the page's web address.

    Who may read: a space's read permission (``GET /rest/api/space/{key}?expand=permissions``: its
    groups, and its users as ``user:<accountId or username>``) unless the page or one of its ancestors
    has read restrictions; then the groups (and ``user:`` names) every such restriction admits (the
    intersection, as Confluence applies inherited restrictions). An attachment has its page's. Map the
    names to Enclave's groups with the source's ``group_map``.

    ``list_documents`` raises [SourceUnavailable][enclave.contracts.SourceUnavailable] on any failure
    of the listing (401/403, 5xx, a timeout, a page of results without its next link), so the ingest
    deletes nothing; 429/503 wait for their ``Retry-After`` within ``retry_budget`` seconds. ``fetch``
    raises FileNotFoundError (deleted since), PermissionError (denied) or ConnectionError.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        spaces: list[str],
        *,
        token: str,
        username: str | None = None,
        attachments: bool = True,
        page_size: int = 50,
        timeout: float = 30.0,
        retry_budget: float = 120.0,
        classification: str = Classification.INTERNAL,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not spaces:
            raise ValueError("a confluence source needs at least one space key")
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.spaces = list(spaces)
        self.attachments = attachments
        self.page_size = page_size
        self.classification = str(classification)
        auth = httpx.BasicAuth(username, token) if username else None  # Cloud: email + API token
        headers = {"Accept": "application/json", **({} if username else {"Authorization": f"Bearer {token}"})}
        self.http = PatientHttp(source, headers=headers, auth=auth, timeout=timeout, retry_budget=retry_budget,
                                transport=transport)

    def __repr__(self) -> str:
        return f"ConfluenceConnector({self.source!r}, {self.base_url!r}, spaces={self.spaces})"

    @property
    def requests(self) -> Counter[str]:
        """Requests made, by ``"METHOD status"``."""
        return self.http.requests

    def list_documents(self) -> Iterator[SourceDocument]:
        """Every current page of the spaces (and its attachments), with its readers. Raises SourceUnavailable."""
        self.http.start_budget()
        for space in self.spaces:
            readers = self._space_readers(space)
            pages = {page.id: page for page in self._pages(space)}
            for page in pages.values():
                groups = _effective_readers(page, pages, readers)
                yield SourceDocument(
                    doc_id=f"{self.source}:page:{page.id}", source=self.source, uri=urljoin(self.base_url + "/",
                                                                                          page.webui.lstrip("/")),
                    title=page.title, version=str(page.version), size=0, groups=groups,
                    classification=self.classification, extension=".html", modified=page.modified,
                )
                if self.attachments:
                    items = page.attachments if page.attachments is not None else self._attachment_items(page)
                    yield from (self._attachment(item, groups) for item in items)

    def fetch(self, document: SourceDocument) -> bytes:
        """A page's body (storage format, as an HTML document with its title) or an attachment's bytes."""
        kind, _, item = document.doc_id.removeprefix(f"{self.source}:").partition(":")
        try:
            if kind == "page":
                response = self.http.request("GET", f"{self.base_url}/rest/api/content/{item}",
                                             params={"expand": "body.storage"})
                self._check_fetch(response, document)
                body = response.json().get("body", {}).get("storage", {}).get("value", "")
                return (f"<html><head><title>{html.escape(document.title)}</title></head><body>"
                        f"<h1>{html.escape(document.title)}</h1>{body}</body></html>").encode()
            response = self.http.request("GET", document.uri, follow_redirects=True)
            self._check_fetch(response, document)
            return response.content
        except AccessDenied:
            raise PermissionError(f"{document.uri}: access denied") from None
        except SourceUnavailable as exc:
            raise ConnectionError(str(exc)) from None

    # -- listing --------------------------------------------------------------------------------------------------------
    def _space_readers(self, space: str) -> frozenset[str]:
        response = self.http.request("GET", f"{self.base_url}/rest/api/space/{space}", params={"expand": "permissions"})
        if response.status_code != 200:
            raise SourceUnavailable(f"source {self.source!r}: space {space} answered HTTP {response.status_code}")
        readers: set[str] = set()
        for permission in response.json().get("permissions", []):
            operation = permission.get("operation", {})
            if operation.get("operation") == "read" and operation.get("targetType") == "space":
                readers |= _subjects(permission.get("subjects", {}))
        return frozenset(readers)

    def _pages(self, space: str) -> Iterator[_Page]:
        url: str | None = f"{self.base_url}/rest/api/content"
        params: dict[str, Any] | None = {"spaceKey": space, "type": "page", "status": "current",
                                         "limit": self.page_size, "start": 0, "expand": PAGE_EXPAND}
        while url:
            data = self._listing_page(url, params)
            for item in data.get("results", []):
                restrictions = item.get("restrictions", {}).get("read", {}).get("restrictions", {})
                readers = _subjects(restrictions)
                expanded = item.get("children", {}).get("attachment")
                complete = expanded is not None and not expanded.get("_links", {}).get("next")
                yield _Page(
                    id=str(item["id"]), title=item.get("title", ""), version=int(item.get("version", {}).get("number", 0)),
                    modified=item.get("version", {}).get("when", ""), webui=item.get("_links", {}).get("webui", ""),
                    ancestors=tuple(str(a["id"]) for a in item.get("ancestors", [])),
                    restricted_to=frozenset(readers) if readers else None,
                    attachments=tuple(expanded.get("results", [])) if complete else None,
                )
            url, params = self._next(data, len(data.get("results", []))), None

    def _attachment_items(self, page: _Page) -> Iterator[dict[str, Any]]:
        """A page's attachments from their own listing (when the page listing did not hold them all)."""
        url: str | None = f"{self.base_url}/rest/api/content/{page.id}/child/attachment"
        params: dict[str, Any] | None = {"limit": self.page_size, "start": 0, "expand": "version"}
        while url:
            data = self._listing_page(url, params)
            yield from data.get("results", [])
            url, params = self._next(data, len(data.get("results", []))), None

    def _attachment(self, item: dict[str, Any], groups: tuple[str, ...]) -> SourceDocument:
        title = item.get("title", "")
        return SourceDocument(
            doc_id=f"{self.source}:attachment:{item['id']}", source=self.source,
            uri=urljoin(self.base_url + "/", item.get("_links", {}).get("download", "").lstrip("/")),
            title=title, version=str(item.get("version", {}).get("number", 0)),
            size=int(item.get("extensions", {}).get("fileSize") or 0), groups=groups,
            classification=self.classification,
            extension=f".{title.rsplit('.', 1)[-1].lower()}" if "." in title else "",
            modified=item.get("version", {}).get("when", ""),
        )

    def _listing_page(self, url: str, params: dict[str, Any] | None) -> dict[str, Any]:
        response = self.http.request("GET", url, params=params)
        if response.status_code != 200:
            raise SourceUnavailable(f"source {self.source!r}: {url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise SourceUnavailable(f"source {self.source!r}: {url} answered something that is not JSON") from None

    def _next(self, data: dict[str, Any], got: int) -> str | None:
        """The next page's URL (``_links.next``, relative to ``_links.base``), None after the last page;
        a full page without a next link is a truncated listing."""
        links = data.get("_links", {})
        if links.get("next"):
            return urljoin(links.get("base", self.base_url).rstrip("/") + "/", links["next"].lstrip("/"))
        size, limit = data.get("size", got), data.get("limit", self.page_size)
        if got != size or (limit and size > limit):
            raise SourceUnavailable(f"source {self.source!r}: a page of results says size {size} but holds {got} "
                                    "and has no next link: the listing was cut off")
        return None

    def _check_fetch(self, response: httpx.Response, document: SourceDocument) -> None:
        if response.status_code == 404:
            raise FileNotFoundError(f"{document.uri} is gone")
        if response.status_code != 200:
            raise ConnectionError(f"{document.uri}: HTTP {response.status_code}")


def _subjects(subjects: dict[str, Any]) -> set[str]:
    """Group names, and users as ``user:<accountId or username>``, of a permission's or restriction's subjects."""
    names = {g["name"] for g in subjects.get("group", {}).get("results", []) if g.get("name")}
    for user in subjects.get("user", {}).get("results", []):
        who = user.get("accountId") or user.get("username") or user.get("userKey")
        if who:
            names.add(f"user:{who}")
    return names


def _effective_readers(page: _Page, pages: dict[str, _Page], space_readers: frozenset[str]) -> tuple[str, ...]:
    """The space's readers, narrowed by every read restriction on the page and its ancestors (all of them
    apply); sorted."""
    readers: frozenset[str] | None = None
    for level in [*(pages[a] for a in page.ancestors if a in pages), page]:
        if level.restricted_to is not None:
            readers = level.restricted_to if readers is None else readers & level.restricted_to
    return tuple(sorted(space_readers if readers is None else readers))
