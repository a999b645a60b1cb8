"""Rendering kept chunks into the context string the LLM sees, with provenance of every piece.

Each chunk becomes a block ``[n] Title\\ntext``; blocks are joined by ``separator``. A title
equal to the previous block's title is not repeated. Without a title line, a block whose text opens
with a line that is Markdown only at the start of a line (a code fence, a heading, a table row, a
bullet item, a quote: :func:`opens_block`), or with an indented line that more lines follow
(:func:`indented_lines`: code cut mid-block), gets ``[n]`` on a line of its own, so the text keeps its
meaning (``[2] ```bash`` is no fence, and its closing fence would open one). Kept pieces of one chunk are joined as
in ``chunk.text``: by a space, or a line break where a piece ends or starts a line or a blank line or a
change of quote depth lies between (see :func:`optimizer.records.piece_joiner`).

>>> from optimizer.records import Chunk
>>> r = Renderer()
>>> out = r.render([Chunk(id="a", text="Paris is in France.", title="Paris")])
>>> out.text
'[1] Paris\\nParis is in France.'
>>> out.spans[0].start, out.spans[0].end, out.text[out.spans[0].context_start:out.spans[0].context_end]
(0, 19, 'Paris is in France.')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optimizer.records import Chunk, Span, is_indentation, piece_joiner
from optimizer.sentences import FENCE, line_view
from optimizer.tokenizer import count_many

# a line that means what it does only at a line's start: an ATX heading, a table row, a quote, a
# bullet item (a numbered one is left out: prose often opens with a year, "1968) is ..."), or a fence
_LINE_START_MARKUP = re.compile(r"[ \t]{0,3}(?:#{1,6}(?:[ \t]|$)|\||>|[-+*][ \t])", re.M)


def opens_block(text: str) -> bool:
    """True when ``text``'s first line is Markdown that must start a line: a code fence, an ATX heading,
    a table row, a bullet list item or a block quote.

    >>> [opens_block(t) for t in ("```bash\\nls", "## Usage", "| a | b |", "- item", "> quoted")]
    [True, True, True, True, True]
    >>> [opens_block(t) for t in ("Paris is big.", "#1 hit", "1968) is a film", "-3 degrees", "*bold* text", "")]
    [False, False, False, False, False, False]
    """
    text = line_view(text[:200]) if "\r" in text[:200] else text
    return _LINE_START_MARKUP.match(text) is not None or FENCE.match(text) is not None


_LATER_LINE = re.compile(r"[\n\r][^\S\n\r]*\S")  # a line end ("\n", or "\r" alone: line_view), then a line with text


def indented_lines(text: str) -> bool:
    """True when ``text``'s first line is indented and a line with text follows it: code, YAML or a diff
    that starts mid-block (:func:`optimizer.records.with_first_indent`). Printed after ``[n] `` on the
    marker's line, the first line would look indented by the marker's width, not by its own.
    Indentation is what :func:`optimizer.records.with_first_indent` keeps (:func:`~optimizer.records.is_indentation`:
    NBSP and U+3000 too), and a lone ``\\r`` ends a line.

    >>> [indented_lines(t) for t in ("    if x:\\n        y()", "\\ta:\\n\\tb:", "  one line", "  one line\\n", "x\\n  y")]
    [True, True, False, False, False]
    >>> indented_lines("\\xa0\\xa0a: 1\\n\\xa0\\xa0b: 2"), indented_lines("  a: 1\\r  b: 2")
    (True, True)
    """
    return is_indentation(text[:1]) and _LATER_LINE.search(text) is not None


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[Span, ...]


def is_blank(chunk: Chunk) -> bool:
    """Whether ``chunk`` has no text to show (empty or white space only): the renderer skips it, the packer
    drops it, and ``select-*`` stages say why they did.

    >>> is_blank(Chunk(id="a", text=" \\n")), is_blank(Chunk(id="b", text="x"))
    (True, False)
    """
    return not chunk.text or chunk.text.isspace()


def visible(chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks :meth:`Renderer.render` prints: those that are not :func:`is_blank`."""
    return [c for c in chunks if not is_blank(c)]


def group_by_title(chunks: Sequence[Chunk]) -> list[Chunk]:
    """``chunks`` with those that share a title moved up to the first of them, otherwise in order.

    The renderer prints a title once per run of blocks with that title, so in this layout each
    title prints once.

    >>> cs = [Chunk(id=i, text="x", title=t) for i, t in (("a", "A"), ("b", "B"), ("c", "A"))]
    >>> [c.id for c in group_by_title(cs)]
    ['a', 'c', 'b']
    """
    groups: dict[str | None, list[Chunk]] = {}
    for c in chunks:
        groups.setdefault(c.title, []).append(c)
    return [c for group in groups.values() for c in group]


