"""A Microsoft Graph stand-in on 127.0.0.1 speaking the documented shapes the SharePoint connector
reads: the client-credentials token endpoint (``POST /{tenant}/oauth2/v2.0/token``), a drive's delta
query (``GET /v1.0/drives/{id}/root/delta``: pages with ``@odata.nextLink``, a last page with
``@odata.deltaLink``, deletions as items with a ``deleted`` facet, sharing changes when asked with
``Prefer: deltashowsharingchanges``, 410 for an expired link), item permissions (``grantedToV2``
groups and users, inherited from folders) and content (a 302 to a pre-authenticated download URL).
It checks bearer tokens (401 otherwise), counts requests by (method, path, status), and can be told to
fail, throttle or cut a path's requests."""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from standins.stand_in_http import StandInHandler, StandInServer, start
from standins.web_site import Trouble

DRIVE = "b!drive-0001"


@dataclass
class DriveItem:
    id: str
    name: str
    parent: str = "root"
    data: bytes = b""
    folder: bool = False
    groups: list[str] = field(default_factory=list)  # Entra group ids granted on this item itself
    users: list[str] = field(default_factory=list)  # emails granted on this item itself
    ctag: int = 1
    etag: int = 1


@dataclass
class Graph:
    tenant: str
    client_id: str
    client_secret: str
    items: dict[str, DriveItem] = field(default_factory=dict)
    log: list[tuple[int, str, bool]] = field(default_factory=list)  # (sequence, item id, sharing change only)
    seq: int = 0
    oldest_valid: int = 0  # delta links with a token below this answer 410
    trouble: dict[str, Trouble] = field(default_factory=dict)  # by path prefix
    counts: Counter = field(default_factory=Counter)
    tokens: set[str] = field(default_factory=set)
    url: str = ""

    def __post_init__(self) -> None:
        self.items["root"] = DriveItem("root", "root", parent="", folder=True)

    def _changed(self, item_id: str, sharing: bool = False) -> None:
        self.seq += 1
        self.log.append((self.seq, item_id, sharing))

    def put(self, item: DriveItem) -> None:
        old = self.items.get(item.id)
        if old is not None:
            item.ctag = old.ctag + (old.data != item.data)
            item.etag = old.etag + 1
            item.groups, item.users = item.groups or old.groups, item.users or old.users
        self.items[item.id] = item
        self._changed(item.id)

    def share(self, item_id: str, groups: list[str], users: list[str] | None = None) -> None:
        item = self.items[item_id]
        item.groups, item.users, item.etag = groups, users or [], item.etag + 1
        self._changed(item_id, sharing=True)

    def delete(self, item_id: str) -> None:
        self.items.pop(item_id)
        self._changed(item_id)

    def granted(self, item_id: str) -> tuple[list[str], list[str]]:
        """Groups and users of an item with those inherited from its folders."""
        groups, users, current = [], [], self.items.get(item_id)
        while current is not None:
            groups += current.groups
            users += current.users
            current = self.items.get(current.parent) if current.parent else None
        return sorted(set(groups)), sorted(set(users))

    def requests(self, path_part: str = "", method: str | None = None, status: int | None = None) -> int:
        return sum(n for (m, p, s), n in self.counts.items()
                   if path_part in p and method in (None, m) and status in (None, s))


def _item_json(graph: Graph, item: DriveItem) -> dict:
    body = {"id": item.id, "name": item.name, "eTag": f'"{{{item.id}}},{item.etag}"',
            "lastModifiedDateTime": "2024-10-03T10:00:00Z", "webUrl": f"{graph.url}/sites/docs/Shared%20Documents/{item.name}",
            "parentReference": {"driveId": DRIVE, "id": item.parent} if item.parent else {"driveId": DRIVE}}
    if item.id == "root":
        return {**body, "root": {}, "folder": {"childCount": 0}}
    if item.folder:
        return {**body, "folder": {"childCount": 0}}
    return {**body, "cTag": f'"c:{{{item.id}}},{item.ctag}"', "size": len(item.data),
            "file": {"mimeType": "application/octet-stream"}}


