"""Load on the chat endpoint: N concurrent streaming requests against a stand-in Ollama, and the
server's overhead (time beyond the generator's own) beside the answer pipeline called in-process.

What it measures, in ONE run (it prints figures; it asserts nothing about time):

1. **server**: a real uvicorn on 127.0.0.1 (a free port), in a thread of this process, serving
   ``enclave.server.app.create_app(settings, pipeline=pipeline)`` with authentication on (one API key, sent
   as ``Authorization: Bearer``) and no rate limit. A load client in a *subprocess* (this file with
   ``--client``: httpx.AsyncClient, connection limits above ``--concurrency``) keeps ``--concurrency``
   streaming requests in flight (closed loop: each worker sends its next request when its last one has
   ended; all start at once unless ``--ramp``) until ``--requests`` have been made, cycling through
   seven questions about examples/halvard. Default endpoint ``POST /v1/chat/completions`` with
   ``"stream": true`` (OpenAI SSE, must end with ``data: [DONE]``); ``--endpoint ask`` uses
   ``POST /v1/ask`` with ``"stream": true`` (must end with an ``answer`` event).
2. **in-process**: as many ``pipeline.stream(...)`` calls from ``--concurrency`` threads (same closed
   loop), each read to its ``Answered`` event: the same pipeline object, the same stand-in.

The generator is ``tests/standins/ollama_server.py``'s ``OllamaStandIn`` in this process, streaming its
answer (the first sentence of passage [1], 8-60 words) word by word, ``--token-seconds`` apart (default
0.05 s: 20 tokens/s a stream). Its own time per request is *measured*: a handler subclass notes when
each ``POST /api/chat`` arrived (headers read) and when its last byte was written. Its listen backlog
(socketserver's 5) is raised to 1024 so that dropped SYNs cannot set the figures. The pipeline is
``AnswerPipeline(retriever, FallbackRouter([OllamaGenerator(timeout=60), ExtractiveGenerator]))`` over
an embedded index of examples/halvard (hybrid retrieval, all-MiniLM-L6-v2), ingested first by a
subprocess (this file with ``--ingest``: an ``IngestPipeline``, plain calls, no Prefect API), so
nothing of the ingest is left in the measured process.

Per request: **total** (client sends → last byte: ``[DONE]``, ``answer`` or ``Answered``), **first
token** (→ first non-empty token), **generator** (the stand-in's time for that request) and
**overhead** = total − generator: everything that is not the model writing. **Errors** (must be
zero): a status other than 200, an ``error`` event or chunk, a stream without its end, an exception,
an answer not from the stand-in (a fallback to ``extractive``; the Ollama generator's exception is
printed). Target: server overhead p95 <= 50 ms.

Where the overhead goes: every question carries a tag ``(ref NNNNNN)`` that the client (header
``X-Bench-Ref`` too), the ASGI app (wrapped: ``_Timed``), the ``caller`` dependency (overridden by a
stamping copy of the same kind: async since 0d57ffd), the pipeline (``_TimedPipeline``), the retriever
(``_TimedRetriever``), the model's ``encode`` and the stand-in see; each stamps ``time.monotonic()``
(system-wide on Linux, so the client subprocess's stamps line up). The breakdown prints p50/p95
(mean) of each stage, in ms:

- ``client→app``: client starts the request → the ASGI app is called (connect, h11, the loop's turn);
- ``app→auth``: → ``caller`` runs (middleware, body, ``get_pipeline``/``get_settings``; before 0d57ffd
  these and ``caller`` were plain functions, each a hop through anyio's 40-thread pool);
- ``→thread``: → the pipeline starts in ``app.state.answer_executor`` (in-process: in its thread);
- ``→retrieve`` (condensing: nothing without history), ``embed wait`` (the model's process-wide lock:
  queries are embedded one at a time), ``embed`` (``encode``), ``search`` (BM25 + Qdrant Edge);
- ``→generator``: → the stand-in has the chat (prompt, route, the Ollama client's connection pool);
- ``generator``; ``tail: server``: → the server's last body message; ``tail``: → the caller has the end.

Also printed: the server event loop's lag (a 10 ms sleeper on uvicorn's loop), garbage collections
during each side's load (``gc.callbacks``), CPU ms per request (this process: server or pipeline,
and the stand-in; the client process), and the kernel's listen-overflow counter (system-wide).

Knobs to find where time goes (off by default: the default figures are Enclave as shipped):
``--retrieval-mode sparse`` (no query embedding), ``--ollama-connections N`` (the Ollama client's pool;
since 86bf040 shipped without a cap, 32 kept alive), ``--torch-threads N`` (``torch.set_num_threads``),
``--ramp S`` and ``--token-seconds`` (a load 2 cores can carry), ``--rounds R`` (alternate the sides, on
a shared machine). PROTOTYPES, bench-only code standing in for a change to Enclave to measure its gain:
``--batch-queries N`` (concurrent queries share one ``encode``: ``_BatchingEmbedder``) and
``--gc-freeze`` (``gc.freeze()`` after start-up: a full collection walks ~0.9 million loaded objects
with the GIL held: ``gc.collect(2)`` 0.9-1.2 s here, 0 ms frozen; runs caught one of 626-708 ms). A
third, ``--async-dependencies``, measured the route dependencies as ``async def``; 0d57ffd made them so.
``--torch-threads 1`` matters on a busy machine: torch's two OpenMP threads wait at a barrier whenever
another thread or process holds a core; one query alone under load average ~3.5: p50 48-57 ms, mean
100-132 ms, 115-128 ms CPU with 2 threads; 17 ms, 17-18 ms, 14-16 ms with 1.

Measured on this 2-core machine (shared with other jobs, load average 1-6: figures move by a third
between runs; "before 0d57ffd": sync route dependencies), zero errors in every run but one (3 of 800
answers, on both sides, fell back to ``extractive`` before the Ollama generator's exception was
recorded; not seen again in ~3,000 since):

- default (200 concurrent, 20 tokens/s, all at once): server overhead p50 3.9-7.9 s, p95 7.1-9.0 s;
  in-process 3.1-5.9 s, 4.9-7.1 s. 80-98 % of it, on both sides, is ``embed wait``: 25-38 ms per query
  under load, one at a time, caps throughput at 17-29 requests/s while 200 streams of ~1 s offer
  ~200/s: the stand-in streams 26-38 answers at once, the other ~170 requests wait. CPU per request
  in the serving process is ~40 ms, ~25 of them the query embedding (hybrid minus sparse), so 2 cores
  cannot carry this load whatever the server does. The server's own stages (``client→app``,
  ``app→auth``, ``→thread``) add 130-470 ms p50 in the burst before 0d57ffd (one event loop taking 200
  requests at once, and three thread hops each), 127 ms since (``app→auth`` 40 ms p50, was 57-228).
- carried load (``--token-seconds 0.5 --ramp 10``: up to ~170 streams at once, 20 new a second):
  server overhead p50 40-78 ms, p95 195-1370 ms, in-process 31-43 / 57-485 ms, the p95 again from
  ``embed wait``; with ``--torch-threads 1 --batch-queries 32 --gc-freeze`` and async dependencies:
  server 40-65 / 97-225 ms, in-process 29-34 / 64-82 ms, the server's own stages 5 ms p50, 14-20 ms
  p95. Before 86bf040 the Ollama client's pool (httpx's default, 100) made every stream beyond 100
  wait for a connection: ``→generator`` 4.8 s p50 on both sides; since, 5-10 ms.
- one at a time (``--concurrency 1 --requests 30``, quiet machine): server 29-30 / 32-58 ms, in-process
  24-29 / 26-32 ms; the server's own stages add ~6 ms; with ``--torch-threads 1`` the server meets the
  target (p95 32 ms).

Run (2-5 minutes on 2 cores; ``--data-dir`` keeps the index between runs, else a temporary folder is
used and removed)::

    .venv/bin/python bench/serve_load.py                      # 200 concurrent, 400 requests, chat
    .venv/bin/python bench/serve_load.py --endpoint ask --rounds 2
    .venv/bin/python bench/serve_load.py --concurrency 1 --requests 30
    .venv/bin/python bench/serve_load.py --token-seconds 0.5 --ramp 10 --requests 200
    .venv/bin/python bench/serve_load.py --data-dir /tmp/enclave-load --json load.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import enclave  # noqa: F401 - first: with tests/ on sys.path, tests/enclave/ would shadow it as a namespace package

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "halvard"
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))  # the stand-in Ollama (tests/standins)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TARGET_OVERHEAD_P95 = 0.050
MODEL = "llama3.1:8b"
GROUPS = ["everyone"]
API_KEY = "enc-bench-serve-load-key"
QUESTIONS = [
    "How many days of paid leave do employees earn each month?",
    "What is the minimum length for a password?",
    "What was the root cause of incident INC-2291?",
    "How long is the standard warranty on Halvard products?",
    "How accurate is the TX-220 temperature transmitter?",
    "What operating temperature range does the HX-400 pressure sensor support?",
    "Above what amount do I need an itemised receipt for an expense claim?",
]
_REF = re.compile(r"\(ref (\d+)\)")
SERVER_REFS, INPROCESS_REFS, WARMUP_REFS = 0, 100_000, 900_000


def tagged(question: str, ref: int) -> str:
    return f"{question} (ref {ref:06d})"


def ref_of(text: str) -> int | None:
    found = _REF.search(text)
    return int(found.group(1)) if found else None


# -- the stamps: ref → {stage: time.monotonic()} ---------------------------------------------------------
STAMPS: dict[int, dict[str, float]] = {}


def stamp(ref: int | None, **moments: float) -> None:
    if ref is not None:
        STAMPS.setdefault(ref, {}).update(moments)


# -- the load client (a subprocess: this file with --client, spec on stdin, results on stdout) ---------------
def client_main() -> None:
    import asyncio

    import httpx

    spec = json.load(sys.stdin)
    jobs: list[tuple[int, str]] = [tuple(job) for job in spec["jobs"]]
    chat = spec["endpoint"] == "chat"
    path = "/v1/chat/completions" if chat else "/v1/ask"
    results: list[dict[str, Any]] = []

    async def one(client: httpx.AsyncClient, ref: int, question: str) -> dict[str, Any]:
        body = ({"model": "enclave", "messages": [{"role": "user", "content": question}], "stream": True} if chat
                else {"question": question, "stream": True})
        result: dict[str, Any] = {"ref": ref, "start": time.monotonic(), "first": None, "end": None, "error": None,
                                  "generator": None, "status": None}
        ended = False
        try:
            async with client.stream("POST", path, json=body, headers={"X-Bench-Ref": str(ref)}) as response:
                result["status"] = response.status_code
                if response.status_code != 200:
                    await response.aread()
                    result["error"] = f"HTTP {response.status_code}"
                    return result
                event = "message"
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        continue
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if chat:
                        if data == "[DONE]":
                            ended = True
                            continue
                        chunk = json.loads(data)
                        if "error" in chunk:
                            result["error"] = "error chunk"
                            continue
                        delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                        if delta.get("content") and result["first"] is None:
                            result["first"] = time.monotonic()
                        if chunk.get("generator"):
                            result["generator"] = chunk["generator"]
                    else:
                        if event == "token" and result["first"] is None:
                            result["first"] = time.monotonic()
                        elif event == "error":
                            result["error"] = "error event"
                        elif event == "answer":
                            result["generator"] = json.loads(data).get("generator")
                            ended = True
                        event = "message"
        except Exception as exc:  # noqa: BLE001 - counted, reported
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["end"] = time.monotonic()
        if result["error"] is None and not ended:
            result["error"] = "stream ended without [DONE]" if chat else "stream ended without an answer event"
        return result

    async def run() -> None:
        concurrency = spec["concurrency"]
        limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
        pending = iter(jobs)
        async with httpx.AsyncClient(base_url=spec["url"], limits=limits, timeout=httpx.Timeout(spec["timeout"]),
                                     headers={"Authorization": f"Bearer {spec['key']}"}) as client:
            async def worker(number: int) -> None:
                await asyncio.sleep(spec["ramp"] * number / concurrency)
                for ref, question in pending:
                    results.append(await one(client, ref, question))

            await asyncio.gather(*(worker(n) for n in range(concurrency)))

    started = time.monotonic()
    asyncio.run(run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    json.dump({"results": results, "wall": time.monotonic() - started, "cpu": usage.ru_utime + usage.ru_stime},
              sys.stdout)


# -- the index (a subprocess: this file with --ingest DATA_DIR) ---------------------------------------------
def settings_for(data_dir: Path, ollama_url: str = "http://127.0.0.1:9"):
    from enclave.server.authentication import api_key_hash
    from enclave.settings import (
        ApiKeySettings,
        AuthSettings,
        GeneratorSettings,
        LimitSettings,
        ServerSettings,
        Settings,
        SourceSettings,
    )

    key = ApiKeySettings(principal="bench", groups=GROUPS, sha256=api_key_hash(API_KEY))
    return Settings(
        data_dir=data_dir,
        sources=[SourceSettings(name="halvard", path=EXAMPLES, groups=GROUPS)],
        generators=[GeneratorSettings(name="ollama", kind="ollama", model=MODEL, host=ollama_url, timeout=60),
                    GeneratorSettings(name="extractive", kind="extractive")],
        server=ServerSettings(auth=AuthSettings(api_keys=[key]), limits=LimitSettings(requests_per_minute=None)),
    )


def ingest_main(data_dir: Path) -> None:
    from enclave.flows import IngestPipeline, index_path
    from enclave.indexes import DenseEmbedder, EdgeIndex

    settings = settings_for(data_dir)
    embedder = DenseEmbedder()
    index = EdgeIndex(index_path(settings), embedder.dimension)
    try:
        with IngestPipeline.from_settings(settings, index=index, embedder=embedder) as pipeline:
            reports = [pipeline.run(source) for source in settings.sources]
    finally:
        index.close()
    failed = [p for r in reports for p in r.problems()]
    print(f"ingested examples/halvard: {[r.counts() for r in reports]}", flush=True)
    if any(r.counts().get("failed", 0) for r in reports):
        sys.exit(f"ingest failed: {failed}")


# -- instruments ---------------------------------------------------------------------------------------------
class _TimedRetriever:
    """The pipeline's retriever, stamping ``retrieve_start`` / ``retrieve_end`` per tagged query."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def run(self, query: str, *args, **kwargs):
        ref = ref_of(query)
        stamp(ref, retrieve_start=time.monotonic())
        try:
            return self._inner.run(query, *args, **kwargs)
        finally:
            stamp(ref, retrieve_end=time.monotonic())


