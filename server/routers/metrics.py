"""``GET /metrics``: the app's Prometheus metrics (server/metrics.py), in the text exposition format."""

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Every series of ``app.state.metrics`` (set by ``enclave.server.metrics.install_metrics``); 404 without it."""
    server_metrics = getattr(request.app.state, "metrics", None)
    if server_metrics is None:
        raise HTTPException(status_code=404, detail="this app has no metrics (enclave.server.metrics.install_metrics)")
    return Response(server_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
