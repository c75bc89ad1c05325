"""SharePointConnector against a Microsoft Graph stand-in on 127.0.0.1 (tests/standins/graph_server.py):
client-credentials token, the drive's delta query and its link kept in the ledger, permissions
inherited from folders, then first sync, unchanged re-sync, an edit, a file's and a folder's sharing
change, a deletion, an expired delta link, throttling and failures mid-listing, through the real
ingest pipeline and index."""

from __future__ import annotations

import time

import pytest
from standins.graph_server import DRIVE, DriveItem, Graph, serve
from standins.web_site import Trouble
from synced_index import SyncedIndex

from enclave.connectors import SharePointConnector
from enclave.contracts import SourceUnavailable
from enclave.flows.components import build_connector
from enclave.settings import Settings, SettingsError, SharePointSettings, SourceSettings

TENANT, CLIENT, SECRET = "halvard.onmicrosoft.com", "0f3c8a4e-app", "graph-Secret-Never-Shown-77"
FINANCE, STAFF, LEGAL = "6d1e-finance-group-id", "a41b-staff-group-id", "c9f0-legal-group-id"


@pytest.fixture
def graph():
    graph = Graph(TENANT, CLIENT, SECRET)
    graph.put(DriveItem("F1", "Finance", folder=True, groups=[FINANCE]))
    graph.put(DriveItem("F2", "Contracts", parent="F1", folder=True))
    graph.put(DriveItem("I1", "budget.md", parent="F1", data=b"# Budget\n\nThe 2025 sensor budget is NOK 12 million.\n"))
    graph.put(DriveItem("I2", "supplier.md", parent="F2", data=b"# Supplier\n\nThe casing supplier is Fjordmetall AS.\n",
                        users=["kari@halvard.example"]))
    graph.put(DriveItem("I3", "handbook.md", data=b"# Handbook\n\nThe office opens at 07:30 on weekdays.\n",
                        groups=[STAFF]))
    graph.put(DriveItem("I4", "notes.md", data=b"# Notes\n\nThe quarterly review is on the 3rd of October.\n",
                        groups=[STAFF]))
    server, _ = serve(graph)
    yield graph
    server.shutdown()
    server.server_close()


def _connector(graph, **options) -> SharePointConnector:
    return SharePointConnector("docs", tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET, drive_id=DRIVE,
                               graph_url=f"{graph.url}/v1.0", authority=graph.url, timeout=5, **options)


def test_the_delta_lists_files_with_the_groups_their_permissions_grant(graph):
    connector = _connector(graph, page_size=3)
    docs = {d.doc_id: d for d in connector.list_documents()}
    assert sorted(docs) == ["docs:I1", "docs:I2", "docs:I3", "docs:I4"]  # folders and the root are no documents
    assert docs["docs:I1"].groups == (FINANCE,)  # from its folder
    assert docs["docs:I2"].groups == (FINANCE, "user:kari@halvard.example")  # two folders up, and its own grant
    assert docs["docs:I3"].groups == (STAFF,) and docs["docs:I3"].extension == ".md"
    assert docs["docs:I1"].version == '"c:{I1},1"' and docs["docs:I1"].uri.endswith("/budget.md")
    assert graph.requests("/token", "POST", 200) == 1 and graph.requests("/root/delta", "GET", 200) == 3  # 7 items by 3
    assert graph.requests("/permissions", "GET", 200) == 4
    assert connector.fetch(docs["docs:I3"]).startswith(b"# Handbook")  # Graph's 302 to the download URL, followed
    state = connector.state()
    assert "token=" in state["delta_link"] and set(state["files"]) == {"I1", "I2", "I3", "I4"}
    assert SECRET not in repr(connector) and SECRET not in str(state)


def test_a_refused_secret_fails_the_listing_without_showing_it(graph):
    connector = SharePointConnector("docs", tenant_id=TENANT, client_id=CLIENT, client_secret="wrong", drive_id=DRIVE,
                                    graph_url=f"{graph.url}/v1.0", authority=graph.url)
    with pytest.raises(SourceUnavailable, match="oauth2/v2.0/token answered HTTP 401") as failure:
        list(connector.list_documents())
    assert "wrong" not in str(failure.value)


@pytest.fixture
def synced(tmp_path, graph, embedder, monkeypatch):
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", SECRET)
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(
        name="docs", kind="sharepoint", group_map={FINANCE: "finance", STAFF: "staff", LEGAL: "legal"},
        sharepoint=SharePointSettings(tenant_id=TENANT, client_id=CLIENT, drive_id=DRIVE, graph_url=f"{graph.url}/v1.0",
                                      authority=graph.url, page_size=3, timeout=5, retry_budget=10))])
    index = SyncedIndex(settings, embedder, "docs", "docs:", "supplier budget handbook office review")
    yield index
    index.close()


