"""What a sync of a remote source costs: first sync, unchanged re-sync and a permission-change sync.

    .venv/bin/python bench/connector_sync.py --objects 300 --changed 30

For the S3 connector against moto's S3 server (started here on 127.0.0.1, as the tests do), through
Enclave's ``IngestPipeline`` into an embedded Qdrant Edge index in a temporary folder. It prints, per
sync, the wall time, the S3 requests the connector made by operation (boto3's own calls, counted by
the connector) and the chunks embedded, and the ratios of the re-syncs to the first sync. It asserts
nothing about time. Each object is a short Markdown note (one chunk) with its groups in its
metadata; the permission change replaces the metadata of ``--changed`` objects in place (same bytes,
same ETag) with other groups.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--changed", type=int, default=30, help="objects whose groups change")
    args = parser.parse_args()

    import boto3

    from enclave.connectors import S3Connector
    from enclave.flows import IngestPipeline
    from enclave.indexes import EdgeIndex
    from enclave.indexes.embedder import DenseEmbedder
    from enclave.settings import Settings

    server, url = start_moto()
    try:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                              aws_secret_access_key="bench")
        client.create_bucket(Bucket="bench")
        for i in range(args.objects):
            client.put_object(Bucket="bench", Key=f"notes/note-{i:05d}.md", Metadata={"groups": "staff"},
                              Body=f"# Note {i}\n\nNote {i} says the sensor batch {i * 7} shipped on day {i % 28}.\n"
                              .encode())
        embedder = DenseEmbedder()
        _ = embedder.model
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp) / "data")
            index = EdgeIndex(Path(tmp) / "index", embedder.dimension)
            rows = []
            with IngestPipeline.from_settings(settings, index=index, embedder=embedder) as pipeline:
                def sync(label: str) -> None:
                    connector = S3Connector("notes", "bench", prefix="notes/", endpoint_url=url, region="us-east-1",
                                            access_key_id="bench", secret_access_key="bench")
                    started = time.perf_counter()
                    report = pipeline.run(connector)
                    rows.append((label, time.perf_counter() - started, dict(connector.requests),
                                 report.chunks_embedded, report.counts()))

                sync("first sync")
                sync("unchanged re-sync")
                for i in range(args.changed):
                    key = f"notes/note-{i:05d}.md"
                    client.copy_object(Bucket="bench", Key=key, CopySource={"Bucket": "bench", "Key": key},
                                       Metadata={"groups": "finance"}, MetadataDirective="REPLACE")
                sync(f"permission change ({args.changed} objects)")
            index.close()
    finally:
        server.terminate()
        server.wait(10)

    first = rows[0][1]
    print(f"S3 connector, {args.objects} objects, moto's S3 server on 127.0.0.1")
    print(f"{'sync':<34} {'seconds':>8} {'÷ first':>8} {'chunks embedded':>16}  requests / outcomes")
    for label, seconds, requests, chunks, counts in rows:
        print(f"{label:<34} {seconds:8.2f} {seconds / first:8.3f} {chunks:16d}  {requests}  {counts}")


if __name__ == "__main__":
    main()
