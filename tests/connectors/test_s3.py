"""S3Connector against moto's S3 server (a real HTTP server on 127.0.0.1 speaking the S3 wire protocol,
started as its own process), driven through boto3, with a proxy in front that counts requests by
operation and can cut or fail them: first sync, unchanged re-sync, an edit, a permission change, a
deletion and an outage mid-listing, each through the real ingest pipeline and index."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
import yaml
from standins.fault_proxy import Fault, FaultProxy
from synced_index import SyncedIndex

from enclave.connectors import GroupMappedConnector, S3Connector
from enclave.contracts import SourceUnavailable
from enclave.flows.components import build_connector
from enclave.settings import S3Settings, Settings, SettingsError, SourceSettings, load_settings

SEES = "alpha team sensors gauges warehouse"
KEY_ID, SECRET = "AKIAENCLAVETEST", "s3cr3t-Never-Printed-9f2c"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_port():
    """moto's S3 server (``python -m moto.server``) on 127.0.0.1, for this module."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.2)
    yield port
    server.terminate()
    server.wait(10)


@pytest.fixture
def proxy(moto_port):
    with FaultProxy("127.0.0.1", moto_port) as running:
        yield running


@pytest.fixture
def bucket(proxy, request):
    """A fresh bucket with a few documents; the boto3 client a user would write with (through the proxy)."""
    client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id=KEY_ID,
                          aws_secret_access_key=SECRET)
    name = f"docs-{request.node.name.lower().replace('_', '-')[:40].strip('-')}-{time.monotonic_ns() % 100000}"
    client.create_bucket(Bucket=name)
    put = client.put_object
    put(Bucket=name, Key="kb/alpha.md", Body=b"# Alpha\n\nThe alpha team ships sensors on Tuesdays.\n",
        Metadata={"groups": "staff, engineering", "classification": "internal"})
    put(Bucket=name, Key="kb/beta.md", Body=b"# Beta\n\nThe beta lab calibrates gauges every Friday.\n")
    put(Bucket=name, Key="kb/sub/", Body=b"")  # a folder marker
    put(Bucket=name, Key="kb/sub/gamma.txt", Body=b"Gamma: the warehouse in Narvik opens at 07:00.\n",
        Metadata={"groups": "warehouse"})
    put(Bucket=name, Key="kb/broken.pdf", Body=b"%PDF-1.4 this is not really a pdf")
    put(Bucket=name, Key="elsewhere/outside.md", Body=b"# Outside the prefix\n")
    proxy.counts.clear()
    return client, name


def _settings(tmp_path, proxy, bucket_name, **s3) -> Settings:
    source = SourceSettings(name="kb", kind="s3", groups=["everyone"], s3=S3Settings(
        bucket=bucket_name, prefix="kb/", endpoint_url=proxy.url, region="us-east-1", access_key_id=KEY_ID,
        secret_access_key=SECRET, **s3))
    return Settings(data_dir=tmp_path / "data", sources=[source])


@pytest.fixture
def synced(tmp_path, proxy, bucket, embedder):
    index = SyncedIndex(_settings(tmp_path, proxy, bucket[1]), embedder, "kb", "kb:kb/", SEES)
    yield index
    index.close()


def _status(report) -> dict[str, str]:
    return {o.doc_id.removeprefix("kb:kb/"): o.status for o in report.outcomes}


def test_listing_reads_versions_and_each_objects_own_acl(proxy, bucket):
    client, name = bucket
    etag = client.head_object(Bucket=name, Key="kb/alpha.md")["ETag"].strip('"')
    proxy.counts.clear()
    connector = S3Connector("kb", name, prefix="kb/", endpoint_url=proxy.url, region="us-east-1",
                            access_key_id=KEY_ID, secret_access_key=SECRET, groups=["everyone"])
    docs = {d.doc_id: d for d in connector.list_documents()}
    assert sorted(docs) == ["kb:kb/alpha.md", "kb:kb/beta.md", "kb:kb/broken.pdf", "kb:kb/sub/gamma.txt"]
    alpha = docs["kb:kb/alpha.md"]
    assert alpha.groups == ("staff", "engineering") and alpha.classification == "internal"
    assert alpha.version == etag
    assert alpha.uri == f"s3://{name}/kb/alpha.md" and alpha.extension == ".md" and alpha.modified
    assert docs["kb:kb/beta.md"].groups == ("everyone",)  # no metadata: the source's groups
    assert docs["kb:kb/sub/gamma.txt"].groups == ("warehouse",)
    assert connector.fetch(alpha).startswith(b"# Alpha")
    assert connector.requests == {"ListObjectsV2": 1, "HeadObject": 4, "GetObject": 1}
    assert proxy.counts == {"ListObjectsV2": 1, "HeadObject": 4, "GetObject": 1}
    assert SECRET not in repr(connector)


