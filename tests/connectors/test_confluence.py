"""ConfluenceConnector against a stand-in that speaks Confluence's v1 REST shapes on 127.0.0.1
(tests/standins/confluence_server.py): space permissions narrowed by page restrictions inherited from
ancestors, pages and attachments, paging, then first sync, unchanged re-sync, an edit, a restriction
change, a deletion, throttling and an outage mid-listing through the real ingest pipeline and index."""

from __future__ import annotations

import time

import pytest
from standins.confluence_server import Attachment, Confluence, WikiPage, serve
from standins.web_site import Trouble
from synced_index import SyncedIndex

from enclave.connectors import ConfluenceConnector
from enclave.contracts import SourceUnavailable
from enclave.flows.components import build_connector
from enclave.settings import ConfluenceSettings, Settings, SettingsError, SourceSettings

USER, TOKEN = "bot@halvard.example", "atlassian-Token-Never-Shown-31"


@pytest.fixture
def wiki(examples):
    wiki = Confluence(USER, TOKEN, spaces={"ENG": ["confluence-users"], "HR": ["hr-team"]})
    wiki.put(WikiPage("100", "ENG", "Engineering home", "<p>Engineering builds the HX sensor family.</p>"))
    wiki.put(WikiPage("101", "ENG", "Release process", "<p>Releases ship on the first Tuesday of a month.</p>",
                      ancestors=["100"], attachments=[Attachment("att9", "travel-policy.pdf",
                                                                 (examples / "travel-policy.pdf").read_bytes())]))
    wiki.put(WikiPage("102", "ENG", "Security", "<p>Only the security team reads the incident playbook.</p>",
                      ancestors=["100"], read_groups=["security", "engineering-leads"]))
    wiki.put(WikiPage("103", "ENG", "Incident playbook", "<p>Rotate the TLS certificate before it expires.</p>",
                      ancestors=["100", "102"], read_groups=["security", "sre"], read_users=["5b10ac8d82e05b22cc7d4ef5"]))
    wiki.put(WikiPage("200", "HR", "Leave", "<p>Employees earn 2.25 days of paid leave per month.</p>"))
    server, _ = serve(wiki)
    yield wiki
    server.shutdown()
    server.server_close()


def _connector(wiki, **options) -> ConfluenceConnector:
    return ConfluenceConnector("wiki", f"{wiki.url}/wiki", ["ENG", "HR"], token=TOKEN, username=USER, **options)


def test_readers_are_the_spaces_narrowed_by_inherited_restrictions(wiki):
    connector = _connector(wiki, page_size=2)
    docs = {d.doc_id: d for d in connector.list_documents()}
    assert sorted(docs) == ["wiki:attachment:att9", "wiki:page:100", "wiki:page:101", "wiki:page:102",
                            "wiki:page:103", "wiki:page:200"]
    assert docs["wiki:page:100"].groups == ("confluence-users",)
    assert docs["wiki:page:101"].groups == ("confluence-users",)  # no restriction: the space's readers
    assert docs["wiki:page:102"].groups == ("engineering-leads", "security")
    assert docs["wiki:page:103"].groups == ("security",)  # its own restriction and its parent's: both apply
    assert docs["wiki:page:200"].groups == ("hr-team",)
    assert docs["wiki:attachment:att9"].groups == ("confluence-users",) and docs["wiki:attachment:att9"].extension == ".pdf"
    assert docs["wiki:page:101"].version == "1" and docs["wiki:page:101"].uri == f"{wiki.url}/wiki/spaces/ENG/pages/101"
    assert wiki.requests("/rest/api/content", 200) >= 3  # paged by 2: ENG's 4 pages take two requests, plus HR
    body = connector.fetch(docs["wiki:page:101"])
    assert b"<title>Release process</title>" in body and b"first Tuesday" in body
    assert connector.fetch(docs["wiki:attachment:att9"]).startswith(b"%PDF")
    assert TOKEN not in repr(connector)


def test_attachments_beyond_the_expanded_ones_are_listed_on_their_own(wiki):
    wiki.put(WikiPage("104", "ENG", "Datasheets", "<p>All datasheets.</p>", attachments=[
        Attachment(f"att{n}", f"sheet-{n}.pdf", b"%PDF-1.4 sheet") for n in range(3)]))
    docs = [d.doc_id for d in _connector(wiki).list_documents()]
    assert {f"wiki:attachment:att{n}" for n in range(3)} <= set(docs) and docs.count("wiki:attachment:att0") == 1
    assert wiki.counts[("/wiki/rest/api/content/104/child/attachment", 200)] == 1
    assert wiki.requests("/wiki/rest/api/content/101/child") == 0  # one attachment: it came with its page


def test_a_wrong_token_fails_the_listing_without_showing_it(wiki):
    connector = ConfluenceConnector("wiki", f"{wiki.url}/wiki", ["ENG"], token="wrong-" + TOKEN, username=USER)
    with pytest.raises(SourceUnavailable, match="401") as failure:
        list(connector.list_documents())
    assert TOKEN not in str(failure.value)


