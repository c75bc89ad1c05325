"""SharePoint Online document libraries and OneDrive, through Microsoft Graph: the drive's delta query
(changes and deletions since the last sync), each file's permissions, an app's client credentials."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx

from enclave.connectors.patient_http import AccessDenied, PatientHttp
from enclave.contracts import Classification, SourceDocument, SourceUnavailable

#: Asks the delta query to report deletions as items with a ``deleted`` facet and permission (sharing)
#: changes as changed items (Graph's documented ``Prefer`` values for driveItem delta).
DELTA_PREFER = "deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges"
#: The scope a client-credentials token asks for: the app's granted Graph permissions.
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class SharePointConnector:
    """The files of one drive (a SharePoint document library, or a OneDrive): one
    [SourceDocument][enclave.contracts.SourceDocument] per file, with the groups its permissions grant.

    Usage::

        connector = SharePointConnector("contracts", tenant_id="contoso.onmicrosoft.com", client_id=app_id,
                                        client_secret=secret, site_id="contoso.sharepoint.com,2c1f...,9a0e...")
        docs = list(connector.list_documents())   # the first time: the whole drive; later: its changes
        state = connector.state()                 # the delta link and the drive's files, for the next sync

    It signs in with the OAuth 2.0 client-credentials grant (``POST {authority}/{tenant}/oauth2/v2.0/token``,
    scope ``https://graph.microsoft.com/.default``; an app registration with ``Files.Read.All`` or
    ``Sites.Read.All``) and reads ``{graph_url}/drives/{drive_id}/root/delta`` (or the default drive of
    ``site_id``), page by page to its ``@odata.deltaLink``, which the ledger keeps for the next sync: then
    only files added, changed, deleted or re-shared since are reported, and the connector applies them
    to the drive's file list it also keeps. An expired delta link (410 Gone) starts over from a full
    listing. For each new or changed file (and every file under a changed folder) it reads
    ``/items/{id}/permissions``: the granted groups (their Entra object id; map ids to names with the
    source's ``group_map``) and users (``user:<email or id>``) become the document's groups. ``version``
    is the file's cTag (it changes with the content, not with a rename or a permission), ``uri`` its
    webUrl, ``doc_id`` ``"<source>:<item id>"``.

    ``list_documents`` raises [SourceUnavailable][enclave.contracts.SourceUnavailable] on any failure
    (token refused, 401/403, 5xx, a timeout, a page without its next or delta link), keeping the last
    good state, so the ingest deletes nothing; 429/503 wait for their ``Retry-After`` within
    ``retry_budget`` seconds. ``fetch`` downloads ``/items/{id}/content`` (following Graph's redirect to
    the download URL) and raises FileNotFoundError, PermissionError or ConnectionError.
    """

    def __init__(
        self,
        source: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        drive_id: str | None = None,
        site_id: str | None = None,
        graph_url: str = "https://graph.microsoft.com/v1.0",
        authority: str = "https://login.microsoftonline.com",
        page_size: int = 200,
        timeout: float = 30.0,
        retry_budget: float = 120.0,
        classification: str = Classification.INTERNAL,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if (drive_id is None) == (site_id is None):
            raise ValueError("give exactly one of drive_id (a drive) or site_id (a site's default drive)")
        self.source = source
        self.tenant_id, self.client_id = tenant_id, client_id
        self._client_secret = client_secret
        self.drive = f"drives/{drive_id}" if drive_id else f"sites/{site_id}/drive"
        self.graph_url = graph_url.rstrip("/")
        self.authority = authority.rstrip("/")
        self.page_size = page_size
        self.classification = str(classification)
        self.http = PatientHttp(source, timeout=timeout, retry_budget=retry_budget, transport=transport)
        self._token, self._token_expires = "", 0.0
        self._delta_link = ""
        self._files: dict[str, dict[str, Any]] = {}  # item id -> what a document needs, and its groups
        self._parents: dict[str, str] = {}  # item id (file or folder) -> parent folder id

    def __repr__(self) -> str:
        return f"SharePointConnector({self.source!r}, {self.graph_url}/{self.drive})"

    @property
    def requests(self) -> Counter[str]:
        """Requests made (token, Graph), by ``"METHOD status"``."""
        return self.http.requests

    # -- state kept between syncs (in the ledger) -----------------------------------------------------------------------
    def restore(self, state: dict[str, Any]) -> None:
        """Take the delta link and the drive's files the last successful sync left."""
        self._delta_link = state.get("delta_link", "")
        self._files = dict(state.get("files", {}))
        self._parents = dict(state.get("parents", {}))

    def state(self) -> dict[str, Any]:
        """The delta link and the drive's files (JSON-able), for the next sync."""
        return {"delta_link": self._delta_link, "files": self._files, "parents": self._parents}

    # -- the connector --------------------------------------------------------------------------------------------------
    def list_documents(self) -> Iterator[SourceDocument]:
        """Every file of the drive now, after applying the changes since the last sync. Raises SourceUnavailable."""
        self.http.start_budget()
        files, parents, delta_link = self._changes()
        self._files, self._parents, self._delta_link = files, parents, delta_link
        for item_id, item in sorted(files.items()):
            yield SourceDocument(
                doc_id=f"{self.source}:{item_id}", source=self.source, uri=item["url"], title=item["name"],
                version=item["ctag"], size=item["size"], groups=tuple(item["groups"]),
                classification=self.classification,
                extension=f".{item['name'].rsplit('.', 1)[-1].lower()}" if "." in item["name"] else "",
                modified=item["modified"],
            )

    def fetch(self, document: SourceDocument) -> bytes:
        """The file's bytes. Raises FileNotFoundError, PermissionError or ConnectionError."""
        item_id = document.doc_id.removeprefix(f"{self.source}:")
        try:
            response = self.http.request("GET", f"{self.graph_url}/{self.drive}/items/{item_id}/content",
                                         headers=self._auth(), follow_redirects=True)
        except AccessDenied:
            raise PermissionError(f"{document.uri}: access denied") from None
        except SourceUnavailable as exc:
            raise ConnectionError(str(exc)) from None
        if response.status_code == 404:
            raise FileNotFoundError(f"{document.uri} is gone")
        if response.status_code != 200:
            raise ConnectionError(f"{document.uri}: HTTP {response.status_code}")
        return response.content

    # -- the delta query ------------------------------------------------------------------------------------------------
    def _changes(self) -> tuple[dict[str, dict[str, Any]], dict[str, str], str]:
        """The drive's files after this sync's changes, their parents, and the next delta link; the
        connector's own state is left as it was until the whole delta has been read."""
        files, parents = dict(self._files), dict(self._parents)
        url = self._delta_link or f"{self.graph_url}/{self.drive}/root/delta?$top={self.page_size}"
        if not self._delta_link:
            files, parents = {}, {}
        touched: set[str] = set()
        changed_folders: set[str] = set()
        while True:
            response = self.http.request("GET", url, headers={**self._auth(), "Prefer": DELTA_PREFER})
            if response.status_code == 410 and self._delta_link:  # the delta link expired: a full listing again
                self._delta_link = ""
                return self._full_listing()
            data = self._json(response, url)
            for item in data.get("value", []):
                item_id = str(item["id"])
                if "deleted" in item:
                    files.pop(item_id, None)
                    parents.pop(item_id, None)
                    continue
                parent = item.get("parentReference", {}).get("id")
                if parent:
                    parents[item_id] = parent
                if "folder" in item or "root" in item:
                    if "root" not in item:
                        changed_folders.add(item_id)
                    continue
                if "file" not in item:
                    continue
                files[item_id] = {"name": item.get("name", ""), "ctag": item.get("cTag") or item.get("eTag", ""),
                                  "size": int(item.get("size") or 0), "url": item.get("webUrl", ""),
                                  "modified": item.get("lastModifiedDateTime", ""),
                                  "groups": files.get(item_id, {}).get("groups", [])}
                touched.add(item_id)
            if data.get("@odata.nextLink"):
                url = data["@odata.nextLink"]
                continue
            if not data.get("@odata.deltaLink"):
                raise SourceUnavailable(f"source {self.source!r}: a delta page had neither a next nor a delta link: "
                                        "the listing was cut off")
            delta_link = data["@odata.deltaLink"]
            break
        for item_id in files:  # files under a folder whose sharing changed inherit the change
            if item_id not in touched and _under(item_id, changed_folders, parents):
                touched.add(item_id)
        for item_id in touched:
            files[item_id]["groups"] = self._granted(item_id)
        return files, parents, delta_link

    def _full_listing(self) -> tuple[dict[str, dict[str, Any]], dict[str, str], str]:
        saved = (self._files, self._parents)
        self._files, self._parents = {}, {}
        try:
            return self._changes()
        finally:
            self._files, self._parents = saved

    def _granted(self, item_id: str) -> list[str]:
        """The groups (Entra object ids) and users (``user:<email or id>``) a file's permissions grant, sorted."""
        url = f"{self.graph_url}/{self.drive}/items/{item_id}/permissions"
        names: set[str] = set()
        while url:
            data = self._json(self.http.request("GET", url, headers=self._auth()), url)
            for permission in data.get("value", []):
                for grant in [permission.get("grantedToV2"), *permission.get("grantedToIdentitiesV2", [])]:
                    if not grant:
                        continue
                    if grant.get("group", {}).get("id"):
                        names.add(grant["group"]["id"])
                    user = grant.get("user") or {}
                    if user.get("email") or user.get("id"):
                        names.add(f"user:{user.get('email') or user['id']}")
            url = data.get("@odata.nextLink", "")
        return sorted(names)

    def _auth(self) -> dict[str, str]:
        """The Authorization header, with a token from the client-credentials grant (renewed a minute early)."""
        if not self._token or time.monotonic() > self._token_expires - 60:
            url = f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"
            response = self.http.request("POST", url, data={
                "client_id": self.client_id, "client_secret": self._client_secret, "scope": GRAPH_SCOPE,
                "grant_type": "client_credentials"})
            if response.status_code != 200:
                raise AccessDenied(f"source {self.source!r}: the token endpoint answered HTTP {response.status_code} "
                                   f"for client {self.client_id}")
            token = self._json(response, url)
            self._token = token["access_token"]
            self._token_expires = time.monotonic() + float(token.get("expires_in", 3600))
        return {"Authorization": f"Bearer {self._token}"}

    def _json(self, response: httpx.Response, url: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise SourceUnavailable(f"source {self.source!r}: {url.split('?')[0]} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise SourceUnavailable(f"source {self.source!r}: {url.split('?')[0]} answered something that is "
                                    "not JSON") from None


def _under(item_id: str, folders: set[str], parents: dict[str, str]) -> bool:
    """Whether ``item_id`` lies (at any depth) in one of ``folders``."""
    seen: set[str] = set()
    current = parents.get(item_id)
    while current and current not in seen:
        if current in folders:
            return True
        seen.add(current)
        current = parents.get(current)
    return False
