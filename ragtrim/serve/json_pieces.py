"""Compact JSON written a piece at a time: a big body (an agent's 8 MiB transcript on ``/v1/responses``, a 4 MiB
embeddings batch) as many small ``json.dumps`` calls, each a member or a list item, never one call that holds the
GIL, and so a worker's event loop, for the whole of it (``json.dumps`` of 8 MiB: about 70 ms on one core).

>>> "".join(pieces({"model": "m", "input": [{"role": "user", "content": "hé"}, 2]}, httpx_dumps))
'{"model":"m","input":[{"role":"user","content":"hé"},2]}'
>>> import anyio; anyio.run(json_body, {"a": [1, 2]})
b'{"a":[1,2]}'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# The longest one piece of work runs before a writer gives the event loop its turn
SLICE_SECONDS = 0.005


def httpx_dumps(value: Any) -> str:
    """``value`` as httpx writes a ``json=`` body: compact, UTF-8 as it is, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def pieces(value: Any, dumps: Callable[[Any], str], depth: int = 2) -> Iterator[str]:
    """The JSON text of ``value`` in pieces that join to ``dumps(value)``: an object's members and a list's items are
    written one by one down to ``depth`` levels (a body's fields, and the items of its lists), each below that whole."""
    if depth and isinstance(value, Mapping):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + json.dumps(str(key), ensure_ascii=False) + ":"
            yield from pieces(item, dumps, depth - 1)
        yield "}"
    elif depth and isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from pieces(item, dumps, depth - 1)
        yield "]"
    else:
        yield dumps(value)


def json_size(value: Any, dumps: Callable[[Any], str]) -> int:
    """The UTF-8 bytes of ``dumps(value)``, measured a piece at a time (no whole copy, no long call)."""
    return sum(len(piece.encode("utf-8", "replace")) for piece in pieces(value, dumps))


async def json_body(value: Any) -> bytes:
    """``value`` as an HTTP body (:func:`httpx_dumps`), written on the event loop a piece at a time, giving the loop
    its turn every :data:`SLICE_SECONDS`: a big body does not stall the other requests' answers."""
    import anyio

    out, since = [], time.perf_counter()
    for piece in pieces(value, httpx_dumps):
        out.append(piece.encode("utf-8"))
        if time.perf_counter() - since > SLICE_SECONDS:
            await anyio.sleep(0)
            since = time.perf_counter()
    return b"".join(out)
