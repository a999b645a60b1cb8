"""Ordering: by relevance, in the caller's original order, or best at the edges.

The packer renders chunks in list order, so an ``order-chunks`` step decides the layout of the
final context, while selection under the budget still follows relevance.

"Edges" puts the most relevant chunks first and last and the least relevant in the middle,
after Liu et al., *Lost in the Middle: How Language Models Use Long Contexts*, TACL 2024.
"""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.records import Chunk
from optimizer.stage import Stage, StageContext

ORDERS = ("relevance", "document", "edges")


class Order(Stage):
    """Reorder chunks: ``by="relevance"`` (best first), ``"document"`` (caller's order) or ``"edges"``.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> cs = [Chunk(id=str(i), text="t", relevance=float(r)) for i, r in enumerate([1, 5, 3, 4, 2])]
    >>> [c.id for c in Order(by="edges")("q", cs, StageContext.default())]
    ['1', '2', '0', '4', '3']
    """

    name = "order-chunks"

    def __init__(self, *, by: str = "relevance") -> None:
        if by not in ORDERS:
            raise ValueError(f"order: by must be one of {', '.join(ORDERS)}, got {by!r}")
        self.by = by

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        position = {c.id: context.input_order.get(c.id, i) for i, c in enumerate(chunks)}
        if self.by == "document":
            return sorted(chunks, key=lambda c: position[c.id])
        rel = dict(zip((c.id for c in chunks), context.relevances(chunks)))  # distances: the smallest first
        ranked = sorted(chunks, key=lambda c: (-rel[c.id], position[c.id]))
        if self.by == "relevance":
            return ranked
        front, back = [], []
        for i, c in enumerate(ranked):
            (front if i % 2 == 0 else back).append(c)
        return front + back[::-1]
