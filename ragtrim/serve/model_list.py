"""``GET /v1/models`` and ``GET /v1/models/{model}``: the configured models in OpenAI's shape.

Clients list models to fill a picker or check one before using it (LangChain, LibreChat, Open WebUI, the OpenAI
SDKs' ``models.list()`` / ``models.retrieve()``). Any key may read them, as ``GET /v1/usage``; an unknown model is
OpenAI's 404 ``model_not_found``. Embedding models (``kind = "embedding"``) are listed too, in the same shape (as OpenAI
lists its own); the 404 then says which route serves which.

>>> model_object("gpt-4o")
{'id': 'gpt-4o', 'object': 'model', 'created': 0, 'owned_by': 'ragtrim'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ragtrim.serve.auth import require
from ragtrim.serve.config import MODEL_KINDS, ModelConfig, kind_routes
from ragtrim.serve.errors import ApiError


def model_object(name: str) -> dict[str, Any]:
    """One model as OpenAI's ``model`` object (the gateway has no creation date for it: 0)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "ragtrim"}


def served(models: Mapping[str, ModelConfig]) -> str:
    """The configured models, each kind with the routes that serve it once any model embeds (an embedding model is
    served on ``/v1/embeddings`` only, a chat model on ``/v1/chat/completions`` and ``/v1/responses`` only).

    >>> served({"gpt-4o": ModelConfig("gpt-4o"), "te3": ModelConfig("te3", kind="embedding")})
    'gpt-4o (POST /v1/chat/completions and POST /v1/responses); te3 (POST /v1/embeddings)'
    """
    if all(m.kind == "chat" for m in models.values()):
        return ", ".join(models)
    return "; ".join(f"{', '.join(n for n, m in models.items() if m.kind == kind)} ({kind_routes(kind)})"
                     for kind in MODEL_KINDS if any(m.kind == kind for m in models.values()))


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
                       f"{served(models)}", param="model", code="model_not_found")
    return JSONResponse(model_object(name))
