"""The ``anthropic`` upstream: Anthropic's Messages API, ``POST {base_url}/v1/messages``.

It is the OpenAI upstream's client (:class:`ragtrim.serve.upstream.OpenAIUpstream`: one pool, the same resends of a
request the upstream cannot have started on, the key scrubbed from every error, a client that leaves before its
request is written not sent) with Anthropic's headers: the key as ``x-api-key`` and ``anthropic-version``. A client's
``anthropic-beta`` header reaches it through the route (:data:`ragtrim.serve.messages_api.MESSAGES_WIRE`'s headers).
Anthropic's errors (``{"type": "error", "error": {"type", "message"}}``) are read as OpenAI's are
(:func:`ragtrim.serve.upstream.refusal_of` reads the inner ``error``); its 500, 503 and 529 (``overloaded_error``) are
passed on with their status, error type and ``retry-after`` as its 4xx are (:data:`RELAYED_SERVER_ERRORS`), so the
anthropic SDK and Claude Code retry them as they would Anthropic's own (a 529 is not a 502 to them); nothing was
charged for them (the hold is released, the row ``failed`` with the upstream's status).

>>> from ragtrim.serve.config import UpstreamConfig
>>> up = AnthropicUpstream(UpstreamConfig(name="a", kind="anthropic", api_key_env="K"), env={"K": "sk-ant-1"})
>>> up.config.base_url, sorted(up._headers().items())
('https://api.anthropic.com', [('anthropic-version', '2023-06-01'), ('x-api-key', 'sk-ant-1')])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from ragtrim.serve.config import ANTHROPIC_BASE_URL, UpstreamConfig
from ragtrim.serve.upstream import OpenAIUpstream

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic's server errors its clients retry on their own (529: overloaded): passed on with their status
RELAYED_SERVER_ERRORS = frozenset({500, 503, 529})


class AnthropicUpstream(OpenAIUpstream):
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version`` (see the module docstring)."""

    kind = "anthropic"
    relayed_server_errors = RELAYED_SERVER_ERRORS

    def __init__(self, config: UpstreamConfig, *, env: Mapping[str, str] | None = None,
                 on_retry: Callable[[], None] | None = None):
        super().__init__(replace(config, base_url=config.base_url or ANTHROPIC_BASE_URL), env=env, on_retry=on_retry)

    def _headers(self) -> dict[str, str]:
        key = self._key()
        return {"anthropic-version": ANTHROPIC_VERSION, **({"x-api-key": key} if key else {})}
