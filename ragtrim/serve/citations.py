"""Which of the client's documents each number the model cites stands for.

The rendered context numbers the kept documents ``[1]``, ``[2]``, ... in the order the optimizer
kept them (reranked, some dropped), and the template asks the model to cite those numbers. The
chat answer maps them back to the client's ids: a non-streamed body's ``ragtrim.documents``
(:func:`cited_documents`), a stream's ``X-Ragtrim-Documents`` header (:func:`documents_header`), at most
:data:`HEADER_BYTES` long: the numbers past that are left out, and ``X-Ragtrim-Documents-Listed`` says how
many of how many it lists (Node's fetch, the OpenAI Node SDK's transport, fails a response whose headers
pass 16 KB, and proxies often hold 4-8 KB). The whole map of a long list of long ids is in a non-streamed answer.
A document the client sent as a bare string has its index in ``documents`` as id (``"0"``, ``"1"``, ...).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

DOCUMENTS_HEADER = "X-Ragtrim-Documents"
LISTED_HEADER = "X-Ragtrim-Documents-Listed"
HEADER_BYTES = 4096
"""The most bytes of :data:`DOCUMENTS_HEADER`'s value."""


def cited_documents(result: Any) -> list[dict[str, Any]]:
    """``[{"n": 1, "id": ...}, ...]``: each document of an optimizer ``result`` (None: no documents) with the number
    it has in the rendered context, in that order (a chunk with no text is not rendered, so has no number).

    >>> from optimizer import Pipeline
    >>> r = Pipeline.preset("full").run("capital?", [{"id": "a", "text": " "}, {"id": "b", "text": "Paris."}])
    >>> r.text, cited_documents(r), cited_documents(None)
    ('[1] Paris.', [{'n': 1, 'id': 'b'}], [])
    """
    if result is None:
        return []
    from optimizer.render import visible

    return [{"n": n, "id": chunk.id} for n, chunk in enumerate(visible(result.chunks), start=1)]


def documents_header(listed: list[dict[str, Any]]) -> str:
    """The ``X-Ragtrim-Documents`` value of :func:`cited_documents`: ``n=id`` pairs joined by commas, each id
    percent-encoded as a URL's component is (UTF-8; ``,``, ``=``, spaces, ... escaped), so the value is ASCII;
    empty when no document was kept.

    >>> documents_header([{"n": 1, "id": "d3"}, {"n": 2, "id": "a,b=c/é"}])
    '1=d3,2=a%2Cb%3Dc%2F%C3%A9'
    """
    return ",".join(f"{d['n']}={quote(d['id'], safe='')}" for d in listed)


def stream_headers(listed: list[dict[str, Any]], limit: int = HEADER_BYTES) -> dict[str, str]:
    """The headers a stream carries for :func:`cited_documents`: :data:`DOCUMENTS_HEADER` with the first pairs whose
    value fits ``limit`` bytes, and, when some were left out, :data:`LISTED_HEADER` as ``"listed/total"``.

    >>> stream_headers([{"n": 1, "id": "d3"}, {"n": 2, "id": "d4"}])
    {'X-Ragtrim-Documents': '1=d3,2=d4'}
    >>> stream_headers([{"n": n, "id": "doc-" + str(n)} for n in range(1, 4)], limit=16)
    {'X-Ragtrim-Documents': '1=doc-1,2=doc-2', 'X-Ragtrim-Documents-Listed': '2/3'}
    """
    pairs = documents_header(listed).split(",") if listed else []
    kept, size = [], -1
    for pair in pairs:
        if size + 1 + len(pair) > limit:
            break
        kept.append(pair)
        size += 1 + len(pair)
    out = {DOCUMENTS_HEADER: ",".join(kept)}
    if len(kept) < len(pairs):
        out[LISTED_HEADER] = f"{len(kept)}/{len(pairs)}"
    return out
