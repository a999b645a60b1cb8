"""What a chunk taken after the others adds to the renderer's overhead, counted as chunks are taken.

A selector that takes chunks one at a time asks, per chunk it tries, what that chunk adds around
the text (its marker, its title, a separator): ``overhead(taken + [chunk]) - overhead(taken)``.
Counting the whole layout again for each try made a run quadratic in the chunks kept (``default``
at half the context: 800 four-line chunks 5.4 s, 1600 23.5 s). A :class:`Tally` holds the layout
counted so far and answers for the new chunk alone where that is provably the same number: a block
printed last changes no earlier header (a header depends on its position, its own text and title
and the previous block's title), so it adds its own header and frame and one separator. Elsewhere
(a grouped layout that puts the new chunk inside an earlier group of its title, so every later
block's position moves) it counts the layout again, as before. Every answer equals the recount.

>>> from optimizer.tokenizer import get_tokenizer
>>> tok = get_tokenizer("cl100k_base")
>>> a, b, c = (Chunk(id=i, text="x", title=t) for i, t in (("a", "Paris"), ("b", "Lyon"), ("c", "Paris")))
>>> overhead = RenderOverhead(Renderer(), tok, {})
>>> tally = overhead.tally(grouped=True)
>>> tally.take(a), tally.take(b), tally.added(c), overhead([a, b, c], grouped=True) - overhead([a, b], grouped=True)
(5, 6, 5, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from optimizer.records import Chunk
from optimizer.render import Renderer, group_by_title, is_blank, visible
from optimizer.tokenizer import count_many


class Tally(Protocol):
    """A layout counted as chunks are taken: ``added(c)`` is ``overhead(taken + [c]) - overhead(taken)``,
    ``take(c)`` takes ``c`` and returns the same number; ``swapped(old, new)`` and ``swap(old, new)`` the
    same for ``new`` put in place of ``old``, a chunk taken already."""

    def added(self, chunk: Chunk) -> int: ...
    def take(self, chunk: Chunk) -> int: ...
    def swapped(self, old: Chunk, new: Chunk) -> int: ...
    def swap(self, old: Chunk, new: Chunk) -> int: ...


class RecountTally:
    """A :class:`Tally` that counts the whole layout with ``overhead`` each time (for an overhead it cannot see into).

    >>> t = RecountTally(len)
    >>> t.added(Chunk(id="a", text="x")), t.take(Chunk(id="a", text="x")), t.added(Chunk(id="b", text="y"))
    (1, 1, 1)
    """

    def __init__(self, overhead: Callable[[list[Chunk]], int]) -> None:
        self.overhead = overhead
        self.taken: list[Chunk] = []
        self.total = 0

    def added(self, chunk: Chunk) -> int:
        return self.overhead([*self.taken, chunk]) - self.total

    def take(self, chunk: Chunk) -> int:
        self.taken.append(chunk)
        return self._recount()

    def swapped(self, old: Chunk, new: Chunk) -> int:
        return self.overhead(_replaced(self.taken, old, new)) - self.total

    def swap(self, old: Chunk, new: Chunk) -> int:
        self.taken = _replaced(self.taken, old, new)
        return self._recount()

    def _recount(self) -> int:
        before, self.total = self.total, self.overhead(self.taken)
        return self.total - before


def _replaced(chunks: Sequence[Chunk], old: Chunk, new: Chunk) -> list[Chunk]:
    """``chunks`` with ``new`` in place of ``old`` (the object itself, wherever it is)."""
    return [new if c is old else c for c in chunks]


class HeaderTally:
    """The :class:`Tally` of a :class:`~optimizer.render.Renderer`'s :meth:`~optimizer.render.Renderer.overhead`
    (``grouped`` as there), each block's count kept. A chunk printed last adds its own header and
    frame (:meth:`~optimizer.render.Renderer.block_texts`) and a separator; a chunk put in place of a
    block with its title changes that block's count alone. A chunk joining an earlier group of its title
    (grouped) prints after that group's last block: it and every block after it are counted at their new
    places (one count of them all, each block's header built once per previous title and its marker's
    number put in), and ``take`` reuses what ``added`` counted for it when nothing was taken between.
    Anything else counts the layout again."""

    def __init__(self, renderer: Renderer, tokenizer: Any, counts: dict[str, int], grouped: bool) -> None:
        self.renderer, self.tokenizer, self.counts, self.grouped = renderer, tokenizer, counts, grouped
        self.taken: list[Chunk] = []
        self.blocks: list[Chunk] = []  # the visible chunks in the order they print
        self.heads: list[int] = []  # each block's count
        self.at: dict[int, int] = {}  # id() of a block -> its place in ``blocks``
        self.titles: set[str | None] = set()
        self.total = 0
        self.separator = self._count([renderer.separator])
        self.changes = 0  # layouts taken so far: what ``added`` counted for an insertion holds until the next
        self.inserted: tuple[Chunk, int, tuple[int, list[int], int]] | None = None
        self.forms: dict[tuple[int, str | None], tuple[Chunk, list[str]]] = {}  # (id of a block, previous title) -> its texts at place 0

    def added(self, chunk: Chunk) -> int:
        if is_blank(chunk):
            return 0
        if self._last(chunk):
            return (self.separator if self.blocks else 0) + self._head(len(self.blocks), chunk)
        return self._insertion(chunk)[2]

    def take(self, chunk: Chunk) -> int:
        last = not is_blank(chunk) and self._last(chunk)
        self.taken.append(chunk)
        if is_blank(chunk):
            return 0
        if not last:
            return self._insert(chunk)
        self.changes += 1
        head = self._head(len(self.blocks), chunk)
        gained = (self.separator if self.blocks else 0) + head
        self._place(chunk, head)
        self.total += gained
        return gained

    def swapped(self, old: Chunk, new: Chunk) -> int:
        if old is new:
            return 0
        k = self._in_place(old, new)
        if k is not None:
            return self._head(k, new) - self.heads[k]
        return self._full(_replaced(self.taken, old, new)) - self.total

    def swap(self, old: Chunk, new: Chunk) -> int:
        if old is new:
            return 0
        k = self._in_place(old, new)
        self.taken = _replaced(self.taken, old, new)
        self.changes += 1
        if k is None:
            return self._recount()
        head = self._head(k, new)
        gained = head - self.heads[k]
        del self.at[id(old)]
        self.blocks[k], self.heads[k], self.at[id(new)] = new, head, k
        self.total += gained
        return gained

    def _last(self, chunk: Chunk) -> bool:
        """Whether ``chunk`` (not blank) prints after every block taken: always in taken order; grouped, when
        its title is new or the last block's (else it joins an earlier group, before blocks taken already)."""
        return not self.grouped or chunk.title not in self.titles or chunk.title == self.blocks[-1].title

    def _in_place(self, old: Chunk, new: Chunk) -> int | None:
        """Where ``new`` prints in place of block ``old`` leaving every other block's header as it is (same
        title, both visible); None when it does not."""
        k = self.at.get(id(old))
        if k is None or self.blocks[k] is not old or is_blank(new) or new.title != old.title:
            return None
        return k

    def _head(self, k: int, chunk: Chunk) -> int:
        """The count of ``chunk`` printed as block ``k`` (0-based) after ``blocks[k - 1]``."""
        return self._count(self.renderer.block_texts(k + 1, chunk, self.blocks[k - 1].title if k else None))

    def _count(self, texts: list[str]) -> int:
        return sum(count_many(self.tokenizer, texts, self.counts))

    def _full(self, chunks: Sequence[Chunk]) -> int:
        return self.renderer.overhead(chunks, self.tokenizer, self.counts, grouped=self.grouped)

    def _place(self, chunk: Chunk, head: int) -> None:
        self.at[id(chunk)] = len(self.blocks)
        self.blocks.append(chunk)
        self.heads.append(head)
        self.titles.add(chunk.title)

    def _insertion(self, chunk: Chunk) -> tuple[int, list[int], int]:
        """``(where chunk prints, joining the earlier group of its title, the counts of it and of every block
        after it at their new places, what the layout gains)``, remembered until the layout changes."""
        if self.inserted is not None and self.inserted[0] is chunk and self.inserted[1] == self.changes:
            return self.inserted[2]
        p = len(self.blocks)
        while self.blocks[p - 1].title != chunk.title:  # the group's last block
            p -= 1
        heads = self._heads(p, [chunk, *self.blocks[p:]])
        found = (p, heads, self.separator + sum(heads) - sum(self.heads[p:]))
        self.inserted = (chunk, self.changes, found)
        return found

    def _insert(self, chunk: Chunk) -> int:
        """Take ``chunk`` into the earlier group of its title (:meth:`_insertion`); what the layout gains."""
        p, heads, gained = self._insertion(chunk)  # what :meth:`added` counted for it, when nothing was taken since
        self.changes += 1
        self.blocks.insert(p, chunk)
        self.heads[p:] = heads
        for k in range(p, len(self.blocks)):
            self.at[id(self.blocks[k])] = k
        self.total += gained
        return gained

    def _heads(self, start: int, blocks: Sequence[Chunk]) -> list[int]:
        """The counts of ``blocks`` printed from place ``start`` (0-based) on, after the block before ``start``,
        counted at once. A block's texts are built once per previous title (at place 0), the marker's number put in."""
        texts: list[str] = []
        sizes: list[int] = []
        previous = self.blocks[start - 1].title if start else None
        for k, c in enumerate(blocks, start + 1):
            form = self._form(c, previous)
            at = [f"[{k}]{form[0][3:]}", *form[1:]] if self.renderer.citations and form[0].startswith("[0]") else form
            texts += at
            sizes.append(len(at))
            previous = c.title
        counts = iter(count_many(self.tokenizer, texts, self.counts))
        return [sum(next(counts) for _ in range(n)) for n in sizes]

    def _form(self, chunk: Chunk, previous: str | None) -> list[str]:
        """``chunk``'s texts printed at place 0 after a block titled ``previous``, built once."""
        known = self.forms.get((id(chunk), previous))
        if known is None or known[0] is not chunk:
            known = self.forms[(id(chunk), previous)] = (chunk, self.renderer.block_texts(0, chunk, previous))
        return known[1]

    def _recount(self) -> int:
        """Count every block again (the layout changed before its last block); the change in the total."""
        shown = visible(self.taken)
        self.blocks, self.heads, self.at, self.titles = [], [], {}, set()
        for c in group_by_title(shown) if self.grouped else shown:
            self._place(c, 0)
        self.heads = self._heads(0, self.blocks)
        before = self.total
        self.total = sum(self.heads) + (len(self.blocks) - 1) * self.separator if self.blocks else 0
        return self.total - before


