"""WebConnector against a real HTTP server on 127.0.0.1 (tests/standins/web_site.py): crawl, robots.txt,
sitemap, redirects, a PDF, conditional GETs on re-sync, an edit, a deletion, throttling with Retry-After
and an outage mid-crawl, through the real ingest pipeline and index."""

from __future__ import annotations

import time

import pytest
from standins.web_site import Page, Trouble, WebSite, serve
from synced_index import SyncedIndex

from enclave.connectors import WebConnector
from enclave.contracts import SourceUnavailable
from enclave.settings import Settings, SettingsError, SourceSettings, WebSettings, load_settings


@pytest.fixture
def site(examples):
    site = WebSite()
    site.pages["/robots.txt"] = Page(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    site.html("/", "Intranet", "Welcome to the Halvard intranet.",
              ["/about.html", "/news/changing.html", "/old.html", "/missing.html", "/private/salaries.html",
               "/policies/travel-policy.pdf", "/logo.png", "mailto:it@halvard.example", "http://localhost:9/external.html",
               "/calendar/2024.html"])
    site.html("/about.html", "About", "Halvard Instruments makes pressure sensors in Trondheim.", ["/"])
    site.html("/news/changing.html", "News", "The canteen serves fish soup on Thursdays.")
    site.html("/new.html", "Moved page", "The help desk moved to building C.")
    site.redirects["/old.html"] = "/new.html"
    site.html("/private/salaries.html", "Salaries", "Never to be crawled.")
    site.html("/calendar/2024.html", "Calendar", "Excluded by a pattern.")
    site.html("/orphan.html", "Orphan", "Only the sitemap links to the quality manual page.")
    site.pages["/logo.png"] = Page(b"\x89PNG not a document", content_type="image/png")
    site.pages["/policies/travel-policy.pdf"] = Page((examples / "travel-policy.pdf").read_bytes(),
                                                     content_type="application/pdf")
    server, _ = serve(site)
    site.pages["/sitemap.xml"] = Page(
        f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f'<url><loc>{site.url}/orphan.html</loc></url><url><loc>{site.url}/about.html</loc></url></urlset>'.encode(),
        content_type="application/xml")
    yield site
    server.shutdown()
    server.server_close()


def _settings(tmp_path, site, **web) -> Settings:
    return Settings(data_dir=tmp_path / "data", sources=[SourceSettings(
        name="intranet", kind="web", groups=["staff"], exclude=["*/calendar/*"],
        web=WebSettings(start_urls=[f"{site.url}/"], timeout=5, **web))])


@pytest.fixture
def synced(tmp_path, site, embedder):
    index = SyncedIndex(_settings(tmp_path, site, retry_budget=10), embedder, "intranet")
    yield index
    index.close()


def _status(report, site) -> dict[str, str]:
    return {o.doc_id.removeprefix(f"intranet:{site.url}"): o.status for o in report.outcomes}


def test_the_crawl_follows_links_sitemap_and_redirects_and_obeys_robots(site):
    connector = WebConnector("intranet", [f"{site.url}/"], exclude=["*/calendar/*"], groups=["staff"])
    docs = {d.uri.removeprefix(site.url): d for d in connector.list_documents()}
    assert sorted(docs) == ["/", "/about.html", "/new.html", "/news/changing.html", "/orphan.html",
                            "/policies/travel-policy.pdf"]
    assert site.served(status=200) and ("GET", "/private/salaries.html", 200) not in site.counts
    assert ("GET", "/calendar/2024.html", 200) not in site.counts  # excluded: never asked for
    assert docs["/policies/travel-policy.pdf"].extension == ".pdf" and docs["/about.html"].extension == ".html"
    assert docs["/about.html"].version == site.pages["/about.html"].etag and docs["/"].groups == ("staff",)
    # the PDF was only HEADed while crawling; its bytes come with fetch
    assert ("HEAD", "/policies/travel-policy.pdf", 200) in site.counts
    assert ("GET", "/policies/travel-policy.pdf", 200) not in site.counts
    assert connector.fetch(docs["/policies/travel-policy.pdf"]).startswith(b"%PDF")
    assert b"fish soup" in connector.fetch(docs["/news/changing.html"])  # kept from the crawl: no second GET
    assert site.counts[("GET", "/news/changing.html", 200)] == 1


def test_a_site_syncs_incrementally_with_conditional_gets(synced, site):
    first = synced.run()
    assert _status(first, site) == {"/": "indexed", "/about.html": "indexed", "/new.html": "indexed",
                                    "/news/changing.html": "indexed", "/orphan.html": "indexed",
                                    "/policies/travel-policy.pdf": "indexed"}
    assert first.chunks_embedded > 6

    # unchanged: every page answers 304, the PDF one HEAD; nothing fetched, nothing embedded
    site.counts.clear()
    second = synced.run()
    assert set(_status(second, site).values()) == {"unchanged"} and second.chunks_embedded == 0
    pages = {path: status for (method, path, status) in site.counts if method == "GET" and path.endswith((".html", "/"))
             and path in site.pages}
    assert pages == dict.fromkeys(["/", "/about.html", "/new.html", "/news/changing.html", "/orphan.html"], 304)
    assert site.counts[("GET", "/robots.txt", 200)] == 1 and site.counts[("GET", "/sitemap.xml", 200)] == 1
    assert site.counts[("GET", "/old.html", 301)] == 1 and site.counts[("GET", "/missing.html", 404)] == 1
    assert not any(path == "/logo.png" for _, path, _ in site.counts)  # an image: never asked for
    assert site.counts[("HEAD", "/policies/travel-policy.pdf", 200)] == 1
    assert ("GET", "/policies/travel-policy.pdf", 200) not in site.counts

    # an edit: one 200, that page re-embedded
    site.html("/news/changing.html", "News", "The canteen now serves reindeer stew on Thursdays.")
    site.counts.clear()
    third = synced.run()
    assert _status(third, site)["/news/changing.html"] == "updated"
    assert site.counts[("GET", "/news/changing.html", 200)] == 1
    assert "reindeer" in " ".join(h.text for h in synced.store.search(
        synced.embedder.embed(["canteen Thursdays"])[0], groups=["staff"], limit=3))

    # the source's readers change (a site's pages carry the source's groups): every page's ACL is rewritten
    # from 304s alone, nothing embedded; staff no longer sees the site
    synced.settings = synced.settings.model_copy(update={"sources": [synced.settings.sources[0].model_copy(
        update={"groups": ["board"]})]})
    site.counts.clear()
    moved = synced.run()
    assert set(_status(moved, site).values()) == {"acl_updated"} and moved.chunks_embedded == 0
    assert site.served("GET", 200) == 2  # robots.txt and sitemap.xml; the PDF: one HEAD
    assert synced.store.search(synced.embedder.embed(["canteen Thursdays"])[0], groups=["staff"], limit=3) == []

    # a page removed from the site (404) and from the sitemap: deleted
    del site.pages["/orphan.html"]
    site.pages["/sitemap.xml"] = Page(b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                      b"</urlset>", content_type="application/xml")
    fourth = synced.run()
    assert _status(fourth, site)["/orphan.html"] == "deleted"
    assert synced.store.count(doc_id=f"intranet:{site.url}/orphan.html") == 0


@pytest.mark.parametrize("trouble", [Trouble(500), Trouble(0), Trouble(403)], ids=["500", "cut", "403"])
def test_a_crawl_that_fails_deletes_nothing(synced, site, trouble):
    synced.run()
    points, entries = synced.store.count(), synced.ledger.entries()
    site.trouble["/about.html"] = trouble
    with pytest.raises(SourceUnavailable, match="about.html"):
        synced.run()
    assert synced.store.count() == points and synced.ledger.entries() == entries
    site.trouble.clear()
    assert set(_status(synced.run(), site).values()) == {"unchanged"}


def test_throttling_is_waited_out_per_retry_after_within_the_budget(synced, site):
    site.trouble["/about.html"] = Trouble(429, times=1, retry_after="1")
    started = time.monotonic()
    report = synced.run()
    assert _status(report, site)["/about.html"] == "indexed" and time.monotonic() - started >= 1.0
    assert site.counts[("GET", "/about.html", 429)] == 1

    site.trouble["/about.html"] = Trouble(503, retry_after="30")  # longer than the 10 s budget: no waiting
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="retry budget"):
        synced.run()
    assert time.monotonic() - started < 10


def test_the_connectors_state_lives_in_the_ledger(synced, site):
    synced.run()
    state = synced.ledger.connector_state("intranet")
    assert f"{site.url}/about.html" in state["seen"]
    entries = synced.ledger.entries()
    assert len(entries) == 6 and all(e.doc_id.startswith(f"intranet:{site.url}/") for e in entries.values())
    [summary] = synced.ledger.summary(["intranet"])
    assert summary.documents == 6  # the state point is not a document


def test_settings_of_a_web_source(tmp_path, site):
    path = tmp_path / "enclave.yaml"
    path.write_text("sources:\n  - {name: intranet, kind: web}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="web block"):
        load_settings(path)
    path.write_text(f"sources:\n  - name: intranet\n    kind: web\n    web: {{start_urls: ['{site.url}/'], max_pages: 2}}\n",
                    encoding="utf-8")
    from enclave.flows.components import build_connector

    connector = build_connector(load_settings(path).sources[0])
    assert len(list(connector.list_documents())) == 2
