"""A Confluence stand-in on 127.0.0.1 that speaks the documented v1 REST shapes the connector reads:
``GET /wiki/rest/api/space/{key}?expand=permissions``, ``GET /wiki/rest/api/content`` (paged with
``start``/``limit`` and ``_links.next`` relative to ``_links.base``, read restrictions and ancestors
expanded), ``GET /wiki/rest/api/content/{id}?expand=body.storage``,
``GET /wiki/rest/api/content/{id}/child/attachment`` and attachment downloads. It checks the
Authorization header (401 otherwise), counts requests by path and status, and can be told to fail,
throttle (429 with Retry-After) or cut a path's requests."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from standins.stand_in_http import StandInHandler, StandInServer, start
from standins.web_site import Trouble

CONTEXT = "/wiki"


@dataclass
class Attachment:
    id: str
    title: str
    data: bytes
    version: int = 1
    media_type: str = "application/pdf"


@dataclass
class WikiPage:
    id: str
    space: str
    title: str
    body: str
    version: int = 1
    ancestors: list[str] = field(default_factory=list)
    read_groups: list[str] = field(default_factory=list)  # read restrictions on the page itself
    read_users: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class Confluence:
    username: str
    token: str
    spaces: dict[str, list[str]] = field(default_factory=dict)  # space key -> groups with read permission
    pages: dict[str, WikiPage] = field(default_factory=dict)
    trouble: dict[str, Trouble] = field(default_factory=dict)  # by prefix of the path and query
    counts: Counter = field(default_factory=Counter)
    url: str = ""

    def put(self, page: WikiPage) -> None:
        if page.id in self.pages:
            page.version = self.pages[page.id].version + 1
        self.pages[page.id] = page

    def requests(self, path_part: str = "", status: int | None = None) -> int:
        return sum(n for (path, s), n in self.counts.items() if path_part in path and status in (None, s))


def _attachment_json(page: WikiPage, attachment: Attachment) -> dict:
    return {"id": attachment.id, "type": "attachment", "title": attachment.title,
            "version": {"number": attachment.version},
            "extensions": {"mediaType": attachment.media_type, "fileSize": len(attachment.data)},
            "_links": {"download": f"/download/attachments/{page.id}/{attachment.title}?version={attachment.version}"}}


#: How many attachments a page listing expands (``children.attachment``) before it gives a next link.
EXPANDED_ATTACHMENTS = 2


def _page_json(page: WikiPage, expand: str = "") -> dict:
    def subjects(groups, users):
        return {"group": {"results": [{"type": "group", "name": g} for g in groups], "size": len(groups)},
                "user": {"results": [{"type": "known", "accountId": u} for u in users], "size": len(users)}}

    return {
        "id": page.id, "type": "page", "status": "current", "title": page.title,
        "version": {"number": page.version, "when": f"2024-10-0{min(page.version, 9)}T10:00:00.000Z"},
        "ancestors": [{"id": a, "type": "page"} for a in page.ancestors],
        "restrictions": {"read": {"operation": "read",
                                  "restrictions": subjects(page.read_groups, page.read_users)}},
        "_links": {"webui": f"/spaces/{page.space}/pages/{page.id}", "self": f"/rest/api/content/{page.id}"},
        **({"children": {"attachment": {
            "results": [_attachment_json(page, a) for a in page.attachments[:EXPANDED_ATTACHMENTS]],
            "size": min(len(page.attachments), EXPANDED_ATTACHMENTS), "limit": EXPANDED_ATTACHMENTS,
            "_links": {"next": f"/rest/api/content/{page.id}/child/attachment?start={EXPANDED_ATTACHMENTS}"}
            if len(page.attachments) > EXPANDED_ATTACHMENTS else {}}}} if "children.attachment" in expand else {}),
    }


def serve(wiki: Confluence) -> tuple[StandInServer, threading.Thread]:
    expected = "Basic " + base64.b64encode(f"{wiki.username}:{wiki.token}".encode()).decode()

    class Handler(StandInHandler):

        def _send(self, status: int, payload: object = None, raw: bytes | None = None, headers: dict | None = None):
            path = urlsplit(self.path).path
            wiki.counts[(path, status)] += 1
            body = raw if raw is not None else json.dumps(payload or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            path, query = split.path, {k: v[0] for k, v in parse_qs(split.query).items()}
            trouble = next((t for prefix, t in wiki.trouble.items() if self.path.startswith(prefix) and t.times > 0),
                           None)
            if trouble is not None:
                trouble.times -= 1
                if trouble.status == 0:
                    wiki.counts[(path, 0)] += 1
                    self.cut()
                    return
                return self._send(trouble.status, {"message": "trouble"},
                                  headers={"Retry-After": trouble.retry_after} if trouble.retry_after else None)
            if self.headers.get("Authorization") != expected:
                return self._send(401, {"statusCode": 401, "message": "Unauthorized"})
            api = path.removeprefix(CONTEXT + "/rest/api")
            parts = [p for p in api.split("/") if p]
            if path.startswith(CONTEXT + "/download/attachments/"):
                _, _, _, page_id, name = path.removeprefix(CONTEXT).split("/", 4)
                page = wiki.pages.get(page_id)
                found = [a for a in (page.attachments if page else []) if a.title == name]
                return self._send(200, raw=found[0].data) if found else self._send(404, {"message": "no attachment"})
            if parts[:1] == ["space"] and len(parts) == 2:
                if parts[1] not in wiki.spaces:
                    return self._send(404, {"message": f"No space with key : {parts[1]}"})
                groups = wiki.spaces[parts[1]]
                return self._send(200, {"key": parts[1], "permissions": [
                    {"operation": {"operation": "read", "targetType": "space"},
                     "subjects": {"group": {"results": [{"type": "group", "name": g} for g in groups]}}},
                    {"operation": {"operation": "administer", "targetType": "space"},
                     "subjects": {"group": {"results": [{"type": "group", "name": "confluence-administrators"}]}}},
                ]})
            if parts == ["content"]:
                start, limit = int(query.get("start", 0)), int(query.get("limit", 25))
                listed = [p for p in wiki.pages.values() if p.space == query.get("spaceKey")]
                window = listed[start:start + limit]
                links = {"base": wiki.url + CONTEXT, "context": CONTEXT}
                if start + limit < len(listed):
                    links["next"] = f"/rest/api/content?spaceKey={query['spaceKey']}&type=page&limit={limit}" \
                                    f"&start={start + limit}&expand={query.get('expand', '')}"
                return self._send(200, {"results": [_page_json(p, query.get("expand", "")) for p in window],
                                        "start": start, "limit": limit,
                                        "size": len(window), "_links": links})
            if parts[:1] == ["content"] and len(parts) == 2:
                page = wiki.pages.get(parts[1])
                if page is None:
                    return self._send(404, {"message": "No content found with id"})
                return self._send(200, {**_page_json(page), "body": {"storage": {"value": page.body,
                                                                                  "representation": "storage"}}})
            if parts[:1] == ["content"] and parts[2:] == ["child", "attachment"]:
                page = wiki.pages.get(parts[1])
                if page is None:
                    return self._send(404, {"message": "No content found with id"})
                results = [_attachment_json(page, a) for a in page.attachments]
                return self._send(200, {"results": results, "start": 0, "limit": 50, "size": len(results),
                                        "_links": {"base": wiki.url + CONTEXT, "context": CONTEXT}})
            return self._send(404, {"message": "not found"})

    server, thread, wiki.url = start(Handler)
    return server, thread