class RenderOverhead:
    """A renderer's :meth:`~optimizer.render.Renderer.overhead` counted by ``tokenizer`` with a run's memo
    of header counts (``counts``), with the :class:`HeaderTally` that counts it as chunks are taken: the
    run context's ``render_overhead`` (:meth:`~optimizer.stage.StageContext.overhead_tally`)."""

    def __init__(self, renderer: Renderer, tokenizer: Any, counts: dict[str, int] | None = None) -> None:
        self.renderer, self.tokenizer, self.counts = renderer, tokenizer, {} if counts is None else counts

    def __call__(self, chunks: Sequence[Chunk], grouped: bool = False) -> int:
        return self.renderer.overhead(chunks, self.tokenizer, self.counts, grouped=grouped)

    def tally(self, grouped: bool = False) -> Tally:
        return HeaderTally(self.renderer, self.tokenizer, self.counts, grouped)


class Tallied:
    """An overhead function (``overhead(chunks, grouped=...)``) with the :class:`Tally` that counts it as
    chunks are taken (``tally(grouped)``): how a stage that wraps the run's overhead keeps it incremental."""

    def __init__(self, overhead: Callable[..., int], tally: Callable[[bool], Tally]) -> None:
        self.overhead, self.tally = overhead, tally

    def __call__(self, chunks: Sequence[Chunk], grouped: bool = False) -> int:
        return self.overhead(chunks, grouped=grouped)


