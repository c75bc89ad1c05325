"""``GET /v1/models``: the routes an OpenAI client may name as its model.

``enclave`` is the configured route (every generator, in order, each under its egress policy);
``enclave/<generator>`` is that generator alone. Listing needs the same credentials as asking.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from enclave.server.authentication import Principal
from enclave.server.dependencies import caller, get_settings
from enclave.settings import Settings

router = APIRouter(prefix="/v1", tags=["openai"])

#: The model name of the whole configured route, as OpenAI clients see it.
ROUTE_MODEL = "enclave"


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "enclave"
    generators: list[str] = Field(description="Enclave extension: the generators this route tries, in order.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def route_generators(settings: Settings, model: str) -> list[str] | None:
    """The generators the model name ``model`` selects: None for the whole route, ``[name]`` for
    ``enclave/<name>``. Raises HTTPException 404 for a name ``GET /v1/models`` does not list."""
    if model == ROUTE_MODEL:
        return None
    names = [g.name for g in settings.route_generators()]
    prefix = ROUTE_MODEL + "/"
    if model.startswith(prefix) and model[len(prefix):] in names:
        return [model[len(prefix):]]
    listed = ", ".join([ROUTE_MODEL, *(prefix + n for n in names)])
    raise HTTPException(404, f"no model {model!r}; this server has: {listed}")


@router.get("/models", response_model=ModelList)
def list_models(settings: Settings = Depends(get_settings), principal: Principal = Depends(caller)) -> ModelList:
    generators = settings.route_generators()
    names = [g.name for g in generators]
    route = Model(id=ROUTE_MODEL, owned_by=f"enclave ({' -> '.join(names)})", generators=names)
    return ModelList(data=[route, *(
        Model(id=f"{ROUTE_MODEL}/{g.name}", owned_by=f"enclave ({g.kind}, {g.locality})", generators=[g.name])
        for g in generators)])
