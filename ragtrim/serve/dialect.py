"""Which API a request came in on: what the chat route (``POST /v1/chat/completions``), the Responses route
(``POST /v1/responses``) and the Messages route (``POST /v1/messages``, Anthropic's) do differently, so that one
flow (:mod:`ragtrim.serve.chat`) serves them all.

Everything else (documents optimized into the prompt, the plan, the hold, the settle, the ledger) is one code
path: a :class:`Dialect` names only where the APIs differ, the names of fields and the shapes of answers.

>>> CHAT.endpoint, CHAT.items_key, CHAT.caps
('chat', 'messages', ('max_tokens', 'max_completion_tokens'))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragtrim.serve.errors import ApiError
from ragtrim.serve.upstream import BILLED_FIELDS, CHAT_WIRE, Wire, sse

# The fields that cap a chat completion: ``max_tokens`` (OpenAI's older name, the one most OpenAI-compatible
# servers know) and ``max_completion_tokens`` (OpenAI's current one, which counts reasoning tokens too;
# OpenAI's reasoning models refuse ``max_tokens``). Each is forwarded under the name the client gave.
CAP_FIELDS = ("max_tokens", "max_completion_tokens")
# The cap the gateway adds when the client gave none and the request holds room in a budget
# (:func:`ragtrim.serve.bodies.upstream_caps`): OpenAI's current name, the bound of exactly what a hold covers.
ADDED_CAP = "max_completion_tokens"


def on_anthropic(upstream: Any) -> str:
    """Why an OpenAI route cannot send to ``upstream`` ("": it can): an anthropic upstream speaks the Messages API only."""
    if getattr(upstream, "kind", "") == "anthropic":
        return ("is on an anthropic upstream, which speaks Anthropic's Messages API: send this request to POST /v1/messages "
                "(e.g. with the anthropic SDK), or name a model on an OpenAI-compatible upstream")
    return ""


def openai_error_event(message: str) -> bytes:
    """The SSE event that tells a streaming client the upstream failed after its answer had begun (a 502's error)."""
    return sse(ApiError(502, "upstream_error", message).body())


@dataclass(frozen=True)
class Dialect:
    """One OpenAI API the gateway serves.

    ``endpoint`` is the ledger's and the metrics' name of it; ``wire`` what the upstream is posted
    (:class:`ragtrim.serve.upstream.Wire`); ``items_key`` the body field that holds the prompt's items
    (messages, or Responses input items); ``caps`` the client's completion caps and ``added_cap`` the one
    the gateway adds under a budget; ``billed`` the other fields the upstream bills as input;
    ``count_view`` the items as chat messages, for :func:`ragtrim.serve.upstream.count_chat_tokens`;
    ``asks_usage``: a stream is asked its usage (``stream_options.include_usage``; a Responses stream
    always ends with it); ``tally`` the class that reads a stream's events (None: the chat's
    ``SseTally``); ``refuses`` why the route cannot send to an upstream client ("" when it can); ``route`` its
    path, which a 400 for a model it does not serve (an embedding model: :meth:`ragtrim.serve.config.ServeConfig.model`)
    names; ``body`` the upstream body's fields that carry the prompt items (None: all of them in ``items_key``);
    ``body_limit`` the largest body it reads (a :class:`ragtrim.serve.bodies.BodyLimit`; None: ``[limits]
    max_body_bytes``).
    """

    endpoint: str
    wire: Wire
    items_key: str
    caps: tuple[str, ...]
    added_cap: str
    billed: tuple[str, ...]
    count_view: Callable[[Sequence[Mapping[str, Any]]], Sequence[Mapping[str, Any]]]
    asks_usage: bool = True
    tally: Any = None
    refuses: Callable[[Any], str] = on_anthropic
    route: str = "/v1/chat/completions"
    body: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]] | None = None

    body_limit: Any = None

    def items_body(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The fields of the upstream body that carry the prompt ``items``."""
        return self.body(items) if self.body is not None else {self.items_key: list(items)}


CHAT = Dialect("chat", CHAT_WIRE, "messages", CAP_FIELDS, ADDED_CAP, BILLED_FIELDS, tuple)
