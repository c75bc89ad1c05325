"""Prometheus metrics of the chat endpoint: requests, latency, answers, tokens, cost, fallbacks.

``install_metrics(app)`` gives an app its own [ServerMetrics][enclave.server.metrics.ServerMetrics]
(``app.state.metrics``) and the ASGI middleware that counts and times every HTTP request;
``GET /metrics`` (server/routers/metrics.py) serves them in Prometheus' text format. The routers record
each answer with [ServerMetrics.record_answer][enclave.server.metrics.ServerMetrics.record_answer] and
each question no generator answered with
[ServerMetrics.record_no_answer][enclave.server.metrics.ServerMetrics.record_no_answer].
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enclave.contracts import Attempt, AttemptOutcome

if TYPE_CHECKING:
    from fastapi import FastAPI

    from enclave.contracts import Answer

OTHER_ROUTE = "other"
"""The ``route`` label of a request no route matches (404s of unknown paths), so scans cannot grow the series."""

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class ServerMetrics:
    """The chat endpoint's metrics, in a registry of their own (one per app, so apps and tests never share
    series).

    Usage::

        metrics = ServerMetrics()
        metrics.record_request("POST", "/v1/ask", 200, seconds=0.84)   # the middleware does this
        metrics.record_answer(pipeline.ask(question, groups))         # an enclave.contracts.Answer
        metrics.record_first_token(0.31)                              # seconds to the first streamed piece
        metrics.record_no_answer(exc.attempts)                        # on llms.AllGeneratorsFailed
        body = metrics.exposition()                                   # bytes, Prometheus text format

    Series (durations in seconds, cost in US dollars):

    - ``enclave_http_requests_total{method,route,status}``; ``route`` is the path template
      (``/v1/ask``, ``/internal/index/{operation}``), ``other`` when no route matches;
    - ``enclave_http_request_duration_seconds{method,route}``: until the response body is finished
      (a streamed answer's whole stream);
    - ``enclave_answer_first_token_seconds``: from the request to the first streamed piece of an answer;
    - ``enclave_answers_total{generator}``, ``enclave_generator_tokens_total{generator,direction}``
      (``direction`` ``in`` or ``out``, the generator's own counts), ``enclave_generator_cost_usd_total{generator}``:
      per answer, for the generator that gave it;
    - ``enclave_fallbacks_total{generator,reason}``: each generator tried before the one that answered, or
      tried in vain when none did; ``reason`` is the attempt's [AttemptOutcome][enclave.contracts.AttemptOutcome]:
      ``failed``, ``skipped`` (circuit breaker open) or ``not_sent`` (egress policy);
    - ``enclave_egress_withheld_total{generator}``: requests the egress policy kept from an external generator;
    - ``enclave_no_answer_total``: questions no generator on the route answered;
    - ``enclave_abstentions_total{generator}``: answers that said the documents do not answer (``answered:
      false``), by who decided: ``none`` for the abstention gate (no generator ran), else the generator.

    Thread-safe (the routers record from the threadpool).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("enclave_http_requests", "HTTP requests answered, by method, route template "
                                     "and status code", ["method", "route", "status"], registry=r)
        self.http_request_duration = Histogram("enclave_http_request_duration_seconds", "Time from a request to the "
                                               "end of its response body, seconds", ["method", "route"],
                                               buckets=REQUEST_BUCKETS, registry=r)
        self.first_token = Histogram("enclave_answer_first_token_seconds", "Time from a question to the first "
                                     "streamed piece of its answer, seconds", buckets=FIRST_TOKEN_BUCKETS, registry=r)
        self.generator_tokens = Counter("enclave_generator_tokens", "Tokens of answers, as each generator counts "
                                        "them; direction in (prompt) or out (answer)", ["generator", "direction"],
                                        registry=r)
        self.generator_cost = Counter("enclave_generator_cost_usd", "Cost of answers in US dollars (see "
                                      "llms.cost_table)", ["generator"], registry=r)
        self.answers = Counter("enclave_answers", "Answers, by the generator that gave them", ["generator"], registry=r)
        self.fallbacks = Counter("enclave_fallbacks", "Generators that were tried and did not answer; reason "
                                 "failed, skipped (circuit breaker open) or not_sent (egress policy)",
                                 ["generator", "reason"], registry=r)
        self.egress_withheld = Counter("enclave_egress_withheld", "Requests the egress policy kept from an "
                                       "external generator", ["generator"], registry=r)
        self.no_answer = Counter("enclave_no_answer", "Questions no generator on the route answered", registry=r)
        self.abstentions = Counter("enclave_abstentions", "Answers saying the documents do not answer the question, "
                                   "by who decided (none: the abstention gate, before any generator)", ["generator"],
                                   registry=r)

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request: ``route`` its path template (or ``other``), ``seconds`` until its body ended."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_request_duration.labels(method, route).observe(max(seconds, 0.0))

    def record_answer(self, answer: Answer | Any) -> None:
        """One answer: an [Answer][enclave.contracts.Answer] (or a [Generation][enclave.contracts.Generation],
        which has the same ``generator``, ``tokens_in``, ``tokens_out``, ``cost`` and ``attempts``)."""
        generator = answer.generator
        self.answers.labels(generator).inc()
        self.generator_tokens.labels(generator, "in").inc(max(int(answer.tokens_in or 0), 0))
        self.generator_tokens.labels(generator, "out").inc(max(int(answer.tokens_out or 0), 0))
        self.generator_cost.labels(generator).inc(max(float(answer.cost or 0.0), 0.0))
        if not getattr(answer, "answered", True):
            self.abstentions.labels(generator).inc()
        self._record_attempts(answer.attempts)

    def record_no_answer(self, attempts: Iterable[Attempt]) -> None:
        """A question no generator answered: the ``attempts`` of [AllGeneratorsFailed][enclave.llms.AllGeneratorsFailed]."""
        self.no_answer.inc()
        self._record_attempts(attempts)

    def record_first_token(self, seconds: float) -> None:
        """Seconds from a streamed question to the first piece of its answer."""
        self.first_token.observe(max(seconds, 0.0))

    def _record_attempts(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            if attempt.outcome is AttemptOutcome.ANSWERED:
                continue
            self.fallbacks.labels(attempt.generator, str(attempt.outcome)).inc()
            if attempt.outcome is AttemptOutcome.NOT_SENT:
                self.egress_withheld.labels(attempt.generator).inc()

    def exposition(self) -> bytes:
        """Every series in Prometheus' text format (serve with ``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request into a [ServerMetrics][enclave.server.metrics.ServerMetrics].

    Usage::

        app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)   # or install_metrics(app)

    The time runs until the app returns, that is until the last piece of the response body has been
    sent (a streamed answer is timed whole). The status is the one the response started with; an
    exception before any response counts as 500 and goes on up. The route label is the template of the
    route that handled the request (``scope["route"]``); for a request answered before routing (a rate
    limit, a body too large) it is the template of the first route of ``routes`` that matches it, and
    ``other`` when none does.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: list | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes if routes is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.metrics.record_request(scope["method"], self._route(scope, root_path), status,
                                        time.perf_counter() - started)

    def _route(self, scope: Scope, root_path: str) -> str:
        route = scope.get("route")
        if route is None:  # answered before routing: find the route it was meant for
            route = next((r for r in self.routes if r.matches(scope)[0] is not Match.NONE), None)
            if route is not None:
                return getattr(route, "path", None) or OTHER_ROUTE
        path = getattr(route, "path", None)
        if not path:
            return OTHER_ROUTE
        if isinstance(route, Mount):  # a mounted app that answers itself (static files)
            return path
        return scope.get("root_path", "")[len(root_path):] + path  # a route inside a mounted app gets its mount's prefix


def install_metrics(app: FastAPI, metrics: ServerMetrics | None = None) -> ServerMetrics:
    """Give ``app`` its metrics: ``app.state.metrics`` and the
    [MetricsMiddleware][enclave.server.metrics.MetricsMiddleware] (added now, so outside every middleware
    added before it). Returns the [ServerMetrics][enclave.server.metrics.ServerMetrics]. Call it before the
    app starts."""
    metrics = metrics or ServerMetrics()
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    return metrics
