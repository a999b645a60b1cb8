"""Paragraph views: score a long chunk's paragraphs as passages of their own, then put the chunk back together.

A retriever over split documents often hands over long chunks that hold several paragraphs
(a PDF page, a web page's sections, a 1,024-token ``SentenceSplitter`` node). The sentence
stage's passage-level signals (the chunk prior, a passage's lead, the second hop's links) then
see one big passage and lose what they are for. :class:`ParagraphViews` cuts each chunk with
two or more blank-line separated paragraphs (or one under a heading) into one *view* per paragraph: the same chunk (same
id and original text) keeping only that paragraph, so every offset stays in the chunk's own
coordinates. :meth:`ParagraphViews.merge` turns the kept views back into one chunk per input chunk,
so the renderer prints each chunk once and provenance is unchanged.

A paragraph's **heading** (see :func:`~optimizer.headings.heading_line`: a short first line such as ``Paris`` or
``## History``, or a one-line paragraph of that kind right before another; or a one-line question
right before its whole answer, as on a FAQ page, see :func:`question_line`) is the view's title
(in a chunk with a title of its own, by default ``"<chunk title>: <heading>"``, see
:func:`view_title`): scored as a title is (and read by ``documents``: views under one title are
one document), never kept as a sentence of its own, and printed with whatever of its paragraph
is kept. A Markdown ``#`` heading paragraph right before a deeper heading (``# Guide`` before ``## Install``),
or a one-line section paragraph right before a question heading its answer (``X200 drill`` before ``How long is
the warranty?``), goes with that heading's paragraph too: printed with whatever of it is kept, never alone, and
part of its view's title (``X200 drill: How long is the warranty?``). Any other one-line paragraph before a
headed one is a paragraph of its own (``Saturday 10am-4pm`` before ``Returns``).
:meth:`ParagraphViews.context` counts those printed headings in the selector's budget. A paragraph under a ``#``
heading has an outline too: the nearest ``#`` heading before it at each shallower level, though sibling sections
come between (``## [2.3.1] - 2024-05-01`` over ``### Fixed``, past ``### Added`` and its list;
:attr:`Paragraph.outline`, not part of the view's title). The selector does not count it: once the views are
chosen, :meth:`ParagraphViews.merge` prints each kept paragraph's outline lines, nearest first, as far as the
budget's leftover holds them (a long ``#`` title never takes an answer's place).

>>> from optimizer.records import Chunk
>>> c = Chunk(id="c", text="Paris\\nParis is big.\\n\\nLyon\\nLyon is old.")
>>> pv = ParagraphViews([c])
>>> [(v.title, v.text) for v in pv.views]
[('Paris', 'Paris is big.'), ('Lyon', 'Lyon is old.')]
>>> merged = pv.merge(StageOutput([pv.views[1].keep([(26, 38)])]))
>>> merged.chunks[0].id, merged.chunks[0].text
('c', 'Lyon\\nLyon is old.')
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from optimizer.headings import HEADING_WORDS, heading_line
from optimizer.headings import LIST_ITEM as _LIST_ITEM
from optimizer.headings import MARKUP as _MARKUP
from optimizer.overhead_tally import FrameLines, Tallied, Tally, ViewTally, new_lines
from optimizer.records import Chunk, indent_start
from optimizer.render import group_by_title
from optimizer.sentences import FENCE, code_blocks, is_fence_close, is_record_line, line_view, paragraph_spans, strip_range
from optimizer.stage import StageContext, StageOutput
from optimizer.stages.sentence_select import CUT_REASON
from optimizer.stages.sentence_signals import QUESTION_END
from optimizer.subtitles import track_cues
from optimizer.text import words

ABOVE_LINES = 2
"""At most this many Markdown ``#`` heading paragraphs are printed above a deeper heading (``# Guide``,
``## Install``, then ``### From source`` heading the body), counted in the view's cost; farther ones stay
paragraphs of their own (and are the paragraph's outline, :attr:`Paragraph.outline`)."""

QUESTION_WORDS = 2 * HEADING_WORDS
"""A question line that heads its answer (:func:`question_line`) has at most this many words: a longer one is prose."""


@dataclass(frozen=True)
class Paragraph:
    """One blank-line block of a chunk's original text: its ``body`` range and its ``heading`` line's, if any.

    A fenced code block is one paragraph: its ``body`` is the code, and ``fences`` are its opening
    and closing fence lines (the opening one alone when it is never closed), printed whenever a
    line of its code is kept and never sentences of their own.
    """

    body: tuple[int, int]
    heading: tuple[int, int] | None = None
    fences: tuple[tuple[int, int], ...] = ()
    above: tuple[tuple[int, int], ...] = ()  # heading paragraphs right before ``heading`` (``# Guide`` before ``## Install``), titling it too
    outline: tuple[tuple[int, int], ...] = ()  # the # headings farther up it is under (``## [2.3.1]`` past ``### Added``), shallowest first: printed if room is left

    @cached_property
    def frame(self) -> tuple[tuple[int, int], ...]:
        """The lines printed (and counted) with whatever of the body is kept: the headings above it, its heading and the fences."""
        return self.above + ((self.heading,) if self.heading else ()) + self.fences


def question_line(line: str) -> str | None:
    """The question ``line`` asks when it is a one-line paragraph right before its answer, else ``None``.

    A FAQ page's ``### How long does a refund take?`` or ``How long does a refund take?``, a blank
    line, then the answer: the question heads the answer's paragraph (it matches the query best and
    says nothing; alone, a view of its own was kept without the answer). It ends with a question mark
    (closing quotes or emphasis after it allowed), has at most :data:`QUESTION_WORDS` words, and is no
    list item or markup (as for :func:`heading_line`); Markdown's ``#`` marks are left out.

    >>> question_line("### How long does a refund take?"), question_line("**Q: Can I pay later?**")
    ('How long does a refund take?', '**Q: Can I pay later?**')
    >>> [question_line(x) for x in ("It rained.", "> Can we still make it?", "- Why?", "<dt>Why?</dt>")]
    [None, None, None, None]
    """
    title = line.strip().lstrip("#").strip()
    if not title or "\n" in title or not QUESTION_END.search(title) or FENCE.match(line) or _LIST_ITEM.match(line):
        return None
    if title.startswith(_MARKUP) or ("](" in title or "://" in title) and not line.lstrip().startswith("#"):
        return None
    return title if len(title.split()) <= QUESTION_WORDS else None


def heading_title(line: str) -> str:
    """The title a heading line gives its paragraph's view: :func:`heading_line`'s, else :func:`question_line`'s."""
    return heading_line(line) or question_line(line) or ""


def paragraphs(chunk: Chunk) -> list[tuple[int, int]]:
    """The blank-line blocks of the chunk's original text that still have kept text: ``(start, end)`` ranges.

    A block an earlier stage cut into pieces (say, near-dedupe) is still one paragraph; a view of
    it keeps only what is left (:meth:`Chunk.keep` never brings text back).
    """
    kept = chunk.kept_pieces
    return [(s, e) for s, e in paragraph_spans(chunk.original_text) if any(ps < e and s < pe for ps, pe in kept)]


TITLED = ("off", "heading", "joined")
"""What a heading does in a chunk with a title of its own: nothing (``off``: it stays text), or it
titles its paragraph's view alone (``heading``) or after the chunk's title (``joined``, the default:
the only one of the three that held on held-out data, "Issue 11, twentieth round" in BENCHMARKS.md)."""


def view_title(chunk_title: str | None, heading: str, titled: str, above: Sequence[str] = ()) -> str:
    """The title of a view under ``heading`` in a chunk titled ``chunk_title``, after the titles of the headings
    printed ``above`` it (:attr:`Paragraph.above`: ``X200 drill`` over ``How long is the warranty?``), joined as
    the chunk's title is; a part reading as the one before it is left out.

    >>> view_title(None, "Paris", "joined"), view_title("guide.md", "Paris", "joined"), view_title("Paris", "paris", "joined")
    ('Paris', 'guide.md: Paris', 'Paris')
    >>> view_title("guide.md", "Paris", "heading"), view_title("Tools", "Warranty?", "joined", ["tools", "X200 drill"])
    ('Paris', 'Tools: X200 drill: Warranty?')
    """
    parts = [*above, heading] if not chunk_title or titled == "heading" else [chunk_title, *above, heading]
    kept: list[str] = []
    for part in parts:
        if part and (not kept or words(part) != words(kept[-1])):
            kept.append(part)
    return ": ".join(kept)


def paragraph_parts(chunk: Chunk, titled: str = "joined", skip: Sequence[tuple[int, int]] = ()) -> list[Paragraph]:
    """The chunk's paragraphs with their headings (none in a titled chunk when ``titled`` is ``"off"``).

    A one-line heading paragraph heads the next paragraph when that has no heading of its own; a Markdown
    ``#`` heading right before a deeper one (``# Guide`` before ``## Install``, or before ``## Install``
    heading the next paragraph) is printed above it (:attr:`Paragraph.above`, the nearest
    :data:`ABOVE_LINES` of them), and so is a one-line heading paragraph right before a question heading its
    answer (``X200 drill`` before ``How long is the warranty?``; not one answering a one-line question before
    it, nor an answer's last line, :func:`_section_line`); both are part of its view's title (:func:`view_title`). Any other is a paragraph of its own, scored as
    one: ``Saturday 10am-4pm`` before ``Returns`` is a section's whole text, not a heading of the next one's. A
    one-line question (:func:`question_line`) heads the next paragraph when that is its whole answer (:func:`_asked`).

    A paragraph under a ``#`` heading also has an outline (:func:`_outlined`): the nearest ``#`` heading before it
    at each level above its own not in its frame, though other sections come between (``## [2.3.1] - 2024-05-01``
    over ``### Fixed`` with ``### Added`` and its list between them, as in a Keep-a-Changelog file).

    ``skip``: lines (``(start, end)`` of the original text, say page furniture: :mod:`optimizer.furniture`)
    a paragraph is read as starting after, so none of them is a heading; a paragraph of them alone is none.

    >>> t = "# Guide\\n\\nStep one. Step two.\\n\\nNotes\\nKeep it dry.\\n\\nCan I?\\n\\nYes."
    >>> [(t[slice(*p.body)], p.heading and t[slice(*p.heading)]) for p in paragraph_parts(Chunk(id="g", text=t))]
    [('Step one. Step two.', '# Guide'), ('Keep it dry.', 'Notes'), ('Yes.', 'Can I?')]
    """
    text = line_view(chunk.original_text)  # a lone \r ends a line too; offsets unchanged
    spans = _past_lines(text, paragraphs(chunk), skip)
    if chunk.title and titled == "off":
        return [Paragraph(s) for s in spans]
    groups = _record_groups(text, spans)
    split = [_split_heading(text, s, e, k in groups) for k, (s, e) in enumerate(spans)]
    roles = _roles(text, spans, split)
    parts: list[Paragraph] = []
    head: tuple[int, int] | None = None  # the paragraph heading the next one
    above: list[tuple[int, int]] = []  # the headings printed above the next one's
    for span, (own, body), role in zip(spans, split, roles):
        if role == _HEADS:
            head = span
        elif role == _ABOVE:
            above.append(span)
        else:
            parts += [Paragraph(line) for line in above[:-ABOVE_LINES]]  # farther ones stay paragraphs of their own
            fences, code = _fenced(text, *(body or span))
            parts.append(Paragraph(code or body or span, own or head, fences, tuple(above[-ABOVE_LINES:])))
            head, above = None, []
    return _outlined(text, parts)


def _outlined(text: str, parts: Sequence[Paragraph]) -> list[Paragraph]:
    """``parts`` (paragraphs of ``text``, in order), each one under a ``#`` heading also under its outline: the nearest
    ``#`` heading before it at each level above its headings' (:attr:`Paragraph.outline`, shallowest first), though
    other sections come between. At most one line per level: five.

    >>> t = "## [2.3.1]\\n\\n### Added\\n- A label.\\n\\n### Fixed\\n- A race.\\n\\nA note."
    >>> [([t[slice(*f)] for f in p.outline], [t[slice(*f)] for f in p.frame]) for p in paragraph_parts(Chunk(id="c", text=t))]
    [([], ['## [2.3.1]', '### Added']), (['## [2.3.1]'], ['### Fixed']), ([], [])]
    """
    open_: list[tuple[int, tuple[int, int]]] = []  # the # headings in force, levels rising: (level, line)
    out: list[Paragraph] = []
    for p in parts:
        line = text[slice(*p.body)]
        alone = not p.frame and "\n" not in line and heading_line(line) is not None  # a heading line as a paragraph
        chain = [p.body] if alone else [*p.above, p.heading] if p.heading else list(p.above)
        levels = [_level(text[slice(*h)]) for h in chain]
        top = min((lv for lv in levels if lv), default=0)
        outline = tuple(h for lv, h in open_ if lv < top) if top and not alone else ()
        out.append(replace(p, outline=outline) if outline else p)
        for lv, h in zip(levels, chain):
            if lv:
                while open_ and open_[-1][0] >= lv:
                    open_.pop()
                open_.append((lv, h))
    return out


_OWN, _HEADS, _ABOVE = "own", "heads", "above"
_Split = tuple[tuple[int, int] | None, tuple[int, int] | None]  # a paragraph's (heading, body): see _split_heading
_MARKDOWN_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")


def _roles(text: str, spans: Sequence[tuple[int, int]], split: Sequence[_Split]) -> list[str]:
    """What each paragraph ``spans[k]`` (``split[k]``: its :func:`_split_heading`) of ``text`` is: a paragraph of
    its own (``"own"``), the heading of the next one (``"heads"``) or printed above the next one's (``"above"``).

    Read from the last paragraph back: whether a ``#`` heading goes above the next one depends on what that does.
    """
    roles = [_OWN] * len(spans)
    asked = [False] * len(spans)
    said = Counter(text[slice(*span)].strip().lower() for span in spans)
    for k in range(len(spans) - 2, -1, -1):
        asked[k] = _asked(text, spans, split, k)
        if asked[k]:
            roles[k] = _HEADS
        elif split[k][1] is not None:
            continue
        elif split[k + 1] == (None, spans[k + 1]) and roles[k + 1] == _OWN:
            roles[k] = _HEADS  # a one-line heading paragraph heads a paragraph without a heading of its own
        elif asked[k + 1] and _section_line(text, spans, split, k, said):
            roles[k] = _ABOVE  # a section's line over a question heading its answer
        elif 0 < _level(text[slice(*spans[k])]) < _level(_next_heading(text, spans[k + 1], split[k + 1], roles[k + 1])):
            roles[k] = _ABOVE  # a # heading over a deeper one
    return roles


def _section_line(text: str, spans: Sequence[tuple[int, int]], split: Sequence[_Split], k: int, said: Counter[str]) -> bool:
    """Whether the one-line paragraph ``spans[k]``, over a question that heads its answer, is that section's line
    (``X200 drill`` over ``How long is the warranty?``): not the answer to a one-line question right before it,
    nor the last line of an answer (``The reset link expires after one hour.`` after its question and the answer's
    first paragraph) unless the question under it is asked again in the chunk (``said``: each paragraph's text,
    counted), as a product FAQ asks one question per product."""
    if k and _one_line_question(text, spans[k - 1]):
        return False
    if k >= 2 and _asked(text, spans, split, k - 2):
        return said[text[slice(*spans[k + 1])].strip().lower()] >= 2
    return True


def _one_line_question(text: str, span: tuple[int, int]) -> bool:
    """Whether the paragraph ``span`` of ``text`` is one line asking a question (:func:`question_line`)."""
    return "\n" not in text[slice(*span)] and question_line(text[slice(*span)]) is not None


def _level(line: str) -> int:
    """The level of ``line`` as a Markdown ``#`` heading (``## Install``: 2), else 0."""
    m = _MARKDOWN_HEADING.match(line)
    return len(m.group(1)) if m else 0


def _next_heading(text: str, span: tuple[int, int], split: _Split, role: str) -> str:
    """The heading line the paragraph ``span`` (``split``: its :func:`_split_heading`, ``role``: its :func:`_roles`)
    prints its text under: its first line, or itself when it heads the next paragraph or goes above its heading."""
    if split[0] is not None:
        return text[slice(*split[0])]
    return text[slice(*span)] if role != _OWN else ""


def _asked(text: str, spans: Sequence[tuple[int, int]], split: Sequence[_Split], k: int) -> bool:
    """Whether the paragraph ``spans[k]`` of ``text`` is a one-line question (:func:`question_line`) and the next
    one its whole answer, as on a FAQ page: no heading and no question on its first line, and the chunk's last
    paragraph or followed by another one-line question or a heading. An answer followed by more text may not be
    one (``Why did it fail?``, then ``See the appendix.``, then why)."""
    head, body = split[k + 1]
    if head is not None or body is None or not _one_line_question(text, spans[k]):
        return False
    newline = text.find("\n", *body)
    if QUESTION_END.search(text[body[0] : body[1] if newline < 0 else newline]):
        return False
    if k + 2 == len(spans):
        return True
    after = spans[k + 2]
    return split[k + 2] != (None, after) or _one_line_question(text, after)


def _past_lines(text: str, spans: Sequence[tuple[int, int]], skip: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` (paragraphs of ``text``) each starting after the ``skip`` lines that open it; one of them alone is left out."""
    if not skip:
        return list(spans)
    starts = {s for s, _ in skip}
    out: list[tuple[int, int]] = []
    for s, e in spans:
        while s in starts and s < e:
            newline = text.find("\n", s, e)
            s = e if newline < 0 else strip_range(text, newline + 1, e)[0]
        if s < e:
            out.append((s, e))
    return out


def _fenced(text: str, s: int, e: int) -> tuple[tuple[tuple[int, int], ...], tuple[int, int] | None]:
    """``(fence lines, code between them)`` of ``text[s:e]`` when it is a fenced code block with code
    (a paragraph of its own, see :func:`~optimizer.sentences.paragraph_spans`), else ``((), None)``."""
    if not FENCE.match(text, indent_start(text, s)):  # the fence line may be indented (in a list item)
        return (), None
    first = text.find("\n", s, e)
    if first < 0:
        return (), None
    last = text.rfind("\n", s, e) + 1
    closed = last > first + 1 and is_fence_close(text[last:e])
    last = strip_range(text, last, e)[0]
    fences = ((s, first), (last, e)) if closed else ((s, first),)
    code = strip_range(text, first + 1, last if closed else e)
    return (fences, code) if code[0] < code[1] else ((), None)


WRAP_WIDTH = 100
"""The longest line read as hard-wrapped prose (text wrapped at a fixed width, usually 72-100 characters)."""


def wraps_into(first: str, following: str) -> bool:
    """Whether ``first`` is the start of hard-wrapped prose that ``following`` continues, not a heading.

    The next line goes on in lower case, is a wrapped line (at most :data:`WRAP_WIDTH` characters;
    a ``Title\ntext`` passage's text is one long line), and ``first`` is at least half as long as it.
    A ``#`` heading is always a heading.

    >>> wraps_into("Click is a Python package for creating beautiful command line interfaces",
    ...            "in a composable way with as little code as necessary.")
    True
    >>> wraps_into("Early life", "born in Lyon, he moved to Paris in 1901."), wraps_into("## Usage", "run it like this:")
    (False, False)
    """
    first, following = first.strip(), following.strip()
    if first.startswith("#") or not following[:1].islower() or len(following) > WRAP_WIDTH:
        return False
    return 2 * len(first) >= len(following)


def _wrapped(text: str, s: int, newline: int, e: int) -> bool:
    """Whether the block ``text[s:e]``, whose first line ends at ``newline``, is hard-wrapped prose of
    three lines or more (:func:`wraps_into`). Two lines are not enough: a ``Title\ntext`` block cut
    a few words into its text by a splitter looks the same."""
    second_end = text.find("\n", newline + 1, e)
    return second_end >= 0 and bool(text[second_end:e].strip()) and wraps_into(text[s:newline], text[newline + 1 : second_end])


def _split_heading(text: str, s: int, e: int, group: bool = False) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """``(heading, body)`` of ``text[s:e]``; ``(None, None)`` when the whole block is one heading line.

    ``group``: the block is one of a chunk's groups of records (:func:`_record_groups`), its first line their
    heading even when it is a ``key: value`` record too. A subtitle track's first line (``WEBVTT``, a cue's index) heads nothing."""
    if track_cues(text, s, e):
        return None, (s, e)
    newline = text.find("\n", s, e)
    if newline < 0:
        return (None, None) if heading_line(text[s:e]) is not None else (None, (s, e))
    if heading_line(text[s:newline]) is None or _wrapped(text, s, newline, e):
        return None, (s, e)
    if not group and _records(text, s, newline, e) and _same_kind(text, s, newline, e):
        return None, (s, e)
    start = newline + 1
    while start < e and text[start].isspace():
        start += 1
    return (s, newline), (start, e)


def _records(text: str, s: int, newline: int, e: int) -> bool:
    """Whether the block ``text[s:e]``, whose first line ends at ``newline``, opens with two ``key: value``
    records (:func:`_record`: a definition list, a spec sheet): its first line is one of them, not a heading
    over the others, unless the block is one of a chunk's groups of records (:func:`_record_groups`). A ``#``
    heading is always a heading.

    >>> t = "Retention period: how long messages are kept\\nQuota: the mailbox size"
    >>> _records(t, 0, t.index("\\n"), len(t)), _records("Pointers:\\n- Docs: here", 0, 9, 22)
    (True, False)
    """
    second_end = text.find("\n", newline + 1, e)
    second = text[newline + 1 : e if second_end < 0 else second_end]
    return not text[s:newline].lstrip().startswith("#") and _record(text[s:newline]) and _record(second)


def _record_groups(text: str, spans: Sequence[tuple[int, int]]) -> set[int]:
    """The indices of the paragraphs ``spans`` of ``text`` that are groups of records under a line of their own:
    blocks opening with two ``key: value`` lines (:func:`_records`) whose other lines' keys another such block of
    the chunk repeats (at least two of them, or its only one), under a first line whose key is none of theirs
    (``Tom Lee: Head of Support`` over ``Phone:``, ``Email:``, then ``Ana Ruiz: Head of Finance`` over the same
    keys; a plan list, numbered steps). A lone block of records is a definition list (``Retention period: ...`` over ``Quota: ...``):
    its first line is one of them. Linear in the lines: a key is counted once per block.

    >>> t = "Tom Lee: Support\\nPhone: 1\\nRoom: 3\\n\\nAna Ruiz: Finance\\nPhone: 2\\nRoom: 4\\n\\nQuota: 5 GB\\nAlias: none"
    >>> sorted(_record_groups(t, paragraph_spans(t)))
    [0, 1]
    """
    keys: dict[int, tuple[str, set[str]]] = {}  # paragraph -> (its first line's key, its other lines' keys)
    blocks: dict[str, int] = {}  # a key of other lines -> the blocks holding it
    for k, (s, e) in enumerate(spans):
        newline = text.find("\n", s, e)
        if newline < 0 or not _records(text, s, newline, e):
            continue
        lines = text[newline + 1 : e].split("\n")
        keys[k] = (_key(text[s:newline]), {_key(line) for line in lines if _record(line)})
        for key in keys[k][1]:
            blocks[key] = blocks.get(key, 0) + 1
    return {k for k, (first, body) in keys.items()
            if first not in body and sum(blocks[key] > 1 for key in body) >= min(2, len(body))}


def _same_kind(text: str, s: int, newline: int, e: int) -> bool:
    """Whether the first line of the block ``text[s:e]`` (ending at ``newline``) has a value of the kind
    (:func:`_value_kind`) of at least half of the other lines' values: one more entry of a definition list
    (``Retention period: how long ...`` over ``Quota: the mailbox size``), not a record's name line over its
    fields (``Tom Lee: Head of Support`` over ``Phone: 555-0199``, ``Email: tom@acme.com``).

    >>> t = "Retention period: how long messages are kept\\nQuota: the mailbox size"
    >>> u = "Tom Lee: Head of Support\\nPhone: 555-0199\\nEmail: tom@acme.com"
    >>> _same_kind(t, 0, t.index("\\n"), len(t)), _same_kind(u, 0, u.index("\\n"), len(u))
    (True, False)
    """
    kinds = [_value_kind(line) for line in text[newline + 1 : e].split("\n") if _record(line)]
    return 2 * kinds.count(_value_kind(text[s:newline])) >= len(kinds)


def _value_kind(line: str) -> str:
    """What the value of a ``key: value`` line starts with: a lower-case letter, an upper-case one, or else."""
    value = re.split(r"[:：]", line, maxsplit=1)[-1].strip()
    return "lower" if value[:1].islower() else "upper" if value[:1].isupper() else "other"


def _key(line: str) -> str:
    """The key of a ``key: value`` record line, in lower case."""
    return re.split(r"[:：]", line, maxsplit=1)[0].strip().lower()


def _record(line: str) -> bool:
    """Whether ``line`` is a ``key: value`` record (:func:`~optimizer.sentences.is_record_line`) with a value,
    and no list item: ``Pointers to get you started:`` introduces what follows."""
    return is_record_line(line) and not line.rstrip().endswith((":", "：")) and not _LIST_ITEM.match(line)


def _lead(chunk: Chunk, start: int, memo: dict[tuple[str, int], Chunk]) -> Chunk:
    """``chunk`` (its title and frame) keeping only its line from ``start`` on: a block whose first kept
    text starts at ``start`` opens with that line, and the renderer's header looks at it."""
    if not chunk.kept_pieces or chunk.kept_pieces[0][0] >= start:
        return chunk  # the block opens where the chunk does
    if (chunk.id, start) not in memo:
        text = line_view(chunk.original_text)
        end = text.find("\n", start)
        memo[(chunk.id, start)] = chunk.keep([(start, len(text) if end < 0 else end)])
    return memo[(chunk.id, start)]


def split_parts(chunk: Chunk, titled: str = "joined", skip: Sequence[tuple[int, int]] = ()) -> list[Paragraph]:
    """:func:`paragraph_parts` of a chunk read paragraph by paragraph (two or more, or one with a heading
    or fences), else ``[]``: the chunk stays one view."""
    lines = "\n" in chunk.original_text or "\r" in chunk.original_text
    parts = paragraph_parts(chunk, titled, skip) if lines else []  # no line break: one paragraph, no heading
    return parts if len(parts) > 1 or (parts and parts[0].frame) else []


def fence_parts(chunk: Chunk) -> list[Paragraph]:
    """The chunk's fenced code blocks that still have kept text, as paragraphs without a heading: the
    code is the ``body``, the fence lines the ``fences`` (see :class:`Paragraph`). What a chunk read
    as one passage (``paragraphs: false``) prints around whatever of its code is kept.

    >>> t = "Run:\\n```sh\\nls\\npwd\\n```\\nDone."
    >>> [(t[slice(*p.body)], [t[slice(*f)] for f in p.fences]) for p in fence_parts(Chunk(id="c", text=t))]
    [('ls\\npwd', ['```sh', '```'])]
    """
    if not code_blocks(chunk.original_text):
        return []
    text = line_view(chunk.original_text)
    found = [_fenced(text, s, e) for s, e in paragraphs(chunk)]
    return [Paragraph(code, None, fences) for fences, code in found if code is not None]


def with_fences(chunk: Chunk, ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` of ``chunk``'s original text (to :meth:`Chunk.keep`), with the fence lines of its code
    blocks (:func:`fence_parts`) matched to what they keep of the code: both fence lines of a block they
    keep code of, neither of a block they keep no code of. A stage that cuts a chunk to some of its
    sentences or lines (a near-duplicate to the lines it adds, a window to what another does not say)
    so never leaves a fence without its partner, which would make the rest of the context read as code.

    >>> t = "```\\nx = 1\\nprint(x)\\n```\\nDone."
    >>> c = Chunk(id="c", text=t)
    >>> c.keep(with_fences(c, [(0, 9)])).text, c.keep(with_fences(c, [(19, 28)])).text  # the closing fence and "Done."
    ('```\\nx = 1\\n```', 'Done.')
    """
    parts = fence_parts(chunk)
    if not parts:
        return list(ranges)
    ranges = _merged(ranges)
    ends = [e for _, e in ranges]  # disjoint: the ends ascend with the starts
    add: list[tuple[int, int]] = []
    cut: list[tuple[int, int]] = []
    for p in parts:
        k = bisect.bisect_right(ends, p.body[0])  # the first range ending after the code starts
        (add if k < len(ranges) and ranges[k][0] < p.body[1] else cut).extend(p.fences)
    return _without(ranges, sorted(cut)) + add


def _merged(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` sorted, overlapping ones merged."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        elif s < e:
            out.append((s, e))
    return out


def _without(ranges: Sequence[tuple[int, int]], holes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` (sorted) less ``holes`` (sorted, disjoint)."""
    starts = [s for s, _ in holes]
    out: list[tuple[int, int]] = []
    for s, e in ranges:
        k = max(0, bisect.bisect_right(starts, s) - 1)
        while k < len(holes) and holes[k][0] < e:
            hs, he = holes[k]
            if he > s:
                if hs > s:
                    out.append((s, hs))
                s = max(s, he)
            k += 1
        if s < e:
            out.append((s, e))
    return out


def _between(chunk: Chunk, parts: Sequence[Paragraph]) -> list[tuple[int, int]]:
    """The ranges of ``chunk``'s original text outside the fence lines of ``parts``."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s, e in sorted(f for p in parts for f in p.fences):
        out.append((pos, s))
        pos = e
    return out + [(pos, len(chunk.original_text))]


def _paragraph_views(chunk: Chunk, parts: Sequence[Paragraph], titled: str) -> list[Chunk]:
    """One view of ``chunk`` per paragraph of ``parts``: its body, titled by its heading (:func:`view_title`)."""
    views: list[Chunk] = []
    text = chunk.original_text
    for p in parts:
        view = chunk.keep([p.body])
        if p.heading or p.above:
            heading = heading_title(text[slice(*p.heading)]) if p.heading else ""
            above = [heading_title(text[slice(*a)]) for a in p.above]
            view = replace(view, title=view_title(chunk.title, heading, titled, above))
        views.append(view)
    return views


class ParagraphViews:
    """One call's views of ``chunks``, built once; the selector's overhead and the merge read them.

    ``views`` is ``None`` when no chunk was split (then nothing changes): otherwise one view per
    paragraph of every chunk that has two or more, or one under a heading, and every other chunk
    as its own (only) view. Views of a chunk share its id; a view under a heading is titled by
    it (see :func:`view_title`; ``titled`` as in :data:`TITLED`) and keeps only the paragraph's
    body, so an untitled ``Title\ntext`` chunk reads as a titled one.

    ``split=False`` reads every chunk as one passage (the sentence stage's ``paragraphs: false``): a
    chunk with a fenced code block (:func:`fence_parts`) is then one view, without its fence lines,
    and those are printed (and counted) with whatever of their block's code is kept, as when
    split; ``views`` is ``None`` when no chunk has a code block.

    ``skip`` maps a chunk id to lines no paragraph of it is headed by (page furniture, see
    :func:`paragraph_parts`): the next line that reads as a heading heads it, if any.
    """

    def __init__(self, chunks: Sequence[Chunk], titled: str = "joined", split: bool = True,
                 skip: Mapping[str, Sequence[tuple[int, int]]] | None = None) -> None:
        if titled not in TITLED:
            raise ValueError(f"paragraph views: titled must be one of {', '.join(TITLED)}, got {titled!r}")
        self.given = {c.id: c for c in chunks}
        self.split = split
        self.parts: dict[str, list[Paragraph]] = {}  # the split chunks' paragraphs (their code blocks only, unsplit)
        self._starts: dict[str, list[int]] = {}  # each split chunk's paragraph body starts, in order, for bisect
        views: list[Chunk] = []
        for c in chunks:
            parts = split_parts(c, titled, (skip or {}).get(c.id, ())) if split else fence_parts(c)
            if not parts:
                views.append(c)
                continue
            self.parts[c.id] = parts
            self._starts[c.id] = [p.body[0] for p in parts]
            views += _paragraph_views(c, parts, titled) if split else [c.keep(_between(c, parts))]
        self.views: list[Chunk] | None = views if self.parts else None

    def context(self, context: StageContext) -> StageContext:
        """``context`` with an overhead that counts what taking views adds to the merged blocks.

        Views of one chunk render as that chunk's single block: its marker and title once, a
        joiner before each further view, and each view's heading and fence lines (each with its line break;
        a heading two views are under, ``## [2.3.1]`` over ``### Added`` and ``### Fixed``, once).
        The marker is counted as printed before the block's first line (the earliest of the views'
        and their frame lines': see :meth:`optimizer.render.Renderer.header`). A whole-chunk view
        (``split=False``) counts the fence lines of every code block it holds, an upper bound when
        only some of them keep code; the exact count is the merged blocks' (``render_tokens``).
        """
        cost: dict[tuple[str, tuple[int, int]], int] = {}  # (chunk id, heading span) -> its tokens and line break
        leads: dict[tuple[str, int], Chunk] = {}  # (chunk id, first kept offset) -> the chunk keeping that line only
        per_view: dict[tuple[str, tuple[tuple[int, int], ...]], tuple[int, FrameLines]] = {}  # (id, kept pieces) -> (start, frame lines)

        def line_cost(chunk_id: str, span: tuple[int, int]) -> int:
            """A frame line as printed: its indentation, its text, a line break."""
            if (chunk_id, span) not in cost:
                text = self.given[chunk_id].original_text
                cost[(chunk_id, span)] = context.count(text[indent_start(line_view(text), span[0]) : span[1]]) + 1
            return cost[(chunk_id, span)]

        def of_view(v: Chunk) -> tuple[int, FrameLines]:
            """``(where the view's block starts printing, its frame lines with their tokens)``, worked out once per view:
            the selector asks for the overhead of every chunk it tries on top of all it took, so a
            chunk of thousands of paragraphs would otherwise be scanned again per view per try."""
            key = (v.id, v.kept_pieces)
            if key not in per_view:
                frames = self._frames_of(v.id, v.kept_pieces)  # a paragraph view's pieces sit in one paragraph
                start = min([s for s, _ in v.kept_pieces[:1]] + [s for s, _ in frames], default=0)
                per_view[key] = (start, tuple((span, line_cost(v.id, span)) for span in frames))
            return per_view[key]

        def overhead(taken: Sequence[Chunk], grouped: bool = False) -> int:
            blocks: dict[str, Chunk] = {}
            first: dict[str, int] = {}
            printed: dict[str, set[tuple[int, int]]] = {}  # each block's frame lines counted so far
            extra = 0
            for v in taken:
                start, lines = of_view(v)
                if v.id in blocks:
                    extra += 1
                    first[v.id] = min(first[v.id], start)
                else:
                    blocks[v.id] = self.given.get(v.id, v)
                    first[v.id] = start
                extra += new_lines(printed.setdefault(v.id, set()), lines, mark=True)
            return context.overhead([_lead(c, first[i], leads) for i, c in blocks.items()], grouped=grouped) + extra

        def rendered(taken: Sequence[Chunk], grouped: bool = False) -> int:
            return context.rendered(self._merged(taken), grouped=grouped) or 0

        def tally(grouped: bool = False) -> Tally:  # what a view taken after the others adds, counted for it alone
            return ViewTally(lambda: context.overhead_tally(grouped=grouped), of_view,
                             lambda v: self.given.get(v.id, v), lambda c, start: _lead(c, start, leads))

        return replace(context, render_overhead=Tallied(overhead, tally), render_tokens=rendered if context.render_tokens else None)

    def merge(self, out: StageOutput, grouped: bool = False, context: StageContext | None = None) -> StageOutput:
        """The kept views of ``out`` as one chunk per input chunk (first-kept order, best view's relevance).

        ``grouped``: then the chunks that share a title follow the first of them
        (:func:`optimizer.render.group_by_title`), the layout the selector counted.

        ``context`` (the run's, not :meth:`context`'s): the kept paragraphs' outline lines (:attr:`Paragraph.outline`)
        are printed as far as its budget holds them, counted as rendered (:meth:`_with_outlines`); without it, none.

        A kept paragraph brings its heading line along. A chunk some of whose views were kept
        is not reported dropped; one that lost text gets the sentence stage's reason for a
        partly kept chunk, and its ranges removed as repeats keep theirs (``range_reasons``).
        """
        merged = self._merged(out.chunks)
        if context is not None:
            merged = self._with_outlines(merged, context, grouped)
        kept = {m.id for m in merged}
        reasons = {i: r for i, r in out.reasons.items() if i not in kept}
        for m in merged:
            if m.kept_pieces != self.given[m.id].kept_pieces:
                reasons[m.id] = CUT_REASON
        note = "paragraph_views" if self.split else "fence_views"
        return StageOutput(group_by_title(merged) if grouped else merged, reasons=reasons, notes={**out.notes, note: True},
                           range_reasons={i: r for i, r in out.range_reasons.items() if r and i in kept})

    def _merged(self, views: Sequence[Chunk]) -> list[Chunk]:
        """Kept ``views`` as one chunk per input chunk, in first-kept order, with their frame lines and best relevance."""
        pieces: dict[str, list[tuple[int, int]]] = {}
        relevance: dict[str, float | None] = {}
        for v in views:
            pieces.setdefault(v.id, []).extend(v.kept_pieces)
            best = relevance.get(v.id)
            relevance[v.id] = v.relevance if best is None or (v.relevance is not None and v.relevance > best) else best
        return [replace(self.given[i].keep([*p, *self._frames_of(i, p)]), relevance=relevance[i]) for i, p in pieces.items()]

    def _with_outlines(self, merged: list[Chunk], context: StageContext, grouped: bool) -> list[Chunk]:
        """``merged`` (the kept blocks) with their kept paragraphs' outline lines, the nearest level first (every
        paragraph's nearest, then every one's next): each one printed when the blocks with it still render within
        ``context.budget`` (all of them without a budget), a paragraph's farther ones only after its nearer ones.
        A line two paragraphs are under, or already kept, is printed once."""
        chains = {m.id: self._outlines_of(m.id, m.kept_pieces) for m in merged}
        if not any(chains.values()):
            return merged
        blocks = {m.id: m for m in merged}
        added: dict[str, list[tuple[int, int]]] = {}
        stopped: set[tuple[str, int]] = set()  # (chunk id, paragraph) whose nearer line did not fit
        for depth in range(max(len(c) for ps in chains.values() for c in ps)):
            for chunk_id, paragraphs in chains.items():
                for k, chain in enumerate(paragraphs):
                    if depth >= len(chain) or (chunk_id, k) in stopped:
                        continue
                    context.check_deadline("printing the kept paragraphs' outlines")
                    trial = self._keeping(blocks[chunk_id], chain[depth], added.get(chunk_id, []))
                    if trial is None:  # kept already (or removed by an earlier stage): nothing to print
                        continue
                    if _fits([trial if m.id == chunk_id else blocks[m.id] for m in merged], context, grouped):
                        blocks[chunk_id] = trial
                        added.setdefault(chunk_id, []).append(chain[depth])
                    else:
                        stopped.add((chunk_id, k))
        return [blocks[m.id] for m in merged]

    def _keeping(self, block: Chunk, line: tuple[int, int], added: Sequence[tuple[int, int]]) -> Chunk | None:
        """``block`` (a merged chunk) keeping ``line`` of its original text too, or None when that adds nothing."""
        if any(s <= line[0] and line[1] <= e for s, e in block.kept_pieces):
            return None
        given = self.given[block.id]
        trial = replace(given.keep([*block.kept_pieces, *added, line]), relevance=block.relevance)
        return None if trial.kept_pieces == block.kept_pieces else trial

    def _hit(self, chunk_id: str, pieces: Sequence[tuple[int, int]]) -> list[int]:
        """The indices (in order) of the paragraphs of ``chunk_id`` that ``pieces`` fall in.

        The bodies are sorted and disjoint, so each piece finds its paragraph by bisection: a
        scan of every paragraph per piece made a chunk of thousands of paragraphs quadratic.
        """
        parts, starts = self.parts.get(chunk_id, []), self._starts.get(chunk_id, [])
        if not parts:
            return []
        text = self.given[chunk_id].original_text
        hit: set[int] = set()
        for s, e in pieces:
            while s < e and text[s] in " \t":  # a first piece may open with its line's indentation (with_first_indent)
                s += 1
            k = bisect.bisect_right(starts, s) - 1
            if k >= 0 and s < parts[k].body[1]:
                hit.add(k)
        return sorted(hit)

    def _frames_of(self, chunk_id: str, pieces: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """The heading and fence lines (:attr:`Paragraph.frame`) of the paragraphs ``pieces`` fall in, in paragraph order."""
        parts = self.parts.get(chunk_id, [])
        return list(dict.fromkeys(span for k in self._hit(chunk_id, pieces) for span in parts[k].frame))  # a line two paragraphs share, once

    def _outlines_of(self, chunk_id: str, pieces: Sequence[tuple[int, int]]) -> list[tuple[tuple[int, int], ...]]:
        """The outlines (:attr:`Paragraph.outline`, nearest level first) of the paragraphs ``pieces`` fall in that have one."""
        parts = self.parts.get(chunk_id, [])
        return [parts[k].outline[::-1] for k in self._hit(chunk_id, pieces) if parts[k].outline]


def _fits(blocks: Sequence[Chunk], context: StageContext, grouped: bool) -> bool:
    """Whether ``blocks`` (in the order the packer renders them when ``grouped``, see :meth:`ParagraphViews.merge`)
    render within ``context.budget``: counted as rendered, or as the overhead plus each text's count (an upper
    bound) without a renderer; always without a budget."""
    if context.budget is None:
        return True
    layout = group_by_title(list(blocks)) if grouped else list(blocks)
    exact = context.rendered(layout, grouped=grouped)
    if exact is None:
        exact = context.overhead(layout, grouped=grouped) + sum(context.count(c.text) for c in layout)
    return exact <= context.budget


def paragraph_views(chunks: Sequence[Chunk], titled: str = "joined") -> list[Chunk] | None:
    """:attr:`ParagraphViews.views` of ``chunks``: their views, or ``None`` when no chunk is split."""
    return ParagraphViews(chunks, titled).views
