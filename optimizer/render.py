"""Rendering kept chunks into the context string the LLM sees, with provenance of every piece.

Each chunk becomes a block ``[n] Title\\ntext``; blocks are joined by ``separator``. A title
equal to the previous block's title is not repeated. Kept pieces of one chunk are joined as
in ``chunk.text``: by a space, or a line break where a piece ends or starts a line (see
:func:`optimizer.records.piece_joiner`).

>>> from optimizer.records import Chunk
>>> r = Renderer()
>>> out = r.render([Chunk(id="a", text="Paris is in France.", title="Paris")])
>>> out.text
'[1] Paris\\nParis is in France.'
>>> out.spans[0].start, out.spans[0].end, out.text[out.spans[0].context_start:out.spans[0].context_end]
(0, 19, 'Paris is in France.')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optimizer.records import Chunk, Span, piece_joiner
from optimizer.tokenizer import count_many


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[Span, ...]


def one_title(chunks: Sequence[Chunk]) -> str | None:
    """The title every one of ``chunks`` has, if they all have the same one, else ``None``.

    >>> one_title([Chunk(id="a", text="x", title="guide.md"), Chunk(id="b", text="y", title="guide.md")])
    'guide.md'
    >>> one_title([Chunk(id="a", text="x", title="a.md"), Chunk(id="b", text="y", title="b.md")]) is None
    True
    """
    titles = {c.title for c in chunks}
    return titles.pop() if len(titles) == 1 else None


@dataclass(frozen=True)
class Renderer:
    """How chunks are laid out.

    Parameters
    ----------
    citations: prefix each block with ``[n] `` (1-based, in rendered order).
    titles: print the chunk's title on the block's first line.
    separator: between blocks.
    """

    citations: bool = True
    titles: bool = True
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        if not isinstance(self.separator, str):
            raise TypeError(f"renderer separator must be a string, got {self.separator!r}")

    def header(self, position: int, title: str | None, previous_title: str | None) -> str:
        """The text put before a chunk's body (marker and title)."""
        parts = []
        if self.citations:
            parts.append(f"[{position}] ")
        if self.titles and title and title != previous_title:
            parts.append(title + "\n")
        return "".join(parts)

    def render(self, chunks: Sequence[Chunk]) -> Rendered:
        """Render chunks in the given order; empty chunks are skipped."""
        out: list[str] = []
        spans: list[Span] = []
        pos = 0
        previous_title: str | None = None
        position = 0
        for chunk in chunks:
            if not chunk.text:
                continue
            position += 1
            if out:
                out.append(self.separator)
                pos += len(self.separator)
            head = self.header(position, chunk.title, previous_title)
            previous_title = chunk.title
            out.append(head)
            pos += len(head)
            original = chunk.original_text
            pieces = chunk.kept_pieces
            for i, (s, e) in enumerate(pieces):
                if i:
                    joiner = piece_joiner(original, pieces[i - 1][1], s)
                    out.append(joiner)
                    pos += len(joiner)
                out.append(original[s:e])
                spans.append(Span(chunk.id, s, e, pos, pos + (e - s)))
                pos += e - s
        return Rendered("".join(out), tuple(spans))

    def overhead(self, chunks: Sequence[Chunk], tokenizer: Any, counts: dict[str, int] | None = None) -> int:
        """Tokens this layout adds around ``chunks`` (markers, titles, separators), counted by ``tokenizer``.

        Titles are counted as if none repeated (an upper bound: a repeated title is printed once),
        except when every chunk has the same title: then it prints once whatever the order, and is
        counted once. ``counts`` (text -> tokens) memoizes header counts across calls, e.g. for one run.

        >>> from optimizer.tokenizer import get_tokenizer
        >>> Renderer().overhead([Chunk(id="a", text="x", title="Paris")], get_tokenizer("cl100k_base"))
        5
        """
        if not chunks:
            return 0
        shared = one_title(chunks)
        texts = [self.header(i + 1, c.title, shared if i else None) for i, c in enumerate(chunks)] + [self.separator]
        *heads, separator = count_many(tokenizer, texts, counts)
        return sum(heads) + (len(chunks) - 1) * separator

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
