"""``GET /v1/models``: the models an OpenAI client may name (Enclave's route)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from enclave.settings import Settings
from server.dependencies import get_settings

router = APIRouter(prefix="/v1", tags=["openai"])

#: The model name of the configured route, as OpenAI clients see it.
ROUTE_MODEL = "enclave"


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "enclave"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


@router.get("/models", response_model=ModelList)
def list_models(settings: Settings = Depends(get_settings)) -> ModelList:
    route = " -> ".join(g.name for g in settings.route_generators())
    return ModelList(data=[Model(id=ROUTE_MODEL, owned_by=f"enclave ({route})")])