def _status(report) -> dict[str, str]:
    return {o.doc_id.removeprefix("docs:"): o.status for o in report.outcomes}


def test_a_drive_syncs_by_its_delta_with_permissions(synced, graph):
    first = synced.run()
    assert _status(first) == dict.fromkeys(["I1", "I2", "I3", "I4"], "indexed")
    assert synced.sees(["finance"], "I2") and not synced.sees(["staff"], "I2")  # group_map: ids to names
    assert synced.sees(["user:kari@halvard.example"], "I2")

    # unchanged: a token and one delta page; no permissions read, no content fetched, nothing embedded
    graph.counts.clear()
    second = synced.run()
    assert set(_status(second).values()) == {"unchanged"} and second.chunks_embedded == 0
    assert dict(graph.counts) == {("POST", f"/{TENANT}/oauth2/v2.0/token", 200): 1,
                                  ("GET", f"/v1.0/drives/{DRIVE}/root/delta", 200): 1}

    # an edit: only that file's permissions and content are read
    graph.put(DriveItem("I3", "handbook.md", data=b"# Handbook\n\nThe office now opens at 08:00 on weekdays.\n"))
    graph.counts.clear()
    third = synced.run()
    assert _status(third)["I3"] == "updated" and graph.requests("/permissions") == 1 and graph.requests("/content") == 1

    # a file's sharing changes: staff loses notes.md, legal gains it; no content, no embedding
    graph.share("I4", [LEGAL])
    graph.counts.clear()
    fourth = synced.run()
    assert _status(fourth)["I4"] == "acl_updated" and fourth.chunks_embedded == 0 and graph.requests("/content") == 0
    assert not synced.sees(["staff"], "I4") and synced.sees(["legal"], "I4")

    # a folder's sharing changes: both files under it follow
    graph.share("F1", [LEGAL])
    fifth = synced.run()
    assert _status(fifth)["I1"] == "acl_updated" and _status(fifth)["I2"] == "acl_updated"
    assert not synced.sees(["finance"], "I1") and synced.sees(["legal"], "I2")

    # a deletion comes through the delta as a deleted item
    graph.delete("I1")
    sixth = synced.run()
    assert _status(sixth)["I1"] == "deleted" and synced.store.count(doc_id="docs:I1") == 0

    # an expired delta link: a full listing again, which changes nothing
    graph.oldest_valid = graph.seq + 1
    graph.counts.clear()
    seventh = synced.run()
    assert set(_status(seventh).values()) == {"unchanged"} and graph.requests("/root/delta", status=410) == 1


@pytest.mark.parametrize("path, trouble", [
    ("/v1.0/drives", Trouble(500, times=1_000)),          # Graph down
    ("/v1.0/drives", Trouble(0, times=1_000)),            # the connection cut
    (f"/{TENANT}/oauth2", Trouble(401, times=1_000)),     # the token refused
    ("/v1.0/drives/b!drive-0001/items/I2/permissions", Trouble(403, times=1_000)),   # one file's permissions denied
], ids=["500", "cut", "token-401", "permissions-403"])
def test_a_listing_that_fails_deletes_nothing_and_keeps_the_delta_link(synced, graph, path, trouble):
    synced.run()
    points, entries = synced.store.count(), synced.ledger.entries()
    state = synced.ledger.connector_state("docs")
    graph.delete("I4")  # changes the failed sync must not lose
    graph.share("I2", [LEGAL])
    graph.trouble[path] = trouble
    with pytest.raises(SourceUnavailable):
        synced.run()
    assert synced.store.count() == points and synced.ledger.entries() == entries
    assert synced.ledger.connector_state("docs") == state
    graph.trouble.clear()
    recovered = _status(synced.run())
    assert recovered["I4"] == "deleted" and recovered["I2"] == "acl_updated"


def test_throttling_is_waited_out_per_retry_after(synced, graph):
    graph.trouble["/v1.0/drives"] = Trouble(429, times=1, retry_after="1")
    started = time.monotonic()
    assert set(_status(synced.run()).values()) == {"indexed"}
    assert time.monotonic() - started >= 1.0 and graph.requests(status=429) == 1


def test_a_sharepoint_source_needs_its_secret_and_one_drive(graph, monkeypatch):
    monkeypatch.delenv("GRAPH_CLIENT_SECRET", raising=False)
    source = SourceSettings(name="docs", kind="sharepoint", sharepoint=SharePointSettings(
        tenant_id=TENANT, client_id=CLIENT, site_id="halvard.sharepoint.com,1,2"))
    with pytest.raises(SettingsError, match="GRAPH_CLIENT_SECRET"):
        build_connector(source)
    with pytest.raises(ValueError, match="exactly one of site_id or drive_id"):
        SharePointSettings(tenant_id=TENANT, client_id=CLIENT)