def time_encode(model) -> None:
    """Stamp ``encode_start`` / ``encode_end`` around the model's ``encode`` (called under its lock)."""
    encode = model.encode

    def timed(texts, *args, **kwargs):
        refs = [ref_of(text) for text in texts] if isinstance(texts, list) else []
        started = time.monotonic()
        try:
            return encode(texts, *args, **kwargs)
        finally:
            ended = time.monotonic()
            for ref in refs:
                stamp(ref, encode_start=started, encode_end=ended)

    model.encode = timed


class _BatchingEmbedder:
    """A bench-only PROTOTYPE (``--batch-queries N``), not Enclave's code: concurrent one-query ``embed_query``
    calls share one ``encode`` of up to N queries instead of queueing for the model's lock one by one.
    Whoever holds the turn encodes everything waiting (its own query included); the rest find their
    vector ready. Shows what batching query embeddings in indexes/embedder.py would gain."""

    def __init__(self, inner, max_batch: int) -> None:
        self._inner = inner
        self._max = max_batch
        self._waiting: list[dict[str, Any]] = []
        self._mutex = threading.Lock()
        self._turn = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def embed(self, texts: list[str]):
        return self._inner.embed(texts)  # passages (the extractive generator's sentences): not batched

    def embed_query(self, texts: list[str]):
        if len(texts) != 1:
            return self._inner.embed_query(texts)
        slot: dict[str, Any] = {"text": texts[0], "done": False}
        with self._mutex:
            self._waiting.append(slot)
        while not slot["done"]:
            with self._turn:
                if slot["done"]:
                    break
                with self._mutex:
                    batch, self._waiting = self._waiting[: self._max], self._waiting[self._max:]
                vectors = self._inner.embed_query([s["text"] for s in batch])
                for s, vector in zip(batch, vectors):
                    s["vector"], s["done"] = vector, True
        return slot["vector"][None, :]