def test_a_bucket_syncs_incrementally_with_its_permissions(synced, proxy, bucket):
    client, name = bucket

    first = synced.run()
    assert _status(first) == {"alpha.md": "indexed", "beta.md": "indexed", "sub/gamma.txt": "indexed",
                              "broken.pdf": "failed"}
    assert proxy.counts["GetObject"] == 4 and first.chunks_embedded == synced.store.count() > 0
    assert synced.sees(["staff"], "alpha.md") and not synced.sees(["everyone"], "alpha.md")
    assert synced.sees(["everyone"], "beta.md") and not synced.sees(["staff"], "sub/gamma.txt")

    # unchanged: one listing page and a HEAD per object (for the ACL); no content fetched, nothing embedded
    proxy.counts.clear()
    second = synced.run()
    assert set(_status(second).values()) == {"unchanged", "failed"} and second.chunks_embedded == 0
    assert proxy.counts == {"ListObjectsV2": 1, "HeadObject": 4}

    # an edit: a new ETag, that one object fetched and re-embedded
    client.put_object(Bucket=name, Key="kb/beta.md", Body=b"# Beta\n\nThe beta lab now calibrates on Mondays.\n")
    proxy.counts.clear()
    third = synced.run()
    assert _status(third)["beta.md"] == "updated" and proxy.counts["GetObject"] == 1
    assert "Mondays" in " ".join(h.text for h in synced.store.search(
        synced.embedder.embed(["beta lab calibrates"])[0], groups=["everyone"], limit=3))

    # a permission change (metadata replaced in place, same bytes, same ETag): the engineering group loses
    # alpha after one sync, with no fetch and no embedding
    client.copy_object(Bucket=name, Key="kb/alpha.md", CopySource={"Bucket": name, "Key": "kb/alpha.md"},
                       Metadata={"groups": "staff", "classification": "confidential"}, MetadataDirective="REPLACE")
    assert synced.sees(["engineering"], "alpha.md")
    proxy.counts.clear()
    fourth = synced.run()
    assert _status(fourth)["alpha.md"] == "acl_updated" and fourth.chunks_embedded == 0
    assert proxy.counts["GetObject"] == 0
    assert not synced.sees(["engineering"], "alpha.md") and synced.sees(["staff"], "alpha.md")
    assert {p["classification"] for _, p in synced.store.points() if p["doc_id"] == "kb:kb/alpha.md"} == \
        {"confidential"}

    # a deletion: its chunks and ledger entry go
    client.delete_object(Bucket=name, Key="kb/sub/gamma.txt")
    fifth = synced.run()
    assert _status(fifth)["sub/gamma.txt"] == "deleted"
    assert synced.store.count(doc_id="kb:kb/sub/gamma.txt") == 0 and "kb:kb/sub/gamma.txt" not in synced.ledger.entries()


@pytest.mark.parametrize("fault", [
    Fault(lambda m, p, q: "continuation-token" in q),                 # the connection cut on the second page
    Fault(lambda m, p, q: "continuation-token" in q, status=503),     # a 5xx that outlasts the retries
    Fault(lambda m, p, q: m == "HEAD" and p.endswith("gamma.txt"), status=403),   # one object's ACL denied
    Fault(lambda m, p, q: "list-type" in q, status=403),              # the listing denied outright
], ids=["cut-mid-listing", "503-mid-listing", "acl-denied", "listing-denied"])
def test_a_listing_that_fails_deletes_nothing(synced, proxy, bucket, fault):
    settings = synced.settings.model_copy(update={"sources": [synced.settings.sources[0].model_copy(
        update={"s3": synced.settings.sources[0].s3.model_copy(update={"page_size": 2, "timeout": 5})})]})
    synced.run(settings)
    points, entries = synced.store.count(), synced.ledger.entries()
    proxy.faults.append(fault)
    with pytest.raises(SourceUnavailable) as failure:
        synced.run(settings)
    assert "kb" in str(failure.value) and SECRET not in str(failure.value) and KEY_ID not in str(failure.value)
    assert synced.store.count() == points and synced.ledger.entries() == entries
    proxy.faults.clear()
    assert set(_status(synced.run(settings)).values()) == {"unchanged", "failed"}


def test_an_object_that_cannot_be_fetched_is_recorded_and_the_run_goes_on(synced, proxy):
    proxy.faults.append(Fault(lambda m, p, q: m == "GET" and p.endswith("beta.md"), status=403))
    report = synced.run()
    status = _status(report)
    assert status["beta.md"] == "failed" and status["alpha.md"] == "indexed"
    [beta] = [o for o in report.outcomes if o.doc_id == "kb:kb/beta.md"]
    assert beta.reason == "unreadable" and "access denied" in beta.detail and SECRET not in beta.detail


