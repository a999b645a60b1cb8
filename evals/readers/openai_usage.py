"""What an OpenAI-compatible answer's ``usage`` bills: read alike by the eval harness's OpenAI reader
(:mod:`evals.readers.openai`, its money numbers) and the gateway (:mod:`ragtrim.serve.upstream`, its charges).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


# A reported count above this is not a real one (no model takes a prompt of 100 million tokens);
# it also keeps ledger columns within PostgreSQL's INTEGER.
MAX_USAGE_TOKENS = 100_000_000


def usage_count(value: Any) -> int | None:
    """A reported token count, or None when it is not a whole number from 0 to :data:`MAX_USAGE_TOKENS`.

    >>> usage_count(12), usage_count(-1000), usage_count(5.0), usage_count(True), usage_count(10**12)
    (12, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_USAGE_TOKENS:
        return None
    return value


def billed_completion(usage: Mapping[str, Any], prompt: int | None, completion: int | None) -> int | None:
    """The completion tokens ``usage`` bills: ``completion``, plus reasoning tokens an upstream reports beside it.

    OpenAI counts the reasoning in ``completion_tokens`` (``completion_tokens_details.reasoning_tokens`` is a part
    of it, and ``total_tokens`` is prompt + completion): charged as reported. xAI (Grok) reports the visible text
    as ``completion_tokens``, the reasoning beside it, and a ``total_tokens`` counting both, and bills the reasoning
    as output; some Gemini converters send ``completion_tokens: 0`` with the reasoning in the details alone. So
    reasoning tokens are added to the completion when the usage says they are outside it: a ``total_tokens`` above
    prompt + completion (by at most the reasoning), or reasoning above the completion (impossible when the
    completion includes them). A total above prompt + completion with no reasoning reported is input the
    prompt count left out (Gemini's tool-use prompt, a converter's cache writes), never charged as output here.
    A count that is not one (:func:`usage_count`) is not read, and a missing completion stays missing (the
    gateway counts its own).

    >>> billed_completion({"total_tokens": 949, "completion_tokens_details": {"reasoning_tokens": 900}}, 9, 40)
    940
    >>> billed_completion({"completion_tokens_details": {"reasoning_tokens": 60}}, 9, 0)
    60
    >>> billed_completion({"total_tokens": 20021}, 11, 10), billed_completion({"total_tokens": 949, "completion_tokens_details": {"reasoning_tokens": 900}}, 9, 940)
    (10, 940)
    """
    if completion is None:
        return None
    details = usage.get("completion_tokens_details")
    reasoning = usage_count(details.get("reasoning_tokens")) if isinstance(details, Mapping) else None
    if not reasoning:
        return completion
    total = usage_count(usage.get("total_tokens"))
    beside_total = min(max(0, total - prompt - completion), reasoning) if total is not None and prompt is not None else 0
    beside_details = reasoning if reasoning > completion else 0  # more reasoning than completion: not a part of it
    return min(completion + max(beside_total, beside_details), MAX_USAGE_TOKENS)
