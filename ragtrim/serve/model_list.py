"""``GET /v1/models`` and ``GET /v1/models/{model}``: the configured models in OpenAI's shape.

Clients list models to fill a picker or check one before using it (LangChain, LibreChat, Open WebUI, the OpenAI
SDKs' ``models.list()`` / ``models.retrieve()``). Any key may read them, as ``GET /v1/usage``; an unknown model is
OpenAI's 404 ``model_not_found``.

>>> model_object("gpt-4o")
{'id': 'gpt-4o', 'object': 'model', 'created': 0, 'owned_by': 'ragtrim'}
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ragtrim.serve.auth import require
from ragtrim.serve.errors import ApiError


def model_object(name: str) -> dict[str, Any]:
    """One model as OpenAI's ``model`` object (the gateway has no creation date for it: 0)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "ragtrim"}


async def models_list(request: Request) -> JSONResponse:
    """``GET /v1/models``: every configured model, in the config's order."""
    await require(request)
    models = request.app.state.service.config.models
    return JSONResponse({"object": "list", "data": [model_object(name) for name in models]})


async def model_get(request: Request) -> JSONResponse:
    """``GET /v1/models/{model}`` (a name may hold slashes: ``meta-llama/Llama-3.1-8B``); a 404 ``model_not_found``
    naming the served models for one not configured."""
    await require(request)
    name = request.path_params["model"]
    models = request.app.state.service.config.models
    if name not in models:
        raise ApiError(404, "invalid_request_error", f"the model {name!r:.200} does not exist on this gateway; it serves: "
                       f"{', '.join(models)}", param="model", code="model_not_found")
    return JSONResponse(model_object(name))
