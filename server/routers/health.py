"""``GET /healthz``: the process is up. ``GET /readyz``: it can answer now (the index answers and a
generator on the route is reachable)."""

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from enclave.server.readiness import Readiness, ReadinessProbe

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str = "ok"


class ReadinessBody(BaseModel):
    status: str
    index: str
    generators: dict[str, str]
    generation: str | None = None
    embedder: str | None = None


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=ReadinessBody, responses={503: {"model": ReadinessBody}})
def readyz(request: Request, response: Response) -> ReadinessBody:
    """200 when ready, else 503, both with ``{"status": "ready" | "not ready", "index": "ok" |
    "unreachable: ...", "generators": {name: "ok" | "unreachable: ..."}, "generation": the index
    generation answers come from (``enclave reindex`` moves it), "embedder": the model queries are
    embedded with}``. Generators' results are cached a few seconds
    (enclave.server.readiness.ReadinessProbe); the index is touched every time."""
    state = request.app.state
    probe = getattr(state, "readiness", None)
    if probe is None:
        probe = state.readiness = ReadinessProbe()
    pipeline = getattr(state, "pipeline", None)
    if pipeline is None:
        readiness = Readiness(index="unreachable: the answer pipeline is not loaded")
    else:
        readiness = probe.check(pipeline.store, pipeline.router.generators)
    if not readiness.ready:
        response.status_code = 503
    embedder = getattr(getattr(pipeline, "retriever", None), "embedder", None)
    return ReadinessBody(**readiness.as_json(), generation=getattr(state, "index_generation", None),
                         embedder=getattr(embedder, "model_name", None))