@dataclass(frozen=True)
class Renderer:
    """How chunks are laid out.

    Parameters
    ----------
    citations: prefix each block with ``[n] `` (1-based, in rendered order).
    titles: print the chunk's title on the block's first line.
    separator: between blocks.
    frames: a metadata key; a chunk whose metadata holds ``[head, tail]`` (two strings) under it is
        printed as ``head + text + tail``, in every block. This is how a framework prints its own
        metadata around each node (the LlamaIndex wrapper sets it), so the budget counts it.

    >>> r = Renderer(citations=False, titles=False, frames="frame")
    >>> r.render([Chunk(id="a", text="Paris.", metadata={"frame": ["file_path: a.txt\\n\\n", ""]})]).text
    'file_path: a.txt\\n\\nParis.'
    """

    citations: bool = True
    titles: bool = True
    separator: str = "\n\n"
    frames: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.separator, str):
            raise TypeError(f"renderer separator must be a string, got {self.separator!r}")
        if self.frames is not None and not isinstance(self.frames, str):
            raise TypeError(f"renderer frames must be a metadata key (a string) or None, got {self.frames!r}")

    def frame(self, chunk: Chunk) -> tuple[str, str]:
        """The ``(head, tail)`` printed around ``chunk``'s text (empty without ``frames``)."""
        if self.frames is None:
            return "", ""
        value = chunk.metadata.get(self.frames)
        if value is None:
            return "", ""
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError(f"chunk {chunk.id!r}: metadata[{self.frames!r}] must be [head, tail] (two strings), got {value!r:.80}")
        return value[0], value[1]

    def lead(self, chunk: Chunk) -> str:
        """What a block prints right after its header: the frame's head and the chunk's text."""
        head = self.frame(chunk)[0]
        return head + chunk.text if head else chunk.text

    def header(self, position: int, title: str | None, previous_title: str | None, body: str = "") -> str:
        """The text put before a chunk's body (marker and title).

        ``body`` is what follows the header (:meth:`lead`): when no title line comes between and
        its first line is line-start Markdown (:func:`opens_block`) or indented lines (:func:`indented_lines`),
        the marker ends its own line.

        >>> Renderer().header(2, None, None, "Paris."), Renderer().header(2, None, None, "```sh\\nls\\n```")
        ('[2] ', '[2]\\n')
        >>> Renderer().header(2, None, None, "    if x:\\n        y()")
        '[2]\\n'
        """
        titled = bool(self.titles and title and title != previous_title)
        parts = []
        if self.citations:
            own_line = not titled and (opens_block(body) or indented_lines(body))
            parts.append(f"[{position}]\n" if own_line else f"[{position}] ")
        if titled:
            parts.append(f"{title}\n")
        return "".join(parts)

    def render(self, chunks: Sequence[Chunk]) -> Rendered:
        """Render chunks in the given order; blank chunks (no text, or white space only) are skipped.

        The packer drops blank chunks too (:data:`optimizer.packer.BLANK_REASON`), so the full context
        (every chunk rendered: the basis of a share budget, ``tokens_full``) is what ``full`` sends.

        >>> Renderer().render([Chunk(id="a", text="  \\n", title="T"), Chunk(id="b", text="Hi.")]).text
        '[1] Hi.'
        """
        out: list[str] = []
        spans: list[Span] = []
        pos = 0
        previous_title: str | None = None
        position = 0
        for chunk in visible(chunks):
            position += 1
            if out:
                out.append(self.separator)
                pos += len(self.separator)
            before, after = self.frame(chunk)
            head = self.header(position, chunk.title, previous_title, before + chunk.text if before else chunk.text) + before
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
            out.append(after)
            pos += len(after)
        return Rendered("".join(out), tuple(spans))

    def overhead(self, chunks: Sequence[Chunk], tokenizer: Any, counts: dict[str, int] | None = None, *,
                 grouped: bool = False) -> int:
        """Tokens this layout adds around ``chunks`` rendered in this order (markers, titles, separators; blank
        chunks, which :meth:`render` skips, add none).

        A title is counted where :meth:`render` prints it: not when the previous block has the
        same title. So pass the chunks in the order they will be rendered, or ``grouped=True`` when
        they will be rendered in :func:`group_by_title` order (each title once, whatever the order of
        ``chunks``). Counted by ``tokenizer``; ``counts`` (text -> tokens) memoizes header counts
        across calls, e.g. for one run.

        >>> from optimizer.tokenizer import get_tokenizer
        >>> tok = get_tokenizer("cl100k_base")
        >>> a, b, c = (Chunk(id=i, text="x", title=t) for i, t in (("a", "Paris"), ("b", "Paris"), ("c", "Lyon")))
        >>> Renderer().overhead([a], tok)
        5
        >>> Renderer().overhead([a, b, c], tok), Renderer().overhead([a, c, b], tok), Renderer().overhead([a, c, b], tok, grouped=True)
        (16, 17, 16)
        """
        chunks = visible(chunks)
        if not chunks:
            return 0
        if grouped:
            chunks = group_by_title(chunks)
        texts = [self.separator] + [t for i, c in enumerate(chunks) for t in self.block_texts(i + 1, c, chunks[i - 1].title if i else None)]
        separator, *around = count_many(tokenizer, texts, counts)
        return sum(around) + (len(chunks) - 1) * separator

    def block_texts(self, position: int, chunk: Chunk, previous_title: str | None) -> list[str]:
        """What :meth:`overhead` counts for one block printed at ``position`` after a block titled
        ``previous_title`` (None for the first): its header, and its frame's head and tail with ``frames``.

        >>> Renderer().block_texts(2, Chunk(id="a", text="x", title="Paris"), "Lyon")
        ['[2] Paris\\n']
        """
        header = self.header(position, chunk.title, previous_title, self.lead(chunk))
        return [header, *self.frame(chunk)] if self.frames is not None else [header]

    def to_dict(self) -> dict[str, Any]:
        """The settings, without unset ones (TOML has no null)."""
        return {k: v for k, v in asdict(self).items() if v is not None}
