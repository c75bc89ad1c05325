"""The web chat page: ``GET /`` serves ``server/static/index.html``, ``GET /static/{name}`` its script and
style. Plain files, no build step; the page talks to ``POST /v1/ask`` (see server/static/chat.js)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[1] / "static"

# The page loads nothing from anywhere else and sends nothing anywhere but this server.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False, tags=["page"])


def _served() -> dict[str, Path]:
    """The files under ``server/static``, by name: only these are served (no paths, no traversal)."""
    return {path.name: path for path in STATIC.iterdir() if path.is_file()} if STATIC.is_dir() else {}


@router.get("/")
def page() -> FileResponse:
    """The chat page (``text/html``)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """One file of ``server/static`` by its name; 404 for anything else."""
    path = _served().get(name)
    if path is None:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(path, headers=_HEADERS)
