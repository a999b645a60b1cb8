"""An answer a reasoning model's thinking used up: it stopped at its completion cap (``finish_reason`` "length")
before writing a word. The client gets the empty answer, charged as the upstream billed it; the log gets a warning
naming the setting that gave the cap (``max_tokens_default`` under ``[models.X]``), since a reasoning model called
without a cap gets ``[limits] max_tokens_default`` (256), which it can spend thinking alone.

>>> visible_answer({"role": "assistant", "content": ""}), visible_answer({"content": None, "tool_calls": [{"id": "c1"}]})
(False, True)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ragtrim.serve.logs import log_event

# The fields of a reply message (or a stream delta) that are an answer the client sees; reasoning is not one
ANSWER_KEYS = ("content", "refusal", "tool_calls", "function_call", "audio")


def visible_answer(message: Any) -> bool:
    """True when a reply message (or a stream delta) carries any answer: text, a refusal, a tool call, audio."""
    return isinstance(message, Mapping) and any(message.get(k) not in (None, "", [], {}) for k in ANSWER_KEYS)


def cut_before_answering(body: Any) -> bool:
    """True when a whole chat completion's every choice stopped at the cap (``length``) with no answer in it.

    >>> cut_before_answering({"choices": [{"message": {"content": ""}, "finish_reason": "length"}]})
    True
    >>> cut_before_answering({"choices": [{"message": {"content": "Paris"}, "finish_reason": "length"}]}), cut_before_answering({})
    (False, False)
    """
    choices = body.get("choices") if isinstance(body, Mapping) else None
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, Mapping) and c.get("finish_reason") == "length" and not visible_answer(c.get("message"))
               for c in choices)


def cap_source(model: str, client_caps: Mapping[str, int], own_default: int | None) -> str:
    """Where an answer's completion cap came from, and what to raise, for the warning.

    >>> cap_source("o3", {}, None)
    'the request sent no cap, so it got [limits] max_tokens_default: set max_tokens_default under [models."o3"] (at most [limits] max_tokens_limit) to give the model room to think and answer'
    """
    if client_caps:
        sent = ", ".join(f"{name} {value}" for name, value in client_caps.items())
        return (f"the client sent {sent}: a client of a reasoning model sends more (max_tokens_default under "
                f'[models."{model}"] applies only to requests that send no cap)')
    got = f'max_tokens_default under [models."{model}"]' if own_default is not None else "[limits] max_tokens_default"
    return (f"the request sent no cap, so it got {got}: set max_tokens_default under [models.\"{model}\"] "
            f"{'higher ' if own_default is not None else ''}(at most [limits] max_tokens_limit) to give the model room "
            "to think and answer")


def warn_cut_answer(log: logging.Logger, *, model: str, request_id: str, tenant: str, cap: int,
                    client_caps: Mapping[str, int], own_default: int | None) -> None:
    """Log (a warning) that reasoning model ``model`` spent its whole completion ``cap`` and answered nothing."""
    log_event(log, "reasoning_answer_cut", level=logging.WARNING, request_id=request_id, tenant=tenant, model=model, cap=cap,
              message=f"model {model!r} (reasoning = true) answered nothing: it stopped at its completion cap of {cap} tokens "
                      f"(finish_reason length), all spent reasoning; {cap_source(model, client_caps, own_default)}")