FrameLines = tuple[tuple[tuple[int, int], int], ...]
"""A view's frame lines (:class:`ViewTally`): each line's ``(start, end)`` in its chunk and its tokens."""


def new_lines(printed: set[tuple[int, int]], lines: FrameLines, mark: bool = False) -> int:
    """The tokens of the frame ``lines`` (distinct) not ``printed`` in their block yet; ``mark``: they then are."""
    gained = sum(tokens for line, tokens in lines if line not in printed)
    if mark:
        printed.update(line for line, _ in lines)
    return gained


class ViewTally:
    """The :class:`Tally` of paragraph views merged into one block per chunk
    (:meth:`~optimizer.stages.paragraphs.ParagraphViews.context`): a view of a new chunk adds its frame
    lines and its block (``blocks()`` makes the tally of the blocks); a further view of a chunk adds a
    joiner and the frame lines its block does not print yet (a heading two views are under prints once), and
    when it starts before the block's first line, the block opens with it (``lead(block, start)`` in place of
    the block's lead). ``cost(view)``: where the view starts printing and its frame lines (:data:`FrameLines`);
    ``block(view)``: the chunk it is a view of. A view put in place of another (no caller does) takes every view again."""

    def __init__(self, blocks: Callable[[], Tally], cost: Callable[[Chunk], tuple[int, FrameLines]], block: Callable[[Chunk], Chunk],
                 lead: Callable[[Chunk, int], Chunk]) -> None:
        self.blocks, self.cost, self.block, self.lead = blocks, cost, block, lead
        self._start()

    def _start(self) -> None:
        self.base = self.blocks()
        self.views: list[Chunk] = []
        self.first: dict[str, tuple[Chunk, int, Chunk]] = {}  # chunk id -> (its block, where it starts, its lead)
        self.printed: dict[str, set[tuple[int, int]]] = {}  # chunk id -> the frame lines its block prints
        self.total = 0

    def added(self, view: Chunk) -> int:
        start, lines = self.cost(view)
        frame_tokens = new_lines(self.printed.get(view.id, set()), lines)
        if view.id not in self.first:
            return frame_tokens + self.base.added(self.lead(self.block(view), start))
        block, first, lead = self.first[view.id]
        return 1 + frame_tokens + (self.base.swapped(lead, self.lead(block, start)) if start < first else 0)

    def take(self, view: Chunk) -> int:
        gained = self._take(view)
        self.views.append(view)
        self.total += gained
        return gained

    def _take(self, view: Chunk) -> int:
        start, lines = self.cost(view)
        frame_tokens = new_lines(self.printed.setdefault(view.id, set()), lines, mark=True)
        if view.id not in self.first:
            block = self.block(view)
            lead = self.lead(block, start)
            self.first[view.id] = (block, start, lead)
            return frame_tokens + self.base.take(lead)
        block, first, lead = self.first[view.id]
        if start >= first:
            return 1 + frame_tokens
        now = self.lead(block, start)
        self.first[view.id] = (block, start, now)
        return 1 + frame_tokens + self.base.swap(lead, now)

    def swapped(self, old: Chunk, new: Chunk) -> int:
        again = ViewTally(self.blocks, self.cost, self.block, self.lead)
        return sum(again.take(v) for v in _replaced(self.views, old, new)) - self.total

    def swap(self, old: Chunk, new: Chunk) -> int:
        views, before = _replaced(self.views, old, new), self.total
        self._start()
        for v in views:
            self.take(v)
        return self.total - before
