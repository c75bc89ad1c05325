"""``GET /readyz`` (the index answers and a generator on the route is reachable) and ``GET /metrics``
(Prometheus text, parsed back with prometheus_client's own parser)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from standins.ollama_server import OllamaStandIn

from enclave.contracts import Attempt, AttemptOutcome
from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.indexes import ChunkStore, EdgeIndex
from enclave.llms import EgressGuard
from enclave.llms.cost_table import CostTable
from enclave.llms.egress_policy import EgressPolicy
from enclave.llms.extractive_generator import ExtractiveGenerator
from enclave.llms.fallback_router import AllGeneratorsFailed, FallbackRouter
from enclave.llms.ollama_generator import OllamaGenerator
from enclave.llms.openai_generator import OpenAIGenerator
from enclave.server.app import create_app
from enclave.server.metrics import ServerMetrics, install_metrics
from enclave.server.readiness import ReadinessProbe

MODEL = "llama3.1:8b"
QUESTION = "What is the minimum length for a password?"


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    """``GET /metrics`` parsed: {(sample name, frozenset of label pairs): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def pipeline_over(halvard_pipeline, *generators, **route_options) -> AnswerPipeline:
    """The session's index and retriever with another route."""
    return AnswerPipeline(halvard_pipeline.retriever, FallbackRouter(list(generators), **route_options))


# -- /readyz ----------------------------------------------------------------------------------------------------------
def test_ready_with_extractive_while_ollama_is_down(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready" and body["index"] == "ok"
    assert list(body["generators"]) == ["ollama", "extractive"]
    assert body["generators"]["ollama"] == "unreachable: cannot connect to Ollama at http://127.0.0.1:9"
    assert body["generators"]["extractive"] == "ok"
    assert client.get("/healthz").json() == {"status": "ok"}  # unchanged


def test_ollama_alone_on_the_route_decides_readiness_and_is_asked_once_per_cache_period(halvard_settings, halvard_pipeline):
    now = [100.0]
    with OllamaStandIn(models=[MODEL]) as ollama_server:
        pipeline = pipeline_over(halvard_pipeline, OllamaGenerator(MODEL, host=ollama_server.url, timeout=5))
        with TestClient(create_app(halvard_settings, pipeline=pipeline)) as client:
            client.app.state.readiness = ReadinessProbe(timeout=1.0, cache_seconds=5.0, clock=lambda: now[0])
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            # a pipeline passed in is not followed across re-indexes: no generation to report
            assert ready.json() == {"status": "ready", "index": "ok", "generators": {"ollama": "ok"}, "generation": None,
                                    "embedder": "sentence-transformers/all-MiniLM-L6-v2"}
            assert ollama_server.calls == [("GET", "/api/tags")]

            ollama_server.fail_status = 500
            now[0] += 4.0  # within the cache period: Ollama is not asked again
            assert client.get("/readyz").status_code == 200
            assert ollama_server.calls == [("GET", "/api/tags")]

            now[0] += 2.0
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["status"] == "not ready" and down.json()["index"] == "ok"
            assert down.json()["generators"]["ollama"].startswith("unreachable: HTTP 500")
            assert len(ollama_server.calls) == 2

            ollama_server.fail_status = 0
            ollama_server.models = ["mistral"]
            now[0] += 6.0
            assert client.get("/readyz").json()["generators"]["ollama"] == (
                f"unreachable: model '{MODEL}' not found on the server")


def test_not_ready_when_the_index_fails(client, halvard_pipeline, tmp_path):
    closed = EdgeIndex(tmp_path / "closed", 8)
    closed.close()
    client.app.state.pipeline = SimpleNamespace(store=ChunkStore(closed), router=halvard_pipeline.router)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["index"].startswith("unreachable: ") and "Shard is not initialized" in body["index"]
    assert body["generators"]["extractive"] == "ok"  # the generators are still reported

    class BrokenIndex:
        def count(self):
            raise ConnectionError("qdrant at 10.0.0.7:6333 refused the connection")

    client.app.state.pipeline = SimpleNamespace(store=BrokenIndex(), router=halvard_pipeline.router)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["index"] == "unreachable: ConnectionError: qdrant at 10.0.0.7:6333 refused the connection"


def test_a_hanging_check_is_cut_at_the_timeout_and_a_raising_one_is_reported():
    release = threading.Event()

    class Hanging:
        name = "hanging"

        def reachable(self, timeout):
            release.wait(10)

    class Raising:
        name = "raising"

        def reachable(self, timeout):
            raise RuntimeError("bug")

    class Reachable:
        name = "custom"

        def reachable(self, timeout):
            return None

    index = SimpleNamespace(count=lambda: 3)
    started = time.monotonic()
    readiness = ReadinessProbe(timeout=0.2).check(index, [Hanging(), Raising(), Reachable()])
    release.set()
    assert time.monotonic() - started < 2.0
    assert readiness.generators == {"hanging": "unreachable: no answer within 0.2 s",
                                    "raising": "unreachable: RuntimeError: bug", "custom": "ok"}
    assert readiness.ready  # one reachable generator is enough


# -- /metrics ---------------------------------------------------------------------------------------------------------
def test_requests_are_counted_by_route_template_and_status(client):
    assert client.post("/v1/ask", json={"question": QUESTION}).status_code == 200
    assert client.post("/v1/ask", json={}).status_code == 422
    assert client.post("/v1/ask", json={"question": "  "}).status_code == 422
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/v1/ask").status_code == 405
    samples = scrape(client)
    assert value(samples, "enclave_http_requests_total", method="POST", route="/v1/ask", status="200") == 1
    assert value(samples, "enclave_http_requests_total", method="POST", route="/v1/ask", status="422") == 2
    assert value(samples, "enclave_http_requests_total", method="GET", route="other", status="404") == 1
    assert value(samples, "enclave_http_requests_total", method="GET", route="/v1/ask", status="405") == 1
    assert value(samples, "enclave_http_request_duration_seconds_count", method="POST", route="/v1/ask") == 3
    assert value(samples, "enclave_http_request_duration_seconds_sum", method="POST", route="/v1/ask") > 0
    assert not any("/no/such/path" in str(labels) for _, labels in samples)
    # the scrape itself is counted by the next one
    assert value(scrape(client), "enclave_http_requests_total", method="GET", route="/metrics", status="200") == 1


def test_each_app_has_its_own_metrics(client, halvard_settings, halvard_pipeline):
    client.get("/healthz")
    with TestClient(create_app(halvard_settings, pipeline=halvard_pipeline)) as other:
        assert value(scrape(other), "enclave_http_requests_total", method="GET", route="/healthz", status="200") == 0
    assert value(scrape(client), "enclave_http_requests_total", method="GET", route="/healthz", status="200") == 1


def test_an_extractive_answer_records_the_fallback_from_ollama(client, halvard_pipeline):
    answer = halvard_pipeline.ask(QUESTION, groups=["everyone"])
    assert answer.generator == "extractive"
    (ollama, extractive) = answer.attempts
    assert ollama.generator == "ollama" and ollama.error and extractive.error == ""
    # Ollama is down: refused, or (after repeated refusals in this session's shared pipeline) skipped by its breaker
    reason = str(ollama.outcome)
    assert ollama.outcome in (AttemptOutcome.FAILED, AttemptOutcome.SKIPPED)

    client.app.state.metrics.record_answer(answer)
    samples = scrape(client)
    assert value(samples, "enclave_answers_total", generator="extractive") == 1
    assert value(samples, "enclave_fallbacks_total", generator="ollama", reason=reason) == 1
    assert value(samples, "enclave_fallbacks_total", generator="extractive", reason="failed") == 0
    assert value(samples, "enclave_generator_tokens_total", generator="extractive", direction="out") == 0
    assert value(samples, "enclave_no_answer_total") == 0
    assert not any(name == "enclave_abstentions_total" for name, _ in samples)  # it answered

    refused = halvard_pipeline.ask("What was the root cause of incident INC-3107?", groups=["everyone"])
    assert not refused.answered and refused.generator == "none"
    client.app.state.metrics.record_answer(refused)
    assert value(scrape(client), "enclave_abstentions_total", generator="none") == 1


def test_an_ollama_answer_records_its_tokens_and_cost(client, halvard_pipeline):
    with OllamaStandIn(models=[MODEL]) as ollama_server:
        pipeline = pipeline_over(halvard_pipeline, OllamaGenerator(MODEL, host=ollama_server.url, timeout=10),
                                 ExtractiveGenerator(), costs=CostTable(local_hourly={"ollama": 3600.0}))
        answers = [pipeline.ask(QUESTION, groups=["everyone"]) for _ in range(2)]
    assert [a.generator for a in answers] == ["ollama", "ollama"]
    assert all(a.tokens_in > 0 and a.tokens_out > 0 and a.cost > 0 for a in answers)

    metrics = client.app.state.metrics
    for answer in answers:
        metrics.record_answer(answer)
    samples = scrape(client)
    assert value(samples, "enclave_answers_total", generator="ollama") == 2
    assert value(samples, "enclave_generator_tokens_total", generator="ollama", direction="in") == sum(
        a.tokens_in for a in answers)
    assert value(samples, "enclave_generator_tokens_total", generator="ollama", direction="out") == sum(
        a.tokens_out for a in answers)
    assert value(samples, "enclave_generator_cost_usd_total", generator="ollama") == pytest.approx(
        sum(a.cost for a in answers))
    assert not any(name == "enclave_fallbacks_total" for name, _ in samples)  # nothing fell back


def test_a_withheld_request_and_no_answer_are_recorded(client, halvard_pipeline):
    # the halvard documents are "internal"; this route lets only "public" context leave: nothing is sent
    pipeline = pipeline_over(halvard_pipeline, EgressGuard(OpenAIGenerator("gpt-4o-mini", base_url="http://127.0.0.1:9/v1"),
                                                            EgressPolicy("public")))
    with pytest.raises(AllGeneratorsFailed) as failure:
        pipeline.ask(QUESTION, groups=["everyone"])
    assert failure.value.attempts[0].error.startswith("not sent:")
    assert failure.value.attempts[0].outcome is AttemptOutcome.NOT_SENT

    metrics = client.app.state.metrics
    metrics.record_no_answer(failure.value.attempts)
    metrics.record_no_answer([Attempt("ollama", AttemptOutcome.SKIPPED, "skipped: failing, next try in 12 s"),
                              Attempt("extractive", AttemptOutcome.FAILED, "the model returned an empty answer", 0.01)])
    samples = scrape(client)
    assert value(samples, "enclave_no_answer_total") == 2
    assert value(samples, "enclave_egress_withheld_total", generator="openai") == 1
    assert value(samples, "enclave_fallbacks_total", generator="openai", reason="not_sent") == 1
    assert value(samples, "enclave_fallbacks_total", generator="ollama", reason="skipped") == 1
    assert value(samples, "enclave_fallbacks_total", generator="extractive", reason="failed") == 1


def test_first_token_seconds(client):
    metrics = client.app.state.metrics
    metrics.record_first_token(0.3)
    metrics.record_first_token(2.5)
    samples = scrape(client)
    assert value(samples, "enclave_answer_first_token_seconds_count") == 2
    assert value(samples, "enclave_answer_first_token_seconds_sum") == pytest.approx(2.8)
    assert value(samples, "enclave_answer_first_token_seconds_bucket", le="0.5") == 1


def test_middleware_times_a_stream_until_its_end_and_labels_what_routing_never_saw():
    app = FastAPI()

    @app.get("/slow/{name}")
    async def slow(name: str):
        async def pieces():
            for piece in ("a", "b", "c"):
                await asyncio.sleep(0.1)
                yield piece
        return StreamingResponse(pieces(), media_type="text/plain")

    @app.get("/boom")
    def boom():
        raise RuntimeError("unexpected")

    @app.middleware("http")
    async def limit(request, call_next):  # answers before routing, as a rate limiter does
        if request.headers.get("x-over-limit"):
            return JSONResponse({"detail": "slow down"}, status_code=429)
        return await call_next(request)

    metrics = install_metrics(app)  # after the other middleware: outside it
    assert app.state.metrics is metrics
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/slow/x").text == "abc"
        assert client.get("/slow/y", headers={"x-over-limit": "1"}).status_code == 429
        assert client.get("/boom").status_code == 500
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(metrics.exposition().decode()) for s in family.samples}
    assert value(samples, "enclave_http_requests_total", method="GET", route="/slow/{name}", status="200") == 1
    assert value(samples, "enclave_http_requests_total", method="GET", route="/slow/{name}", status="429") == 1
    assert value(samples, "enclave_http_requests_total", method="GET", route="/boom", status="500") == 1
    assert value(samples, "enclave_http_request_duration_seconds_sum", method="GET", route="/slow/{name}") >= 0.3


def test_metrics_without_install_is_404():
    from enclave.server.routers import metrics as metrics_router

    app = FastAPI()
    app.include_router(metrics_router.router)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404
    assert b"enclave_no_answer_total 0.0" in ServerMetrics().exposition()
