"""What a sync of a remote source costs: first sync, unchanged re-sync and a permission-change sync.

    .venv/bin/python bench/connector_sync.py --objects 300 --changed 30 [--kinds s3,web,confluence,sharepoint]

Per connector, against the servers its tests use, all on 127.0.0.1: moto's S3 server (its own
process), and the web site, Confluence and Microsoft Graph stand-ins of tests/standins (threads of
this process). Each sync goes through Enclave's ``IngestPipeline`` into an embedded Qdrant Edge index
in a temporary folder, with a new connector each time (as each scheduled run builds its own). It
prints, per sync, the wall time, the requests the connector made (S3: boto3 calls by operation;
the others: ``METHOD status``), the chunks embedded and the outcomes, with the ratio to the first
sync. It asserts nothing about time. Each document is a short note (one chunk). The permission
change: S3 replaces the metadata of ``--changed`` objects in place (same bytes, same ETag);
Confluence restricts ``--changed`` pages to another group; SharePoint shares ``--changed`` files with
another group; a web site's pages carry the source's groups, so there the source's ``groups`` change
(every page).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("moto's S3 server did not start")


class Kind:
    """One connector kind: its server, a fresh connector per sync, and a permission change."""

    name = ""

    def connector(self): ...

    def change_permissions(self, changed: int) -> None: ...

    def close(self) -> None: ...


class S3(Kind):
    name = "s3"

    def __init__(self, objects: int) -> None:
        import boto3

        self.server, self.url = start_moto()
        self.client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="bench",
                                   aws_secret_access_key="bench")
        self.client.create_bucket(Bucket="bench")
        for i in range(objects):
            self.client.put_object(Bucket="bench", Key=f"notes/note-{i:05d}.md", Metadata={"groups": "staff"},
                                   Body=note(i).encode())

    def connector(self):
        from enclave.connectors import S3Connector

        return S3Connector("notes", "bench", prefix="notes/", endpoint_url=self.url, region="us-east-1",
                           access_key_id="bench", secret_access_key="bench")

    def change_permissions(self, changed: int) -> None:
        for i in range(changed):
            key = f"notes/note-{i:05d}.md"
            self.client.copy_object(Bucket="bench", Key=key, CopySource={"Bucket": "bench", "Key": key},
                                    Metadata={"groups": "finance"}, MetadataDirective="REPLACE")

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(10)


class Web(Kind):
    name = "web"

    def __init__(self, objects: int) -> None:
        from standins.web_site import Page, WebSite, serve

        self.site = WebSite()
        self.site.pages["/robots.txt"] = Page(b"User-agent: *\n", content_type="text/plain")
        self.site.html("/", "Notes", "All notes.", [f"/note-{i:05d}.html" for i in range(objects)])
        for i in range(objects):
            self.site.html(f"/note-{i:05d}.html", f"Note {i}", note(i))
        self.server, _ = serve(self.site)
        self.groups = ["staff"]

    def connector(self):
        from enclave.connectors import WebConnector

        return WebConnector("notes", [f"{self.site.url}/"], max_pages=100_000, groups=self.groups)

    def change_permissions(self, changed: int) -> None:
        self.groups = ["finance"]

    def close(self) -> None:
        self.server.shutdown()


class Confluence(Kind):
    name = "confluence"

    def __init__(self, objects: int) -> None:
        from standins.confluence_server import Confluence as Wiki
        from standins.confluence_server import WikiPage, serve

        self.wiki = Wiki("bench@example", "bench", spaces={"NOTES": ["staff"]})
        for i in range(objects):
            self.wiki.put(WikiPage(str(1000 + i), "NOTES", f"Note {i}", f"<p>{note(i)}</p>"))
        self.server, _ = serve(self.wiki)

    def connector(self):
        from enclave.connectors import ConfluenceConnector

        return ConfluenceConnector("notes", f"{self.wiki.url}/wiki", ["NOTES"], token="bench", username="bench@example",
                                   page_size=100)

    def change_permissions(self, changed: int) -> None:
        for i in range(changed):
            self.wiki.pages[str(1000 + i)].read_groups = ["finance"]

    def close(self) -> None:
        self.server.shutdown()


class SharePoint(Kind):
    name = "sharepoint"

    def __init__(self, objects: int) -> None:
        from standins.graph_server import DriveItem, Graph, serve

        self.graph = Graph("bench.onmicrosoft.com", "bench-app", "bench-secret")
        for i in range(objects):
            self.graph.put(DriveItem(f"I{i}", f"note-{i:05d}.md", data=note(i).encode(), groups=["staff"]))
        self.server, _ = serve(self.graph)

    def connector(self):
        from standins.graph_server import DRIVE

        from enclave.connectors import SharePointConnector

        return SharePointConnector("notes", tenant_id="bench.onmicrosoft.com", client_id="bench-app",
                                   client_secret="bench-secret", drive_id=DRIVE, graph_url=f"{self.graph.url}/v1.0",
                                   authority=self.graph.url)

    def change_permissions(self, changed: int) -> None:
        for i in range(changed):
            self.graph.share(f"I{i}", ["finance"])

    def close(self) -> None:
        self.server.shutdown()


KINDS = {k.name: k for k in (S3, Web, Confluence, SharePoint)}


def note(i: int) -> str:
    return f"# Note {i}\n\nNote {i} says the sensor batch {i * 7} shipped on day {i % 28}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--changed", type=int, default=30, help="documents whose groups change")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the stand-in servers

    from enclave.indexes.embedder import DenseEmbedder

    embedder = DenseEmbedder()
    _ = embedder.model
    for name in args.kinds.split(","):
        kind = KINDS[name](args.objects)
        try:
            rows = measure(kind, embedder, args.changed)
        finally:
            kind.close()
        first = rows[0][1]
        print(f"\n{name}: {args.objects} documents, {args.changed} with new groups (web: all), servers on 127.0.0.1")
        print(f"{'sync':<20} {'seconds':>8} {'÷ first':>8} {'embedded':>9}  requests; outcomes")
        for label, seconds, requests, chunks, counts in rows:
            print(f"{label:<20} {seconds:8.2f} {seconds / first:8.3f} {chunks:9d}  {requests}; {counts}", flush=True)


def measure(kind: Kind, embedder, changed: int) -> list[tuple]:
    """First sync, unchanged re-sync and permission-change sync of one kind, into a fresh index."""
    from enclave.flows import IngestPipeline
    from enclave.indexes import EdgeIndex
    from enclave.settings import Settings

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeIndex(Path(tmp) / "index", embedder.dimension)
        with IngestPipeline.from_settings(Settings(data_dir=Path(tmp) / "data"), index=index,
                                          embedder=embedder) as pipeline:
            for label in ("first sync", "unchanged re-sync", "permission change"):
                if label == "permission change":
                    kind.change_permissions(changed)
                connector = kind.connector()
                started = time.perf_counter()
                report = pipeline.run(connector)
                rows.append((label, time.perf_counter() - started, dict(connector.requests), report.chunks_embedded,
                             report.counts()))
        index.close()
    return rows


if __name__ == "__main__":
    main()
