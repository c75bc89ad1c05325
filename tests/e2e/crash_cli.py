"""Run the real ``enclave`` CLI, and SIGKILL it at a chosen point of its work.

Usage (what tests/e2e/test_crash_safety.py does)::

    ENCLAVE_CRASH_AT="enclave.indexes.chunk_store:ChunkStore.upsert:after:1" \
        python tests/e2e/crash_cli.py ingest --config enclave.yaml

``ENCLAVE_CRASH_AT`` is ``module:Class.method:when:n``: on the n-th call of that method the process
kills itself with SIGKILL (no cleanup, no flush, as the kernel's OOM killer or a power cut would)
``before`` the call, ``after`` it returns, or, for ``ChunkStore.upsert``, ``partial``: after writing
the first half of the batch's chunks. Without the variable the CLI runs untouched.

``ENCLAVE_TEST_QDRANT_PATH``: with ``index.backend: server``, qdrant-client's local mode on this folder
stands in for the Qdrant server (it mirrors the server API and persists across processes).
"""

from __future__ import annotations

import importlib
import itertools
import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(spec: str) -> None:
    module_name, attr, when, nth = spec.split(":")
    class_name, method = attr.split(".")
    target = getattr(importlib.import_module(module_name), class_name)
    calls = itertools.count(1)
    original = vars(target)[method]

    def wrapper(self, *args, **kwargs):
        if next(calls) != int(nth):
            return original(self, *args, **kwargs)
        if when == "before":
            _die()
        if when == "partial":  # ChunkStore.upsert(chunks, vectors, sparse): half the batch, then the crash
            chunks, vectors, sparse = args
            half = max(len(chunks) // 2, 1)
            original(self, chunks[:half], vectors[:half], sparse[:half] if sparse is not None else None)
            _die()
        result = original(self, *args, **kwargs)
        _die()
        return result

    setattr(target, method, wrapper)


def _local_qdrant(path: str) -> None:
    import qdrant_client

    real = qdrant_client.QdrantClient

    class LocalStandIn(real):
        def __init__(self, *args, **kwargs):
            super().__init__(path=path)

    qdrant_client.QdrantClient = LocalStandIn


if __name__ == "__main__":
    if os.environ.get("ENCLAVE_TEST_QDRANT_PATH"):
        _local_qdrant(os.environ["ENCLAVE_TEST_QDRANT_PATH"])
    if os.environ.get("ENCLAVE_CRASH_AT"):
        _arm(os.environ["ENCLAVE_CRASH_AT"])
    from enclave.cli import app

    sys.argv[0] = "enclave"
    app()