@pytest.mark.slow  # waits out the retries' back-off: ~7 s, kept out of the fast lane
def test_an_object_the_store_keeps_failing_is_unavailable_and_tried_again_next_sync(synced, proxy):
    proxy.faults.append(Fault(lambda m, p, q: m == "GET" and p.endswith("beta.md"), status=500))
    report = synced.run()  # the run goes on past it
    status = _status(report)
    assert status["beta.md"] == "failed" and status["alpha.md"] == "indexed"
    [beta] = [o for o in report.outcomes if o.doc_id == "kb:kb/beta.md"]
    assert beta.reason == "unavailable" and "500" in beta.detail
    proxy.faults.clear()
    again = synced.run()  # same version, but a transient failure is tried again without --retry-failed
    assert _status(again)["beta.md"] == "updated" and _status(again)["broken.pdf"] == "failed"
    assert synced.store.count(doc_id="kb:kb/beta.md") > 0


def test_tags_carry_the_acl_and_a_tag_change_is_a_permission_change(tmp_path, proxy, bucket, embedder):
    client, name = bucket
    client.put_object_tagging(Bucket=name, Key="kb/beta.md", Tagging={"TagSet": [
        {"Key": "enclave-groups", "Value": "finance"}, {"Key": "enclave-classification", "Value": "top-secret"}]})
    settings = _settings(tmp_path, proxy, name, acl_from="tags", groups_key="enclave-groups",
                         classification_key="enclave-classification")
    synced = SyncedIndex(settings, embedder, "kb", "kb:kb/", SEES)
    try:
        synced.run()
        beta = synced.ledger.entries()["kb:kb/beta.md"]
        assert beta.groups == ["finance"] and beta.classification == "restricted"  # an unknown label: fail closed
        assert synced.ledger.entries()["kb:kb/alpha.md"].groups == ["everyone"]  # no tags: the source's groups
        client.put_object_tagging(Bucket=name, Key="kb/beta.md", Tagging={"TagSet": [
            {"Key": "enclave-groups", "Value": "finance audit"}]})
        proxy.counts.clear()
        report = synced.run()
        assert _status(report)["beta.md"] == "acl_updated" and report.chunks_embedded == 0
        assert proxy.counts["GetObjectTagging"] == 4 and proxy.counts["GetObject"] == 0
        assert synced.sees(["audit"], "beta.md")
    finally:
        synced.close()


def test_group_map_renames_a_sources_groups(tmp_path, proxy, bucket):
    settings = _settings(tmp_path, proxy, bucket[1])
    source = settings.sources[0].model_copy(update={"group_map": {"engineering": "staff", "warehouse": "logistics"}})
    connector = build_connector(source)
    assert isinstance(connector, GroupMappedConnector)
    groups = {d.doc_id: d.groups for d in connector.list_documents()}
    assert groups["kb:kb/alpha.md"] == ("staff",) and groups["kb:kb/sub/gamma.txt"] == ("logistics",)


def test_settings_of_an_s3_source(tmp_path):
    with pytest.raises(SettingsError, match="s3 block"):
        load_settings(_yaml(tmp_path, {"sources": [{"name": "kb", "kind": "s3"}]}))
    with pytest.raises(SettingsError, match="acl_from"):
        load_settings(_yaml(tmp_path, {"sources": [{"name": "kb", "kind": "s3",
                                                     "s3": {"bucket": "docs", "acl_from": "owner"}}]}))
    settings = load_settings(_yaml(tmp_path, {"sources": [{"name": "kb", "kind": "s3", "s3": {
        "bucket": "docs", "secret_access_key": SECRET, "access_key_id": KEY_ID}}]}))
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()
    with pytest.raises(ValueError, match="kb"):  # a file would hold the keys in clear
        settings.write_yaml(tmp_path / "out.yaml")


@pytest.mark.slow
def test_the_cli_syncs_an_s3_source_and_never_prints_its_credentials(tmp_path, proxy, bucket):
    config = _yaml(tmp_path, {"data_dir": str(tmp_path / "data"), "sources": [{
        "name": "kb", "kind": "s3", "groups": ["everyone"], "s3": {
            "bucket": bucket[1], "prefix": "kb/", "endpoint_url": proxy.url, "region": "us-east-1",
            "access_key_id": KEY_ID, "secret_access_key": SECRET, "timeout": 5}}]})

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "enclave.cli", *args, "--config", config], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    first = cli("ingest", "--source", "kb")
    assert first.returncode == 1, first.stderr  # broken.pdf fails; the rest is indexed
    assert "3 indexed" in first.stdout and "1 failed" in first.stdout
    proxy.faults.append(Fault(lambda m, p, q: "list-type" in q, status=403))
    denied = cli("ingest", "--source", "kb")
    last = denied.stderr.strip().splitlines()[-1]  # the task's retries are logged by Prefect above it
    assert denied.returncode == 1 and "nothing of it was deleted" in last and "InjectedFault (HTTP 403)" in last
    status = cli("status")
    for run in (first, denied, status):
        assert SECRET not in run.stdout + run.stderr and KEY_ID not in run.stdout + run.stderr


def _yaml(folder, data) -> str:
    path = folder / "enclave.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)
