"""Scale-out: the ingest flow on a local Dask cluster of 2 worker processes (prefect-dask) produces the
same index as the default in-process runner: the same point ids, payloads and ledger."""

from __future__ import annotations

import hashlib
import json

import pytest
from settings_files import write_settings

from enclave.flows import index_path, ingest, ingest_with_runner
from enclave.indexes import ChunkStore, EdgeIndex, SyncLedger
from enclave.settings import Settings, SourceSettings

pytest.importorskip("prefect_dask", reason="the dask extra (prefect-dask) is not installed")
pytestmark = pytest.mark.slow  # a local Dask cluster of two worker processes, each loading the model


def _snapshot(index: EdgeIndex) -> tuple[dict, dict]:
    points = {
        pid: hashlib.sha256(json.dumps({k: v for k, v in p.items() if k != "ingested_at"}, sort_keys=True).encode()).hexdigest()
        for pid, p in ChunkStore(index).points()
    }
    ledger = {doc_id: (e.version, e.content_hash, e.chunks, e.status, e.reason)
              for doc_id, e in SyncLedger(index).entries().items()}
    return points, ledger


def test_dask_runner_builds_the_same_index_as_the_default_runner(tmp_path, examples, embedder):
    # the flow runs from a settings file; Dask workers get the picklable ComponentSpec, never the process's
    # components, and build their own parser, chunker and embedders once
    def settings(name: str, runner: str) -> Settings:
        return Settings(
            data_dir=tmp_path / name,
            sources=[SourceSettings(name="halvard", path=examples, groups=["everyone"])],
            ingest={"batch_documents": 3, "task_runner": runner, "dask_workers": 2, "batches_in_flight": 3},
        )

    results = {}
    for name, runner in (("threads", "threads"), ("dask", "dask")):
        s = settings(name, runner)
        flow = ingest_with_runner(s)
        assert (flow is ingest) == (runner == "threads")
        [report] = flow(config_file=write_settings(s, tmp_path / name))
        index = EdgeIndex(index_path(s), embedder.dimension)
        try:
            results[name] = (report, _snapshot(index))
        finally:
            index.close()

    (threads_report, threads_index), (dask_report, dask_index) = results["threads"], results["dask"]
    assert threads_report.counts() == dask_report.counts() and threads_report.counts().get("indexed", 0) > 10
    assert dask_report.chunks_embedded == threads_report.chunks_embedded > 0
    assert dask_index[0].keys() == threads_index[0].keys()  # the same point ids
    assert dask_index[0] == threads_index[0]  # the same payloads
    assert dask_index[1] == threads_index[1]  # the same ledger