def serve(graph: Graph) -> tuple[StandInServer, threading.Thread]:
    class Handler(StandInHandler):

        def _send(self, status: int, payload: object = None, raw: bytes | None = None, headers: dict | None = None):
            graph.counts[(self.command, urlsplit(self.path).path, status)] += 1
            body = raw if raw is not None else json.dumps(payload or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _trouble(self, path: str) -> bool:
            trouble = next((t for prefix, t in graph.trouble.items() if path.startswith(prefix) and t.times > 0), None)
            if trouble is None:
                return False
            trouble.times -= 1
            if trouble.status == 0:
                graph.counts[(self.command, path, 0)] += 1
                self.cut()
            else:
                self._send(trouble.status, {"error": {"code": "trouble", "message": "injected"}},
                           headers={"Retry-After": trouble.retry_after} if trouble.retry_after else None)
            return True

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0))
                                                 .decode()).items()}
            if self._trouble(path):
                return
            if path != f"/{graph.tenant}/oauth2/v2.0/token":
                return self._send(404, {"error": "not found"})
            if (form.get("client_id"), form.get("client_secret"), form.get("grant_type")) != \
                    (graph.client_id, graph.client_secret, "client_credentials"):
                return self._send(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client "
                                                                                        "secret provided."})
            token = secrets.token_urlsafe(16)
            graph.tokens.add(token)
            return self._send(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token})

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            path, query = split.path, {k: v[0] for k, v in parse_qs(split.query).items()}
            if self._trouble(path):
                return
            if path.startswith("/download/"):  # pre-authenticated: no bearer token
                item = graph.items.get(path.rsplit("/", 1)[-1])
                return self._send(200, raw=item.data) if item else self._send(404, {"error": {"code": "itemNotFound"}})
            if self.headers.get("Authorization", "").removeprefix("Bearer ") not in graph.tokens:
                return self._send(401, {"error": {"code": "InvalidAuthenticationToken"}})
            prefix = f"/v1.0/drives/{DRIVE}"
            if not path.startswith(prefix):
                return self._send(404, {"error": {"code": "itemNotFound"}})
            rest = path.removeprefix(prefix)
            if rest == "/root/delta":
                return self._delta(query)
            parts = [p for p in rest.split("/") if p]
            if len(parts) == 3 and parts[0] == "items" and parts[1] in graph.items:
                if parts[2] == "permissions":
                    groups, users = graph.granted(parts[1])
                    value = [{"id": f"g{i}", "roles": ["read"], "grantedToV2": {"group": {"id": g, "displayName": g}}}
                             for i, g in enumerate(groups)]
                    value += [{"id": f"u{i}", "roles": ["read"], "grantedToV2": {"user": {"id": f"id-{u}", "email": u}}}
                              for i, u in enumerate(users)]
                    value.append({"id": "link", "roles": ["read"], "link": {"scope": "organization", "type": "view"}})
                    return self._send(200, {"value": value})
                if parts[2] == "content":
                    return self._send(302, raw=b"", headers={"Location": f"{graph.url}/download/{parts[1]}"})
            return self._send(404, {"error": {"code": "itemNotFound"}})

        def _delta(self, query: dict[str, str]) -> None:
            top, skip = int(query.get("$top", 200)), int(query.get("skip", 0))
            sharing = "deltashowsharingchanges" in self.headers.get("Prefer", "")
            if "token" in query:
                since = int(query["token"])
                if since < graph.oldest_valid:
                    return self._send(410, {"error": {"code": "resyncRequired", "message": "Resync required."}})
                changed = [(i, s) for seq, i, s in graph.log if seq > since]
                ids = list(dict.fromkeys(i for i, s in changed if sharing or not s))
                items = [_item_json(graph, graph.items[i]) if i in graph.items else
                         {"id": i, "deleted": {"state": "deleted"}, "parentReference": {"driveId": DRIVE}} for i in ids]
                for item in items:
                    if any(i == item["id"] and s for i, s in changed) and sharing:
                        item["@microsoft.graph.sharedChanged"] = "True"
            else:
                items = [_item_json(graph, item) for item in graph.items.values()]
            window = items[skip:skip + top]
            base = f"{graph.url}/v1.0/drives/{DRIVE}/root/delta?$top={top}"
            if "token" in query:
                base += f"&token={query['token']}"
            if skip + top < len(items):
                return self._send(200, {"value": window, "@odata.nextLink": f"{base}&skip={skip + top}"})
            return self._send(200, {"value": window, "@odata.deltaLink":
                                    f"{graph.url}/v1.0/drives/{DRIVE}/root/delta?$top={top}&token={graph.seq}"})

    server, thread, graph.url = start(Handler)
    return server, thread
