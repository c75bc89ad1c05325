"""`enclave ingest --source <name>` and `enclave status` for a web site, Confluence and SharePoint source,
each against its stand-in on 127.0.0.1, in a subprocess as an operator runs them, with the secrets in
the environment: each source syncs, a re-run changes nothing, and no secret is ever printed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from standins.confluence_server import Confluence, WikiPage
from standins.confluence_server import serve as serve_wiki
from standins.graph_server import DRIVE, DriveItem, Graph
from standins.graph_server import serve as serve_graph
from standins.web_site import Page, WebSite
from standins.web_site import serve as serve_site

WIKI_TOKEN, GRAPH_SECRET = "wiki-Token-Never-Printed-5", "graph-Secret-Never-Printed-8"


@pytest.fixture
def servers():
    site = WebSite()
    site.pages["/robots.txt"] = Page(b"User-agent: *\n", content_type="text/plain")
    site.html("/", "Intranet", "The canteen opens at 11:00.", ["/it.html"])
    site.html("/it.html", "IT", "Passwords need 14 characters.")
    wiki = Confluence("bot@halvard.example", WIKI_TOKEN, spaces={"ENG": ["confluence-users"]})
    wiki.put(WikiPage("100", "ENG", "Releases", "<p>Releases ship on the first Tuesday of a month.</p>"))
    graph = Graph("halvard.onmicrosoft.com", "app-1", GRAPH_SECRET)
    graph.put(DriveItem("I1", "budget.md", data=b"# Budget\n\nThe 2025 budget is NOK 12 million.\n", groups=["g-fin"]))
    running = [serve_site(site)[0], serve_wiki(wiki)[0], serve_graph(graph)[0]]
    yield site, wiki, graph
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_each_remote_kind_syncs_from_the_cli_and_no_secret_is_printed(tmp_path, servers):
    site, wiki, graph = servers
    config = tmp_path / "enclave.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "sources": [
        {"name": "intranet", "kind": "web", "groups": ["staff"], "web": {"start_urls": [f"{site.url}/"]}},
        {"name": "wiki", "kind": "confluence", "group_map": {"confluence-users": "staff"},
         "confluence": {"base_url": f"{wiki.url}/wiki", "spaces": ["ENG"], "username": "bot@halvard.example"}},
        {"name": "drive", "kind": "sharepoint", "group_map": {"g-fin": "finance"},
         "sharepoint": {"tenant_id": "halvard.onmicrosoft.com", "client_id": "app-1", "drive_id": DRIVE,
                        "graph_url": f"{graph.url}/v1.0", "authority": graph.url}},
    ]}), encoding="utf-8")
    env = {**os.environ, "CONFLUENCE_TOKEN": WIKI_TOKEN, "GRAPH_CLIENT_SECRET": GRAPH_SECRET}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "enclave.cli", *args, "--config", str(config)], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path, env=env)

    runs = [cli("ingest", "--source", name) for name in ("intranet", "wiki", "drive")]
    for run, expected in zip(runs, ("2 indexed", "1 indexed", "1 indexed")):
        assert run.returncode == 0, run.stderr
        assert expected in run.stdout
    again = cli("ingest")  # every source: nothing changed
    assert again.returncode == 0 and again.stdout.count("unchanged") == 3 and "indexed" not in again.stdout
    status = cli("status")
    assert status.returncode == 0 and all(name in status.stdout for name in ("intranet", "wiki", "drive"))
    for run in (*runs, again, status):
        assert WIKI_TOKEN not in run.stdout + run.stderr and GRAPH_SECRET not in run.stdout + run.stderr