@pytest.fixture
def synced(tmp_path, wiki, embedder, monkeypatch):
    monkeypatch.setenv("WIKI_TOKEN", TOKEN)
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(
        name="wiki", kind="confluence", group_map={"confluence-users": "staff"},
        confluence=ConfluenceSettings(base_url=f"{wiki.url}/wiki", spaces=["ENG", "HR"], username=USER,
                                      token_env="WIKI_TOKEN", page_size=2, timeout=5, retry_budget=10))])
    index = SyncedIndex(settings, embedder, "wiki", "wiki:page:", "TLS certificate incident playbook")
    yield index
    index.close()


def _status(report) -> dict[str, str]:
    return {o.doc_id.removeprefix("wiki:"): o.status for o in report.outcomes}


def test_spaces_sync_incrementally_with_their_permissions(synced, wiki):
    first = synced.run()
    assert set(_status(first).values()) == {"indexed"} and len(first.outcomes) == 6
    assert synced.sees(["sre"], "103") is False and synced.sees(["security"], "103")
    assert synced.sees(["staff"], "101") and not synced.sees(["confluence-users"], "101")  # group_map applied

    # unchanged: the listing only (each space and its pages, attachments expanded in them); nothing
    # fetched, nothing embedded
    wiki.counts.clear()
    second = synced.run()
    assert set(_status(second).values()) == {"unchanged"} and second.chunks_embedded == 0
    assert {path for path, _ in wiki.counts} == {"/wiki/rest/api/space/ENG", "/wiki/rest/api/space/HR",
                                                 "/wiki/rest/api/content"}
    assert wiki.requests("/wiki/rest/api/content") == 3  # ENG: 4 pages, 2 a request; HR: 1

    # an edit: a new version number, that page's body fetched
    wiki.put(WikiPage("101", "ENG", "Release process", "<p>Releases now ship every second Wednesday.</p>",
                      ancestors=["100"], attachments=wiki.pages["101"].attachments))
    wiki.counts.clear()
    third = synced.run()
    assert _status(third)["page:101"] == "updated" and wiki.counts[("/wiki/rest/api/content/101", 200)] == 1

    # the parent's restriction is lifted: the child keeps only its own; the sre group now reads 103
    wiki.pages["102"].read_groups = []
    fourth = synced.run()
    assert _status(fourth)["page:103"] == "acl_updated" and _status(fourth)["page:102"] == "acl_updated"
    assert fourth.chunks_embedded == 0 and synced.sees(["sre"], "103")
    # and a reader removed from a page stops seeing it after one sync
    wiki.pages["103"].read_groups = ["security"]
    synced.run()
    assert not synced.sees(["sre"], "103") and synced.sees(["security"], "103")

    # a deletion
    del wiki.pages["200"]
    assert _status(synced.run())["page:200"] == "deleted"
    assert synced.store.count(doc_id="wiki:page:200") == 0


@pytest.mark.parametrize("path, trouble", [
    ("/wiki/rest/api/content", Trouble(500)),                       # the listing's pages fail
    ("/wiki/rest/api/content", Trouble(0)),                         # the connection cut mid-listing
    ("/wiki/rest/api/space/HR", Trouble(403)),                      # a space's permissions denied
    ("/wiki/rest/api/content?spaceKey=ENG&type=page&limit=2&start=2", Trouble(502)),   # the second page of ENG
], ids=["500", "cut", "403", "502-second-page"])
def test_a_listing_that_fails_deletes_nothing(synced, wiki, path, trouble):
    synced.run()
    points, entries = synced.store.count(), synced.ledger.entries()
    wiki.trouble[path] = trouble
    with pytest.raises(SourceUnavailable):
        synced.run()
    assert synced.store.count() == points and synced.ledger.entries() == entries
    wiki.trouble.clear()
    assert set(_status(synced.run()).values()) == {"unchanged"}


def test_throttling_is_waited_out_per_retry_after(synced, wiki):
    wiki.trouble["/wiki/rest/api/space/ENG"] = Trouble(429, times=1, retry_after="1")
    started = time.monotonic()
    assert set(_status(synced.run()).values()) == {"indexed"}
    assert time.monotonic() - started >= 1.0 and wiki.requests("/space/ENG", 429) == 1


def test_a_confluence_source_needs_its_token(tmp_path, wiki, monkeypatch):
    monkeypatch.delenv("CONFLUENCE_TOKEN", raising=False)
    source = SourceSettings(name="wiki", kind="confluence",
                            confluence=ConfluenceSettings(base_url=f"{wiki.url}/wiki", spaces=["ENG"]))
    with pytest.raises(SettingsError, match="CONFLUENCE_TOKEN"):
        build_connector(source)
    with pytest.raises(ValueError, match="confluence block"):
        SourceSettings(name="wiki", kind="confluence")
