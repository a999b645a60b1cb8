"""An answer a reasoning model's thinking used up: it stopped at its completion cap (a chat completion's
``finish_reason`` "length"; a Responses answer ``incomplete`` for ``max_output_tokens``) before writing a word. The client gets the empty answer, charged as the upstream billed it; the log gets a warning
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


# The output items of a Responses answer that are an answer the client sees; reasoning is not one
ANSWER_ITEMS = ("message", "function_call", "custom_tool_call")
# How each API says an answer stopped at its cap, by the name of the cap (the warning says it as the client reads it)
CUT_ENDINGS = {"max_output_tokens": "status incomplete, incomplete_details.reason max_output_tokens"}


def cut_before_answering(body: Any) -> bool:
    """True when a whole chat completion's every choice stopped at the cap (``length``) with no answer in it, or a whole
    Responses answer is ``incomplete`` for ``max_output_tokens`` with no answer item in its output (:func:`_response_cut`).

    >>> cut_before_answering({"choices": [{"message": {"content": ""}, "finish_reason": "length"}]})
    True
    >>> cut_before_answering({"choices": [{"message": {"content": "Paris"}, "finish_reason": "length"}]}), cut_before_answering({})
    (False, False)
    """
    if isinstance(body, Mapping) and (body.get("object") == "response" or isinstance(body.get("output"), list)):
        return _response_cut(body)
    choices = body.get("choices") if isinstance(body, Mapping) else None
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, Mapping) and c.get("finish_reason") == "length" and not visible_answer(c.get("message"))
               for c in choices)


def _response_cut(body: Mapping[str, Any]) -> bool:
    """True when a Responses answer stopped at ``max_output_tokens`` with nothing in its output but reasoning.

    >>> cut = {"object": "response", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    >>> _response_cut({**cut, "output": [{"type": "reasoning", "summary": []}]})
    True
    >>> _response_cut({**cut, "output": [{"type": "message", "content": [{"type": "output_text", "text": "Par"}]}]})
    False
    """
    details = body.get("incomplete_details")
    if body.get("status") != "incomplete" or not isinstance(details, Mapping) or details.get("reason") != "max_output_tokens":
        return False
    output = body.get("output") if isinstance(body.get("output"), list) else []
    return not any(isinstance(item, Mapping) and item.get("type") in ANSWER_ITEMS for item in output)


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
                    client_caps: Mapping[str, int], own_default: int | None, cap_name: str = "") -> None:
    """Log (a warning) that reasoning model ``model`` spent its whole completion ``cap`` (sent as ``cap_name``) and
    answered nothing."""
    ending = CUT_ENDINGS.get(cap_name, "finish_reason length")
    log_event(log, "reasoning_answer_cut", level=logging.WARNING, request_id=request_id, tenant=tenant, model=model, cap=cap,
              message=f"model {model!r} (reasoning = true) answered nothing: it stopped at its completion cap of {cap} tokens "
                      f"({ending}), all spent reasoning; {cap_source(model, client_caps, own_default)}")