class _Timed:
    """ASGI wrapper: stamps ``app`` (the app is called) and ``server_end`` (the last body message sent)
    per request carrying ``X-Bench-Ref``, and samples the event loop's lag from the lifespan on."""

    def __init__(self, app) -> None:
        self.app = app
        self.lags: list[tuple[float, float]] = []
        self._sleeper = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan" and self._sleeper is None:
            import asyncio

            self._sleeper = asyncio.get_running_loop().create_task(self._sample())
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ref = next((int(v) for k, v in scope["headers"] if k == b"x-bench-ref"), None)
        stamp(ref, app=time.monotonic())

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                stamp(ref, server_end=time.monotonic())

        await self.app(scope, receive, timed_send)

    async def _sample(self) -> None:
        import asyncio

        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.lags.append((now, now - before - 0.01))


def timed_standin(token_seconds: float):
    """An OllamaStandIn whose chat handler stamps ``gen_start`` (request read) and ``gen_end`` (last byte)."""
    from standins.ollama_server import OllamaStandIn, _Handler

    class Handler(_Handler):
        def _read_raw(self) -> bytes:
            raw = super()._read_raw()
            self.bench_ref = ref_of(raw.decode("utf-8", "replace"))
            return raw

        def do_POST(self) -> None:
            self.bench_ref = None
            started = time.monotonic()
            super().do_POST()
            if self.path == "/api/chat":
                stamp(self.bench_ref, gen_start=started, gen_end=time.monotonic())

    class TimedOllama(OllamaStandIn):
        handler_class = Handler

    server = TimedOllama(models=[MODEL], token_seconds=token_seconds).start()
    server._server.socket.listen(1024)  # socketserver listens with a backlog of 5: bursts of connects would be dropped
    return server


#: (moment it ended, generation, seconds) of every garbage collection in this process
GC_PAUSES: list[tuple[float, int, float]] = []


def watch_gc() -> None:
    """Time every collection: a full one walks every tracked object (about 0.9 million here, with torch,
    transformers and Prefect loaded) with the GIL held, and every thread, the event loop's too, waits."""
    import gc

    began: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[:] = [time.monotonic()]
        elif began:
            now = time.monotonic()
            GC_PAUSES.append((now, info["generation"], now - began.pop()))

    gc.callbacks.append(callback)


def gc_figures(windows: list[tuple[float, float]]) -> dict[str, float]:
    pauses = [(generation, seconds) for moment, generation, seconds in GC_PAUSES
              if any(a <= moment <= b for a, b in windows)]
    full = [seconds for generation, seconds in pauses if generation == 2]
    return {"full": len(full), "full_max_s": max(full, default=0.0), "full_total_s": sum(full),
            "young_total_s": sum(seconds for generation, seconds in pauses if generation < 2)}


FAILURES: dict[int, str] = {}


def record_failures(generator) -> None:
    """Note why ``generator`` failed, per tagged question (a fallback is an error; this says why)."""
    stream = generator.stream

    def watched(request):
        try:
            yield from stream(request)
        except Exception as exc:
            ref = ref_of(request.question)
            if ref is not None:
                FAILURES[ref] = f"{type(exc).__name__}: {exc}"
            raise

    generator.stream = watched


def listen_overflows() -> int | None:
    """The kernel's TcpExt ListenOverflows counter (SYNs dropped for a full accept queue), or None."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return None


# -- the figures ---------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


#: the stamps in the order a request passes them, each with the label of the stage that ends there; a
#: request missing a stamp (no ``encode`` in sparse mode, no ``app`` in-process) folds that stage into the next
STAGES = [("app", "client→app"), ("auth", "app→auth"), ("stream", "→thread"), ("retrieve_start", "→retrieve"),
          ("encode_start", "embed wait"), ("encode_end", "embed"), ("retrieve_end", "search"),
          ("gen_start", "→generator"), ("gen_end", "generator"), ("server_end", "tail: server"), ("end", "tail")]


def stages_of(moments: dict[str, float]) -> dict[str, float]:
    spans, last = {}, moments["start"]
    for key, label in STAGES:
        if key in moments:
            spans[label] = moments[key] - last
            last = moments[key]
    return spans


def peak(spans: list[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) that overlap at any moment."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def summarise(name: str, results: list[dict[str, Any]], wall: float, cpu: dict[str, float],
              windows: list[tuple[float, float]]) -> dict[str, Any]:
    rows, errors = [], Counter()
    for r in results:
        moments = {**STAMPS.get(r["ref"], {}), **{k: r[k] for k in ("start", "first", "end") if r.get(k) is not None}}
        if r["error"] is None and r.get("generator") != "ollama":
            r["error"] = f"answered by {r.get('generator')!r}, not the stand-in: {FAILURES.get(r['ref'], '?')}"
        if r["error"] is None and not {"gen_start", "gen_end"} <= moments.keys():
            r["error"] = "the stand-in saw no chat request for it"
        if r["error"] is not None:
            errors[r["error"][:120]] += 1
            continue
        rows.append(moments)
    total = [m["end"] - m["start"] for m in rows]
    first = [m["first"] - m["start"] for m in rows if "first" in m]
    generator = [m["gen_end"] - m["gen_start"] for m in rows]
    overhead = [t - g for t, g in zip(total, generator)]
    figures = {"total": total, "first_token": first, "generator": generator, "overhead": overhead}
    per_request = [stages_of(m) for m in rows]
    breakdown = {}
    for label in dict.fromkeys(label for spans in per_request for label in spans):
        spans = [s[label] for s in per_request if label in s]
        breakdown[label] = {"p50": pct(spans, 50), "p95": pct(spans, 95), "max": max(spans, default=float("nan")),
                            "mean": sum(spans) / len(spans) if spans else float("nan"), "n": len(spans)}
    return {
        "name": name, "requests": len(results), "errors": sum(errors.values()), "error_reasons": dict(errors),
        "wall_s": wall, "requests_per_s": len(results) / wall if wall else float("nan"), "cpu_s": cpu,
        "gc": gc_figures(windows),
        "peak_in_flight": peak([(m["start"], m["end"]) for m in rows]),
        "peak_generating": peak([(m["gen_start"], m["gen_end"]) for m in rows]),
        **{key: {"p50": pct(v, 50), "p95": pct(v, 95), "max": max(v, default=float("nan"))}
           for key, v in figures.items()},
        "breakdown": breakdown,
    }


def print_report(server: dict[str, Any], inprocess: dict[str, Any], options: argparse.Namespace,
                 lags: list[float], overflows: dict[str, int | None]) -> None:
    ms = 1000.0

    def cell(block: dict[str, float], keys=("p50", "p95", "max")) -> str:
        return "/".join(f"{block[k] * ms:.0f}" for k in keys)

    print()
    print(f"{options.requests} streaming requests, {options.concurrency} concurrent, endpoint "
          f"{'/v1/chat/completions' if options.endpoint == 'chat' else '/v1/ask'}, stand-in "
          f"{options.token_seconds * ms:.0f} ms/token, retrieval {options.retrieval_mode}"
          f"{f', PROTOTYPE query batches of up to {options.batch_queries}' if options.batch_queries else ''}"
          f"{f', Ollama pool {options.ollama_connections}' if options.ollama_connections else ''}"
          f"{f', torch threads {options.torch_threads}' if options.torch_threads else ''}"
          f"{', PROTOTYPE gc.freeze()' if options.gc_freeze else ''}"
          f"{f', {options.rounds} rounds' if options.rounds > 1 else ''}"
          f"{f', ramp {options.ramp:g} s' if options.ramp else ''}, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); times in ms, p50/p95/max")
    header = (f"{'':<11}{'requests':>9}{'errors':>7}  {'total':>16}  {'first token':>16}  {'generator':>16}  "
              f"{'overhead':>16}  {'req/s':>6}  {'CPU ms/req':>18}")
    print(header)
    for side in (server, inprocess):
        cpu = side["cpu_s"]
        cpu_text = "/".join(f"{cpu[k] * ms / max(side['requests'], 1):.1f}" for k in cpu)
        print(f"{side['name']:<11}{side['requests']:>9}{side['errors']:>7}  {cell(side['total']):>16}  "
              f"{cell(side['first_token']):>16}  {cell(side['generator']):>16}  {cell(side['overhead']):>16}  "
              f"{side['requests_per_s']:>6.1f}  {cpu_text:>18}")
    print(f"{'':<11}CPU ms/req: server: this process/client process; in-process: this process")
    for side in (server, inprocess):
        for reason, count in side["error_reasons"].items():
            print(f"  {side['name']} error x{count}: {reason}")
    s, i = server["overhead"], inprocess["overhead"]
    for q in ("p50", "p95"):
        print(f"overhead {q}: server {s[q] * ms:.1f} ms, in-process {i[q] * ms:.1f} ms: "
              f"server − in-process {(s[q] - i[q]) * ms:+.1f} ms, ratio {s[q] / i[q]:.2f}x")
    met = server["overhead"]["p95"] <= TARGET_OVERHEAD_P95 and server["errors"] == 0
    print(f"target: server overhead p95 <= {TARGET_OVERHEAD_P95 * ms:.0f} ms with zero errors: "
          f"{'met' if met else 'MISSED'} ({server['overhead']['p95'] * ms:.1f} ms, {server['errors']} errors)")
    if lags:
        print(f"server event loop lag (10 ms sleeper) during the load: p50 {pct(lags, 50) * ms:.1f}, "
              f"p95 {pct(lags, 95) * ms:.1f}, max {max(lags) * ms:.1f} ms ({len(lags)} samples)")
    for side in (server, inprocess):
        print(f"{side['name']}: at most {side['peak_in_flight']} requests in flight, "
              f"{side['peak_generating']} streaming from the stand-in at once")
    for side in (server, inprocess):
        g = side["gc"]
        print(f"{side['name']}: garbage collections during the load: {g['full']} full "
              f"(max {g['full_max_s'] * ms:.0f} ms, total {g['full_total_s'] * ms:.0f} ms), "
              f"young generations {g['young_total_s'] * ms:.0f} ms in all")
    if overflows["server"] is not None:
        print(f"listen overflows (kernel SYN drops): server phase {overflows['server']}, "
              f"in-process phase {overflows['inprocess']}")
    print()
    print("breakdown, ms p50/p95 (mean) per stage; overhead = every stage but generator")
    for side in (server, inprocess):
        print(f"  {side['name']}:")
        for label, block in side["breakdown"].items():
            print(f"    {label:<16}{block['p50'] * ms:>8.1f} /{block['p95'] * ms:>8.1f}   ({block['mean'] * ms:.1f})")


# -- the run ---------------------------------------------------------------------------------------------------
def jobs_for(first_ref: int, count: int) -> list[tuple[int, str]]:
    return [(first_ref + n, tagged(QUESTIONS[n % len(QUESTIONS)], first_ref + n)) for n in range(count)]


def run_inprocess(pipeline, jobs: list[tuple[int, str]], concurrency: int, ramp: float = 0.0) -> list[dict[str, Any]]:
    """``jobs`` through ``pipeline.stream`` from ``concurrency`` threads, each taking the next job when
    its last one has ended (worker i starts ``ramp * i / concurrency`` seconds late)."""
    from enclave.flows.answer_pipeline import Answered
    from enclave.llms.fallback_router import Restart, Token

    def one(job: tuple[int, str]) -> dict[str, Any]:
        ref, question = job
        result: dict[str, Any] = {"ref": ref, "start": time.monotonic(), "first": None, "end": None,
                                  "error": None, "generator": None}
        try:
            for event in pipeline.stream(question, GROUPS, principal="bench"):
                if isinstance(event, Token) and event.text and result["first"] is None:
                    result["first"] = time.monotonic()
                elif isinstance(event, Restart):
                    result["error"] = f"restart: {event.reason}"
                elif isinstance(event, Answered):
                    result["generator"] = event.answer.generator
        except Exception as exc:  # noqa: BLE001 - counted, reported
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["end"] = time.monotonic()
        return result

    pending, lock, results = iter(jobs), threading.Lock(), []

    def worker(number: int) -> None:
        time.sleep(ramp * number / concurrency)
        while True:
            with lock:
                job = next(pending, None)
            if job is None:
                return
            results.append(one(job))

    threads = [threading.Thread(target=worker, args=(n,), name=f"inprocess-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def run_client(url: str, endpoint: str, jobs: list[tuple[int, str]], concurrency: int,
               ramp: float) -> dict[str, Any]:
    spec = {"url": url, "key": API_KEY, "endpoint": endpoint, "jobs": jobs, "concurrency": concurrency,
            "ramp": ramp, "timeout": 300}
    done = subprocess.run([sys.executable, __file__, "--client"], input=json.dumps(spec), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout)


def main(options: argparse.Namespace) -> None:
    import httpx
    import uvicorn
    from fastapi import Request

    from enclave.flows import index_path
    from enclave.flows.answer_pipeline import AnswerPipeline
    from enclave.flows.components import build_retriever
    from enclave.indexes import DenseEmbedder, EdgeIndex
    from enclave.llms import ExtractiveGenerator, FallbackRouter, OllamaGenerator
    from enclave.server.app import create_app
    from enclave.server.dependencies import caller

    work = Path(options.data_dir) if options.data_dir else Path(tempfile.mkdtemp(prefix="enclave-serve-load-"))
    work.mkdir(parents=True, exist_ok=True)
    if not options.data_dir:
        import atexit
        import shutil

        atexit.register(shutil.rmtree, work, ignore_errors=True)
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect")}
    print(f"ingesting examples/halvard into {work} (a subprocess) ...", flush=True)
    subprocess.run([sys.executable, __file__, "--ingest", str(work)], env=env, check=True)

    class _TimedPipeline(AnswerPipeline):
        """Stamps ``stream`` when the pipeline starts in its thread (the first ``next``)."""

        def stream(self, question: str, *args, **kwargs):
            stamp(ref_of(question), stream=time.monotonic())
            yield from super().stream(question, *args, **kwargs)

    if inspect.iscoroutinefunction(caller):
        async def timed_caller(request):
            """server.dependencies.caller, stamping ``auth`` when FastAPI runs it (async: on the loop)."""
            stamp(int(request.headers.get("x-bench-ref", "-1")), auth=time.monotonic())
            return await caller(request)
    else:
        def timed_caller(request):
            """The same for a plain ``caller``, which FastAPI runs in its thread pool, as it does this."""
            stamp(int(request.headers.get("x-bench-ref", "-1")), auth=time.monotonic())
            return caller(request)

    timed_caller.__annotations__ = {"request": Request}  # the real class, for FastAPI

    standin = timed_standin(options.token_seconds)
    settings = settings_for(work, standin.url)
    settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
        update={"mode": options.retrieval_mode})})
    embedder = DenseEmbedder()
    if options.torch_threads:
        import torch

        torch.set_num_threads(options.torch_threads)
    time_encode(embedder.model)
    index = EdgeIndex(index_path(settings), embedder.dimension)
    ollama = OllamaGenerator(MODEL, host=standin.url, timeout=60)
    if options.ollama_connections:
        import ollama as ollama_client

        n = options.ollama_connections
        ollama._client = ollama_client.Client(host=standin.url, timeout=httpx.Timeout(60, connect=5.0),
                                              limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
    record_failures(ollama)
    router = FallbackRouter([ollama, ExtractiveGenerator(embed=embedder.embed, embed_query=embedder.embed_query)])
    query_embedder = _BatchingEmbedder(embedder, options.batch_queries) if options.batch_queries else embedder
    pipeline = _TimedPipeline(_TimedRetriever(build_retriever(settings, query_embedder, index)), router)

    app = create_app(settings, pipeline=pipeline)
    app.dependency_overrides[caller] = timed_caller
    timed_app = _Timed(app)
    config = uvicorn.Config(timed_app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)

    try:
        # warm-up, not measured, the stand-in answering at once: every question through each path, several
        # times (the model's first calls are slow), then once all at a time (connections, threads)
        standin.token_seconds = 0.0
        warm = jobs_for(WARMUP_REFS, 4 * len(QUESTIONS))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
            for _ref, question in warm:
                response = client.post("/v1/ask", json={"question": question})
                if response.status_code != 200 or response.json().get("generator") != "ollama":
                    raise RuntimeError(f"warm-up through the server failed: {response.status_code} "
                                       f"{response.text[:300]}")
        for concurrency in (1, options.concurrency):
            warm_inprocess = run_inprocess(pipeline, jobs_for(WARMUP_REFS + 1000, max(len(warm), concurrency)),
                                           concurrency)
            if any(r["error"] or r["generator"] != "ollama" for r in warm_inprocess):
                raise RuntimeError(f"warm-up in-process failed: {[r['error'] for r in warm_inprocess]}")
        run_client(url, options.endpoint, jobs_for(WARMUP_REFS + 2000, options.concurrency), options.concurrency, 0.0)
        standin.token_seconds = options.token_seconds
        if options.gc_freeze:
            import gc

            gc.collect()
            gc.freeze()  # what the server's startup would do once the model and pipeline are loaded
        watch_gc()

        # the measured phases, in rounds: server, in-process, server, ... so that both see the same kind of load
        rounds = max(1, min(options.rounds, options.requests))
        share = [options.requests // rounds + (r < options.requests % rounds) for r in range(rounds)]
        sides = {name: {"results": [], "wall": 0.0, "cpu": Counter(), "overflows": 0, "windows": []}
                 for name in ("server", "in-process")}
        lags: list[float] = []
        for number, count in enumerate(share):
            first = sum(share[:number])
            for name in ("server", "in-process"):
                side = sides[name]
                print(f"{name}: {count} requests, {options.concurrency} concurrent"
                      f"{f' (round {number + 1} of {rounds})' if rounds > 1 else ''} ...", flush=True)
                before_overflows, before_cpu, started = listen_overflows(), time.process_time(), time.monotonic()
                if name == "server":
                    client = run_client(url, options.endpoint, jobs_for(SERVER_REFS + first, count),
                                        options.concurrency, options.ramp)
                    side["results"] += client["results"]
                    side["wall"] += client["wall"]
                    side["cpu"]["client"] += client["cpu"]
                    ended = time.monotonic()
                    lags += [lag for moment, lag in timed_app.lags if started <= moment <= ended]
                else:
                    side["results"] += run_inprocess(pipeline, jobs_for(INPROCESS_REFS + first, count),
                                                     options.concurrency, options.ramp)
                    side["wall"] += time.monotonic() - started
                side["cpu"]["this"] += time.process_time() - before_cpu
                side["windows"].append((started, time.monotonic()))
                after = listen_overflows()
                side["overflows"] = None if after is None or side["overflows"] is None else (
                    side["overflows"] + after - before_overflows)
        overflows = {"server": sides["server"]["overflows"], "inprocess": sides["in-process"]["overflows"]}
        server_side, inprocess_side = (
            summarise(name, sides[name]["results"], sides[name]["wall"],
                      {key: sides[name]["cpu"][key] for key in ("this", "client") if key in sides[name]["cpu"]},
                      sides[name]["windows"])
            for name in ("server", "in-process"))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        standin.stop()
        index.close()

    print_report(server_side, inprocess_side, options, lags, overflows)
    if options.json:
        figures = {"options": {k: v for k, v in vars(options).items()}, "cpus": os.cpu_count(),
                   "target_overhead_p95_s": TARGET_OVERHEAD_P95,
                   "target_met": server_side["overhead"]["p95"] <= TARGET_OVERHEAD_P95 and server_side["errors"] == 0,
                   "server": server_side, "inprocess": inprocess_side,
                   "server_loop_lag_s": {"p50": pct(lags, 50), "p95": pct(lags, 95), "max": max(lags, default=None)},
                   "listen_overflows": overflows}
        Path(options.json).write_text(json.dumps(figures, indent=2, default=str))
        print(f"figures written to {options.json}")


if __name__ == "__main__":
    if "--client" in sys.argv:
        client_main()
    elif "--ingest" in sys.argv:
        ingest_main(Path(sys.argv[sys.argv.index("--ingest") + 1]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--endpoint", choices=("chat", "ask"), default="chat",
                            help="chat: POST /v1/chat/completions (default); ask: POST /v1/ask; both streamed")
        parser.add_argument("--concurrency", type=int, default=200, help="requests in flight at once (default 200)")
        parser.add_argument("--requests", type=int, default=400, help="requests per side (default 400)")
        parser.add_argument("--token-seconds", type=float, default=0.05,
                            help="the stand-in's pause between streamed words (default 0.05)")
        parser.add_argument("--ollama-connections", type=int, default=None,
                            help="give the Ollama client a pool of N connections, N kept alive (default: as "
                                 "Enclave builds it)")
        parser.add_argument("--retrieval-mode", choices=("hybrid", "dense", "sparse"), default="hybrid",
                            help="retrieval.mode (default hybrid); sparse: no query embedding, to see the rest alone")
        parser.add_argument("--batch-queries", type=int, default=0,
                            help="PROTOTYPE: share one encode among up to N waiting queries (default 0: off)")
        parser.add_argument("--ramp", type=float, default=0.0,
                            help="seconds over which the workers start (default 0: all at once)")
        parser.add_argument("--gc-freeze", action="store_true",
                            help="PROTOTYPE: gc.freeze() after start-up, so full collections skip what is loaded")
        parser.add_argument("--torch-threads", type=int, default=None,
                            help="torch.set_num_threads(N) in this process (default: torch's own, one per core)")
        parser.add_argument("--rounds", type=int, default=1,
                            help="alternate the two sides in R rounds of requests/R each (on a shared machine, "
                                 "so both see the same kind of load; default 1)")
        parser.add_argument("--data-dir",
                            help="where the index is kept (default: a new temporary folder); reruns reuse it")
        parser.add_argument("--json", help="write the figures to this file")
        main(parser.parse_args())
