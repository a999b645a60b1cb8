"""The records that flow through ragtrim: :class:`Chunk`, :class:`Span`, the trace and :class:`Result`.

All records are frozen dataclasses. A stage never edits a chunk; it returns a new one made
with :func:`dataclasses.replace` or :meth:`Chunk.keep`.

Provenance works through *pieces*: a chunk remembers the original text it came from
(``source``) and which character ranges of it are still kept (``pieces``). ``text`` is
always the kept pieces joined by a single space (a line break where a piece ends or starts a
line, or where a blank line or a change of quote depth lies between, see :func:`piece_joiner`),
so any stage can read ``chunk.text`` as plain text, while the renderer can map every kept
character back to ``(chunk_id, start, end)`` in the caller's original chunk text.

>>> c = Chunk(id="a", text="One. Two. Three.")
>>> c.keep([(0, 4), (10, 16)]).text
'One. Three.'
>>> c.keep([(0, 4), (10, 16)]).pieces
((0, 4), (10, 16))
"""

from __future__ import annotations

import marshal
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any

from optimizer.subtitles import starts_cue
from optimizer.wrapped_lines import quote_marks

_LINE_BREAK = re.compile(r"[\n\r]")
_LINE_END = re.compile(r"\r\n|\n|\r")
_BLANK_GAP = re.compile(r"\n[ \t\r\f\v]*\n")
_QUOTED_BLANK_GAP = re.compile(r"(?:\r?\n|\r(?!\n))[ \t\f\v]*(?:>[ \t\f\v]*)*[\r\n]")
"""A blank line, or one of nothing but quote marks (a blank line inside a quoted message); a lone ``\r`` ends a line too."""

PIECE_JOINER = " "
"""What joins two kept pieces of a chunk, unless one of them sits at a line's edge (see :func:`piece_joiner`)."""
LINE_JOINER = "\n"
"""What joins two kept pieces when the first ends its line or the second starts one in the original
(with that line's indentation, see :func:`piece_joiner`)."""


def ends_line(text: str, i: int) -> bool:
    r"""Whether ``text[i]`` ends a line: a ``\n``, or a lone ``\r`` (an old Mac line end, as in
    :func:`optimizer.sentences.line_view`); the ``\r`` of ``\r\n`` does not, its ``\n`` does.

    >>> [ends_line("a\rb\r\nc", i) for i in range(6)]
    [False, True, False, False, True, False]
    """
    c = text[i]
    return c == "\n" or (c == "\r" and text[i + 1 : i + 2] != "\n")


def is_indentation(c: str) -> bool:
    r"""Whether character ``c`` is indentation: white space (``str.isspace``: a space, a tab, NBSP, U+3000...) that
    is no line end. The one set :func:`indent_start` and the renderer (:func:`optimizer.render.indented_lines`) read.

    >>> [is_indentation(c) for c in (" ", "\t", "\xa0", "\u3000", "\n", "\r", "x")]
    [True, True, True, True, False, False, False]
    """
    return c.isspace() and c not in "\n\r"


def indent_start(text: str, pos: int) -> int:
    r"""Where the line holding ``pos`` starts when only white space precedes ``pos`` on it, else ``pos``.

    A line ends at ``\n`` or at a lone ``\r`` (:func:`ends_line`), as where the text is split.

    >>> t = "def f():\n    return 1"
    >>> indent_start(t, t.index("return")), indent_start(t, t.index("1")), indent_start("a:\r  b", 5)
    (9, 20, 3)
    """
    if not 0 <= pos <= len(text):  # out of range: the plain definition (rfind clamps, a negative pos counts from the end)
        from optimizer.sentences import line_view  # (sentences imports nothing of records; rare, so imported here)

        line = line_view(text).rfind("\n", 0, pos) + 1
        return line if not text[line:pos].strip() else pos
    # Walk back over the white space before pos only (never the whole line: once per sentence of a
    # long line without line breaks, that was quadratic).
    line = pos
    while line and not ends_line(text, line - 1) and text[line - 1].isspace():
        line -= 1
    return line if not line or ends_line(text, line - 1) else pos


def piece_joiner(original: str, end: int, start: int) -> str:
    r"""What joins the kept piece ending at ``end`` of ``original`` to the next one, starting at ``start``.

    A line break when the first piece ends its line or the second starts one in the original
    text, so a heading, a list item or a table row kept with text that did not follow it keeps
    a line of its own, and when a blank line or a change of quote depth (``>``) lies between them;
    a space otherwise (two parts of one paragraph, wrapped or not). When the second piece starts
    its line, the line's indentation comes along (a line of code or a nested list item keeps its
    depth); when it starts inside a quoted line after a line break, that line's quote marks do
    (a sentence of a quoted message is never printed as the reply's).

    >>> t = "## Install\n\nRun it. It needs Python."
    >>> piece_joiner(t, 10, 20), piece_joiner(t, 19, 20), piece_joiner("a b. c\nd", 1, 5)
    ('\n', ' ', ' ')
    >>> piece_joiner("def f():\n    x = 1\n    return x", 18, 23)
    '\n    '

    >>> t = "Yes, approved. We ship Friday.\n\n> On Mon Ann wrote:\n> Stock is low. Can we cancel?"
    >>> piece_joiner(t, 14, t.index("Can")), piece_joiner("A. B.\n\nC. D.", 2, 10)
    ('\n> ', '\n')

    A lone ``\r`` ends a line here too (:func:`ends_line`): ``piece_joiner("a.\rb", 2, 3)`` is ``'\n'``.

    A subtitle cue (:func:`optimizer.subtitles.starts_cue`) after a blank line is set off by one, as in the file:
    a reader of the context sees where one cue ends and the next begins.

    >>> t = "1\n00:01.000 --> 00:02.000\nHi.\n\n2\n00:03.000 --> 00:04.000\nBye."
    >>> piece_joiner(t, 29, 31)
    '\n\n'
    """
    line = indent_start(original, start)
    if end < line and ends_line(original, line - 1):  # the second piece starts a line after the first
        if _BLANK_GAP.search(original, end, line) and starts_cue(original, line):
            return LINE_JOINER + LINE_JOINER + original[line:start]
        return LINE_JOINER + original[line:start]
    after = _LINE_BREAK.search(original, end, start)  # the "\r" of a "\r\n" is white space before its "\n"
    if after is None or (original[end : after.start()].strip() and not _sets_apart(original, end, start)):
        return PIECE_JOINER
    return LINE_JOINER + _quote_marks_before(original, start)


def _line_start(text: str, pos: int) -> int:
    """Where the line holding ``pos`` starts (after a ``\n`` or a lone ``\r``)."""
    return max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1


def _sets_apart(original: str, end: int, start: int) -> bool:
    """Whether a blank line (a quoted one too) or a change of quote depth (:func:`~optimizer.wrapped_lines.quote_marks`)
    lies between the piece ending at ``end`` and the one starting at ``start``: they are parts of two paragraphs or
    two messages, not of one wrapped paragraph."""
    if _QUOTED_BLANK_GAP.search(original, end, start):
        return True
    depth = quote_marks(original, _line_start(original, end))[0]
    return any(quote_marks(original, m.end())[0] != depth for m in _LINE_END.finditer(original, end, start))


def _quote_marks_before(original: str, start: int) -> str:
    """The quote marks (with any indentation before them) of the line ``start`` is in, up to ``start``; ``""`` when
    it is no quoted line."""
    line = _line_start(original, start)
    depth, marks_end = quote_marks(original, line)
    return original[line : min(marks_end, start)] if depth else ""


def with_first_indent(original: str, pieces: Sequence[tuple[int, int]], text: str) -> tuple[tuple[tuple[int, int], ...], str]:
    r"""``(pieces, text)`` with the first piece moved back to its line's start when only white space
    (indentation) precedes it there and ``text`` (the join of ``pieces``) holds more than one line.

    :func:`piece_joiner` gives each later piece that starts a line its indentation; the first one
    has no joiner before it, so without this a chunk cut mid-function would print its first line at
    column 0 and its next lines at theirs (``raise`` read as inside the ``if`` above it). The
    indentation becomes part of the piece, so provenance spans cover what is printed. A single kept
    line keeps none: its indentation is relative to no other line shown, and a prose chunk whose
    text opens with stray spaces is cut as before.

    >>> t = "    if x:\n        y()\n    z()"
    >>> with_first_indent(t, [(4, 9), (26, 29)], "if x:\n    z()")
    (((0, 9), (26, 29)), '    if x:\n    z()')
    >>> with_first_indent(t, [(4, 9)], "if x:")
    (((4, 9),), 'if x:')
    """
    pieces = tuple(pieces)
    if not pieces or ("\n" not in text and "\r" not in text):  # one line (a "\r" alone ends one too)
        return pieces, text
    start, end = pieces[0]
    line = indent_start(original, start)
    if line == start:
        return pieces, text
    return ((line, end), *pieces[1:]), original[line:start] + text


def join_pieces(original: str, pieces: Sequence[tuple[int, int]]) -> str:
    r"""The text of ``pieces`` (sorted, disjoint ranges) of ``original``, each gap joined by :func:`piece_joiner`.

    >>> join_pieces("Intro\n- a\n- b\n- c", [(0, 5), (10, 13), (14, 17)])
    'Intro\n- b\n- c'
    """
    out: list[str] = []
    for i, (s, e) in enumerate(pieces):
        if i:
            out.append(piece_joiner(original, pieces[i - 1][1], s))
        out.append(original[s:e])
    return "".join(out)


class FrozenDict(dict):
    """A read-only dict: JSON-serializable, picklable and deep-copyable, unlike MappingProxyType."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "chunk metadata is read-only; make a new chunk with "
            "dataclasses.replace(chunk, metadata={**chunk.metadata, 'key': value})"
        )

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


SURROGATE_FIX = "text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')"
"""How a caller repairs text holding lone UTF-16 surrogates (split pairs rejoin, a lone half becomes U+FFFD)."""


def lone_surrogate(text: str) -> int | None:
    r"""The position of the first lone UTF-16 surrogate in ``text``, or None.

    A lone surrogate (``"\ud800"``, half of an emoji a UTF-16 chunker split) has no UTF-8
    form, so no tokenizer or sentence splitter can read it.

    >>> lone_surrogate("Paris \ud800 capital"), lone_surrogate("Paris 😀 capital")
    (6, None)
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")  # fails on a surrogate only; faster than a regex scan
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_no_surrogate(text: str, what: str, fix: str = SURROGATE_FIX) -> None:
    r"""Raise ValueError naming ``what``, the position and ``fix`` when ``text`` holds a lone surrogate.

    >>> check_no_surrogate("cap \udc80", "query", fix="query.encode(...)")
    Traceback (most recent call last):
    ...
    ValueError: query has a lone UTF-16 surrogate '\udc80' at character 4 (half of a pair, e.g. an emoji split by a UTF-16 chunker), which no tokenizer can read; repair it first, e.g. query.encode(...) (rejoins split pairs, turns a lone half into U+FFFD)
    """
    pos = lone_surrogate(text)
    if pos is not None:
        raise ValueError(
            f"{what} has a lone UTF-16 surrogate {text[pos]!r} at character {pos} (half of a pair, e.g. an emoji split "
            f"by a UTF-16 chunker), which no tokenizer can read; repair it first, e.g. {fix} "
            "(rejoins split pairs, turns a lone half into U+FFFD)"
        )


def _check_score(chunk_id: str, name: str, value: Any) -> Any:
    """``value`` if it is a finite number (a numpy scalar becomes a float), or None; bools, NaN and infinities raise."""
    if value is None:
        return None
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        raise TypeError(f"chunk {chunk_id!r}: {name} must be a number or None, got the bool {value!r}; pass a number such as 0.8")
    try:
        number = float(value)  # numpy scalars too
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"chunk {chunk_id!r}: {name} must be a number or None, got {value!r:.80}") from None
    if math.isnan(number):
        raise ValueError(f"chunk {chunk_id!r}: {name} is NaN; pass None for 'no score' or fix the retriever's scores")
    if math.isinf(number):
        fix = (
            "pass None for 'no score' or fix the retriever's scores (e.g. clip them to a finite range)"
            if name == "score"
            else "the stage that set it must give finite scores (drop the chunk instead of scoring it -inf)"
        )
        raise ValueError(f"chunk {chunk_id!r}: {name} is {value!r}, scores must be finite; {fix}")
    return value if isinstance(value, (int, float)) else number


_SCALARS = frozenset({bool, int, float, type(None)})


def _check_metadata_surrogates(chunk_id: str, metadata: Mapping[str, Any]) -> None:
    r"""Raise ValueError naming the key path when a string in ``metadata`` (a key or a value, at any depth) holds a lone surrogate.

    Metadata is carried through to the JSON the CLI and the gateway write, which cannot encode
    one. Only strings are read (in mappings, lists, tuples and sets; anything else is left alone).

    >>> _check_metadata_surrogates("a", {"src": {"tags": ["ok", "x\udc80"]}})
    Traceback (most recent call last):
    ...
    ValueError: chunk 'a': metadata['src']['tags'][1] has a lone UTF-16 surrogate '\udc80' at character 1 (half of a pair, e.g. an emoji split by a UTF-16 chunker), which no tokenizer can read; repair it first, e.g. value.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace') (rejoins split pairs, turns a lone half into U+FFFD)
    """
    for k, v in metadata.items():  # the usual flat dict of ASCII strings and numbers, without the walk below
        if type(k) is not str or not k.isascii() or not (type(v) in _SCALARS or type(v) is str and v.isascii()):
            break
    else:
        return
    containers = (Mapping, list, tuple, set, frozenset)
    stack: list[tuple[tuple[Any, ...], Any]] = [((), metadata)]
    seen = {id(metadata)}  # a container met twice (or holding itself) is read once
    while stack:  # one isascii() per string; only a string that is not ASCII is encoded
        path, value = stack.pop()
        pairs = value.items() if isinstance(value, Mapping) else enumerate(value)
        for k, v in pairs:
            if isinstance(k, str) and not k.isascii():
                _check_metadata_string(chunk_id, path, k, key=True)
            if isinstance(v, str):
                if not v.isascii():
                    _check_metadata_string(chunk_id, (*path, k), v)
            elif isinstance(v, containers) and id(v) not in seen:
                seen.add(id(v))
                stack.append(((*path, k), v))


def _check_metadata_string(chunk_id: str, path: tuple[Any, ...], text: str, *, key: bool = False) -> None:
    where = "metadata" + "".join(f"[{k!r}]" for k in path)
    fix = SURROGATE_FIX.replace("text", "key" if key else "value", 1)
    check_no_surrogate(text, f"chunk {chunk_id!r}: " + (f"a key of {where}" if key else where), fix=fix)


def read_only_array(value: Any) -> Any:
    """``value`` as a read-only view when it is a writable numpy array; anything else (a list, a read-only array) as it is.

    The view shares the array's data (nothing is copied) and the caller's own array keeps its flag,
    so an in-place write through the view (``chunk.embedding /= norm``) raises before it changes
    anything, while the caller can still write to its array.

    >>> import numpy as np
    >>> given = np.array([3.0, 4.0])
    >>> view = read_only_array(given)
    >>> view.flags.writeable, given.flags.writeable, np.shares_memory(view, given), read_only_array(view) is view
    (False, True, True, True)
    >>> read_only_array([3.0, 4.0])
    [3.0, 4.0]
    """
    np = sys.modules.get("numpy")  # no numpy loaded: the value cannot be an array
    if np is None or not isinstance(value, np.ndarray) or not value.flags.writeable:
        return value
    view = value.view()
    view.flags.writeable = False
    return view


def _freeze_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return FrozenDict()
    if isinstance(value, FrozenDict):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping (dict), got {type(value).__name__}: {value!r}")
    return FrozenDict(value)


@dataclass(frozen=True)
class Chunk:
    """One retrieved passage.

    Parameters
    ----------
    id:
        Unique within one call. Kept exactly as given.
    text:
        The passage text. For a chunk a stage has cut, the kept pieces joined by a space (or a line break, see :func:`piece_joiner`).
    title:
        Optional title, rendered once above the text.
    score:
        The caller's (retriever's) score. Stages never change it. A run reads it one way in
        every step (:mod:`optimizer.score_reading`): a similarity (higher is better), or a
        distance when the scores rise along the order the chunks are handed in
        (``compress-sentences`` setting ``retriever``: ``"similarity"`` or ``"distance"`` to say
        so, ``"ignore"`` to leave it out of that stage's chunk prior). Dedupers keep the best
        copy by it, the packer fills by it, the sentence stage adds it to its chunk prior; a
        chunk without one counts as the worst given score.
    metadata:
        Anything the caller attached; carried through untouched (stored read-only).
    embedding:
        Optional vector the retriever already computed; dense stages reuse it. A numpy array is
        held as a read-only view of the caller's (no copy; the caller's array stays writable), so
        ``chunk.embedding /= norm`` raises instead of changing the caller's vector. Lists and
        other array-likes are held as given.
    relevance:
        The latest score a ragtrim rerank stage gave; ``None`` until one runs.
    source:
        The caller's original text. ``None`` means ``text`` is the original.
    pieces:
        Kept ``(start, end)`` character ranges of the original text, in order.
        ``None`` means the whole original text.

    >>> chunk = Chunk(id="a", text="Paris is the capital of France. It is big.", title="Paris", score=0.8)
    >>> cut = chunk.keep([(0, 31)])         # what a stage does: a new chunk, the original untouched
    >>> cut.text, cut.kept_pieces, cut.is_cut, chunk.is_cut
    ('Paris is the capital of France.', ((0, 31),), True, False)
    >>> cut.original_text == chunk.text
    True
    """

    id: str
    text: str
    title: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)
    embedding: Any = field(default=None, compare=False, hash=False, repr=False)
    relevance: float | None = None
    source: str | None = None
    pieces: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            if isinstance(self.id, int) and not isinstance(self.id, bool):
                object.__setattr__(self, "id", str(self.id))
            else:
                raise TypeError(f"chunk id must be a string, got {type(self.id).__name__}: {self.id!r}")
        if not isinstance(self.text, str):
            raise TypeError(
                f"chunk {self.id!r}: text must be a string, got {type(self.text).__name__}; "
                "convert it to text first (images and tables need a text rendering)"
            )
        if self.title is not None and not isinstance(self.title, str):
            raise TypeError(f"chunk {self.id!r}: title must be a string or None, got {self.title!r}")
        check_no_surrogate(self.id, f"chunk id {self.id!r}", fix=SURROGATE_FIX.replace("text", "id", 1))
        check_no_surrogate(self.text, f"chunk {self.id!r}: text")
        if self.title is not None:
            check_no_surrogate(self.title, f"chunk {self.id!r}: title", fix=SURROGATE_FIX.replace("text", "title", 1))
        for name in ("score", "relevance"):
            value = getattr(self, name)
            checked = _check_score(self.id, name, value)
            if checked is not value:
                object.__setattr__(self, name, checked)
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))
        if self.metadata:
            _check_metadata_surrogates(self.id, self.metadata)
        if self.pieces is not None:
            object.__setattr__(self, "pieces", tuple((int(s), int(e)) for s, e in self.pieces))
        if self.embedding is not None:
            embedding = read_only_array(self.embedding)
            if embedding is not self.embedding:
                object.__setattr__(self, "embedding", embedding)

    def __setstate__(self, state: Any) -> None:
        """Unpickling and :mod:`copy` (which skip ``__post_init__``): the fields as pickled, the embedding read-only again.

        An unpickled or deep-copied array is a new, writable one.
        """
        fields, slots = state if isinstance(state, tuple) else (state, None)
        for name, value in {**(fields or {}), **(slots or {})}.items():
            object.__setattr__(self, name, value)
        embedding = getattr(self, "embedding", None)
        if embedding is not None:
            object.__setattr__(self, "embedding", read_only_array(embedding))

    # -- provenance -------------------------------------------------------------------
    @property
    def original_text(self) -> str:
        """The caller's text before any stage cut it."""
        return self.source if self.source is not None else self.text

    @property
    def kept_pieces(self) -> tuple[tuple[int, int], ...]:
        """Kept ranges of :attr:`original_text`; the whole text when nothing was cut."""
        if self.pieces is not None:
            return self.pieces
        return ((0, len(self.text)),) if self.text else ()

    @property
    def is_cut(self) -> bool:
        """True when a stage removed part of the original text."""
        return self.pieces is not None and self.pieces != ((0, len(self.original_text)),)

    def keep(self, ranges: Iterable[tuple[int, int]]) -> Chunk:
        """Return a copy that keeps only ``ranges`` of the **original** text.

        Ranges are clipped to what is still kept (a stage cannot bring back text an
        earlier stage removed), sorted, stripped of surrounding white space and merged
        when only white space separates them; when the kept text holds more than one
        line, the first piece keeps its line's indentation (:func:`with_first_indent`).
        Keeping nothing gives an empty text.

        >>> Chunk(id="x", text="a b c").keep([(4, 5), (0, 1)]).text
        'a c'
        """
        original = self.original_text
        n = len(original)
        current = self.kept_pieces
        clipped: list[tuple[int, int]] = []
        for s, e in ranges:  # never resurrect text an earlier stage removed
            s, e = max(0, int(s)), min(n, int(e))
            for ps, pe in current:
                lo, hi = max(s, ps), min(e, pe)
                if lo < hi:
                    clipped.append((lo, hi))
        cleaned: list[tuple[int, int]] = []
        for start, end in sorted(clipped):
            while start < end and original[start].isspace():
                start += 1
            while end > start and original[end - 1].isspace():
                end -= 1
            if start >= end:
                continue
            if cleaned and start <= cleaned[-1][1]:
                cleaned[-1] = (cleaned[-1][0], max(cleaned[-1][1], end))
            elif cleaned and original[cleaned[-1][1] : start].isspace():
                cleaned[-1] = (cleaned[-1][0], end)
            else:
                cleaned.append((start, end))
        pieces, text = with_first_indent(original, cleaned, join_pieces(original, cleaned))
        return replace(self, text=text, source=original, pieces=pieces)

    def keep_text_range(self, start: int, end: int) -> Chunk:
        """Keep ``text[start:end]`` of the *current* text (mapped back to the original)."""
        return self.keep(self.map_range(start, end))

    def map_range(self, start: int, end: int) -> list[tuple[int, int]]:
        """Map a range of the current ``text`` to ranges of the original text."""
        out: list[tuple[int, int]] = []
        offset = 0
        pieces = self.kept_pieces
        for k, (s, e) in enumerate(pieces):
            if k:
                offset += len(piece_joiner(self.original_text, pieces[k - 1][1], s))
            length = e - s
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                out.append((s + lo - offset, s + hi - offset))
            offset += length
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the embedding is left out)."""
        out: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.title is not None:
            out["title"] = self.title
        if self.score is not None:
            out["score"] = self.score
        if self.relevance is not None:
            out["relevance"] = self.relevance
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.is_cut:
            out["pieces"] = [list(p) for p in self.kept_pieces]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chunk:
        """Build a chunk from a dataset/JSONL object (``id``, ``text``, ``title``, ``score``, ``metadata``).

        Unknown keys other than ``metadata`` are kept in metadata (e.g. ``gold``).

        >>> Chunk.from_dict({"id": "1", "text": "hi", "gold": True}).metadata["gold"]
        True
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a chunk must be an object with 'id' and 'text', got {type(data).__name__}: {data!r:.80}")
        missing = [k for k in ("id", "text") if k not in data]
        if missing:
            raise ValueError(f"chunk object is missing {', '.join(repr(m) for m in missing)}: {dict(data)!r:.120}")
        known = {"id", "text", "title", "score", "metadata", "embedding"}
        given = data.get("metadata")
        if given is not None and not isinstance(given, Mapping):
            raise TypeError(
                f"chunk {data['id']!r}: metadata must be an object (dict) of key: value, got {type(given).__name__}: "
                f"{given!r:.80}; put a plain value under a key, e.g. {{\"metadata\": {{\"note\": ...}}}}, or leave metadata out"
            )
        metadata = dict(given or {})
        for key, value in data.items():
            if key not in known:
                metadata.setdefault(key, value)
        return cls(
            id=data["id"],
            text=data["text"],
            title=data.get("title"),
            score=data.get("score"),
            metadata=metadata,
            embedding=data.get("embedding"),
        )


def kept_problem(source: Chunk, chunk: Chunk) -> str:
    """What makes ``chunk`` not a kept part of ``source`` (the same chunk before a stage ran), or ``""``.

    A stage may drop a chunk, cut it (:meth:`Chunk.keep`) and set its ``relevance``; the
    original text, the kept pieces (in order, inside that text, ``text`` their join) and
    the caller's ``score``, ``title`` and ``metadata`` must stay as they were.

    >>> a = Chunk(id="a", text="Paris is big. It is old.", title="Paris")
    >>> kept_problem(a, a.keep([(0, 13)])), kept_problem(a, replace(a, relevance=0.5))
    ('', '')
    >>> kept_problem(a, replace(a, text="Berlin is big."))
    "original text changed ('Paris is big. It is old.' became 'Berlin is big.')"
    >>> kept_problem(a, replace(a, pieces=((0, 5000),)))
    'kept piece (0, 5000) is outside the original text of 24 characters'
    >>> kept_problem(a, replace(a, title="X"))
    "title changed ('Paris' became 'X')"
    """
    original = source.original_text
    if chunk.original_text != original:
        return f"original text changed ({_shown(original)} became {_shown(chunk.original_text)})"
    for name in ("score", "title", "metadata"):
        before, after = getattr(source, name), getattr(chunk, name)
        if after is not before and after != before:
            return f"{name} changed ({_shown(before)} became {_shown(after)})"
    if chunk.text == source.text and chunk.pieces == source.pieces:
        return ""  # as ``source`` was: nothing to join again
    return _pieces_problem(original, chunk)


def _pieces_problem(original: str, chunk: Chunk) -> str:
    """What is wrong with ``chunk``'s pieces of ``original`` and its text, or ``""``."""
    end = 0
    for s, e in chunk.kept_pieces:
        if not 0 <= s <= e <= len(original):
            return f"kept piece {(s, e)} is outside the original text of {len(original)} characters"
        if s < end:
            return f"kept piece {(s, e)} overlaps or precedes the one before it (pieces must be sorted and disjoint)"
        end = e
    if chunk.text != join_pieces(original, chunk.kept_pieces):
        return f"text {_shown(chunk.text)} is not the join of its kept pieces {_shown(chunk.kept_pieces)} of the original text"
    return ""


STATE_FIELDS = ("id", "text", "title", "score", "relevance", "source", "pieces", "metadata", "embedding")
"""What :func:`chunk_states` records of a chunk, in its order."""


def chunk_states(chunks: Sequence[Chunk], content: Any = marshal.dumps) -> list[tuple[Any, ...]]:
    """What a stage could change of each of ``chunks`` in place, by value: equal states, unchanged chunks.

    The fields are immutable values (a stage changes one only past the frozen dataclass, with
    ``object.__setattr__``); the metadata (read-only, but not the lists and dicts in it) and the
    embedding are recorded by content: ``marshal`` bytes (version 2: no
    references, so the bytes depend on the value only; an array's buffer is its bytes), through
    :func:`_content` when something inside is not for marshal. About 0.4 µs a chunk. An object of
    a class of its own inside the metadata counts by identity: a change inside it is not seen.
    A numpy embedding is a read-only view (:func:`read_only_array`), so ``embedding /= norm``
    raises before changing anything, but it is still recorded by content, not by identity: the
    caller's writable array behind it (``.base``), ``flags.writeable = True`` on the view and
    ``torch.from_numpy`` all get past the flag.

    >>> c = Chunk(id="a", text="Paris.", metadata={"tags": ["city"]})
    >>> before = chunk_state(c)
    >>> c.metadata["tags"].append("seen")
    >>> state_change(before, c)
    "metadata (now {'tags': ['city', 'seen']})"
    """
    try:
        return [
            (c.id, c.text, c.title, c.score, c.relevance, c.source, c.pieces, content(dict(c.metadata), 2),
             None if c.embedding is None else content(c.embedding, 2))
            for c in chunks
        ]
    except (ValueError, RecursionError):  # something marshal cannot hold (an object, a strided array)
        return chunk_states(chunks, _content)


def chunk_state(chunk: Chunk) -> tuple[Any, ...]:
    """One chunk's :func:`chunk_states`."""
    return chunk_states((chunk,))[0]


def state_change(before: tuple[Any, ...], chunk: Chunk) -> str:
    """The first of :data:`STATE_FIELDS` in which ``chunk`` differs from its ``before`` :func:`chunk_state`, with its value now; or ``""``."""
    for name, old, new in zip(STATE_FIELDS, before, chunk_state(chunk)):
        if old != new:
            return f"{name} (now {_shown(getattr(chunk, name))})"
    return ""


def _content(value: Any, version: int) -> Any:
    """``marshal.dumps(value, version)``, or :func:`_frozen` when something inside ``value`` is not for marshal."""
    try:
        return marshal.dumps(value, version)
    except (ValueError, RecursionError):
        return _frozen(value)


def _frozen(value: Any) -> Any:
    """``value`` as hashable, comparable data: containers by content, arrays by their bytes, other objects by identity.

    >>> first, second = object(), object()
    >>> _frozen({"tags": ["a"], "n": 1.5}), _frozen(first) == _frozen(first), _frozen(first) == _frozen(second)
    (('dict', (('tags', ('list', ('a',))), ('n', 1.5))), True, False)
    """
    if value is None or isinstance(value, (str, bytes, int, float, complex)):
        return value
    if isinstance(value, Mapping):
        return (type(value).__name__, tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return (type(value).__name__, tuple(map(_frozen, value)))
    if hasattr(value, "dtype") and callable(getattr(value, "tobytes", None)):  # numpy arrays and scalars
        return ("array", str(value.dtype), getattr(value, "shape", ()), value.tobytes())
    return ("object", id(value))


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters (a string is cut first, so its quotes stay).

    >>> _shown("x" * 100, 8), _shown(tuple(range(40)), 12)
    ("'xxxxxxxx...'", '(0, 1, 2, 3,...')
    """
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays, sets and tuples converted; anything else raises.

    ``where`` names the value in the error (e.g. ``"stage 'mine' note 'sizes'"``).

    >>> import numpy as np
    >>> json_value({"mean": np.float32(3.5), "ids": {"b", "a"}, "shape": (2, 3), "m": np.arange(2)}, "note")
    {'mean': 3.5, 'ids': ['a', 'b'], 'shape': [2, 3], 'm': [0, 1]}
    >>> json_value(object(), "stage 'mine' note 'x'")
    Traceback (most recent call last):
    ...
    TypeError: stage 'mine' note 'x' is an object, which JSON cannot hold; give notes plain values (str, number, bool, None, lists and dicts of them), e.g. str(value)
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {_json_key(k, where): json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v, where) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [json_value(v, where) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    tolist = getattr(value, "tolist", None)  # numpy scalars (.item() == .tolist()) and arrays
    if callable(tolist) and hasattr(value, "dtype"):
        return json_value(tolist(), where)
    raise TypeError(
        f"{where} is {with_article(type(value).__name__)}, which JSON cannot hold; give notes plain values "
        "(str, number, bool, None, lists and dicts of them), e.g. str(value)"
    )


def _json_key(key: Any, where: str) -> Any:
    """A mapping key JSON can hold (str, number, bool, None; a numpy scalar becomes its number)."""
    key = json_value(key, where) if hasattr(key, "dtype") else key
    if key is None or isinstance(key, (str, bool, int, float)):
        return key
    raise TypeError(f"{where} has the key {key!r:.60}, a {type(key).__name__}; JSON keys must be strings (or numbers)")


def with_article(noun: str) -> str:
    """``noun`` with its indefinite article.

    >>> with_article("object"), with_article("Pattern")
    ('an object', 'a Pattern')
    """
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def json_notes(notes: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """A step's trace ``notes`` as plain JSON data (see :func:`json_value`), an error naming the step and the note.

    >>> import numpy as np
    >>> json_notes({"mean_len": np.float32(3.5), "ids": {"b"}}, "mine")
    {'mean_len': 3.5, 'ids': ['b']}
    """
    return {_json_key(k, f"stage {stage!r} notes"): json_value(v, f"stage {stage!r} note {k!r}") for k, v in notes.items()}


@dataclass(frozen=True)
class Span:
    """A kept piece of text: ``original_text[start:end]`` of chunk ``chunk_id``.

    ``context_start``/``context_end`` locate the same characters in the rendered context.

    >>> from optimizer import Pipeline
    >>> chunk = Chunk(id="a", title="Paris", text="Paris is the capital of France. It is big.")
    >>> result = Pipeline.preset("truncate", budget=8).run("capital?", [chunk])
    >>> span = result.spans[0]
    >>> span
    Span(chunk_id='a', start=0, end=12, context_start=10, context_end=22)
    >>> chunk.text[span.start:span.end] == result.text[span.context_start:span.context_end] == "Paris is the"
    True
    """

    chunk_id: str
    start: int
    end: int
    context_start: int
    context_end: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "start": self.start,
            "end": self.end,
            "context_start": self.context_start,
            "context_end": self.context_end,
        }


@dataclass(frozen=True)
class Drop:
    """Something a stage removed: a whole chunk (``start is None``) or a range of its original text."""

    chunk_id: str
    reason: str
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chunk_id": self.chunk_id, "reason": self.reason}
        if self.start is not None:
            out["start"], out["end"] = self.start, self.end
        return out


@dataclass(frozen=True)
class StageTrace:
    """What one step did: tokens in and out, time, and what it dropped and why."""

    name: str
    tokens_in: int
    tokens_out: int
    ms: float
    chunks_in: int
    chunks_out: int
    dropped: tuple[Drop, ...] = ()
    notes: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "ms": round(self.ms, 3),
            "chunks_in": self.chunks_in,
            "chunks_out": self.chunks_out,
            "dropped": [d.to_dict() for d in self.dropped],
            "notes": json_notes(self.notes, self.name),
        }


@dataclass(frozen=True)
class Result:
    """The outcome of :meth:`optimizer.Pipeline.run`.

    ``text`` is the rendered context, ``tokens`` its exact length in the pipeline's
    tokenizer (never above ``budget`` when a budget is set), ``chunks`` the kept chunks in
    rendered order, ``spans`` the provenance of every kept character and ``trace`` one
    :class:`StageTrace` per step (the packer and renderer included).

    >>> from optimizer import Pipeline
    >>> result = Pipeline.preset("truncate", budget=8).run("capital?", ["Paris is the capital of France. It is big."])
    >>> result.text, result.tokens, result.budget, result.tokens_full, result.tokenizer
    ('[1] Paris is the capital', 7, 8, 14, 'cl100k_base')
    >>> [step.name for step in result.trace], [c.id for c in result.chunks]
    (['select-truncate', 'pack'], ['0'])
    >>> sorted(result.to_dict())          # what ``ragtrim optimize --format json`` prints
    ['budget', 'chunks', 'spans', 'text', 'tokenizer', 'tokens', 'tokens_full', 'trace']
    """

    text: str
    tokens: int
    budget: int | None
    tokens_full: int
    chunks: tuple[Chunk, ...]
    spans: tuple[Span, ...]
    trace: tuple[StageTrace, ...]
    tokenizer: str

    @property
    def ms(self) -> float:
        """Total time of all steps in milliseconds."""
        return sum(t.ms for t in self.trace)

    @property
    def dropped(self) -> tuple[Drop, ...]:
        """Everything any step dropped, in step order."""
        return tuple(d for t in self.trace for d in t.dropped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tokens": self.tokens,
            "budget": self.budget,
            "tokens_full": self.tokens_full,
            "tokenizer": self.tokenizer,
            "chunks": [c.to_dict() for c in self.chunks],
            "spans": [s.to_dict() for s in self.spans],
            "trace": [t.to_dict() for t in self.trace],
        }

    def trace_table(self) -> str:
        """A plain-text table of the trace, one row per step."""
        rows = [f"{'step':<22}{'tokens in':>10}{'tokens out':>11} {'chunks':>11} {'ms':>10}  dropped"]
        for t in self.trace:
            rows.append(
                f"{t.name:<22}{t.tokens_in:>10}{t.tokens_out:>11} {f'{t.chunks_in}->{t.chunks_out}':>11}"
                f" {t.ms:>10.2f}  {len(t.dropped)}"
            )
        return "\n".join(rows)


def _check_chunk_list(items: Any) -> None:
    """Raise TypeError unless ``items`` is an ordered collection of chunks (a list, a tuple, a generator...).

    One chunk (a dict, a :class:`Chunk`, a string) or an unordered set is a mistake that iterating would hide:
    a dict iterates over its keys, a string over its characters, a set in an arbitrary order.
    """
    kind = type(items).__name__
    if isinstance(items, (Mapping, Chunk)):
        raise TypeError(f"chunks must be a list of chunks, got one {kind}: {items!r:.80}; pass a list holding it, [chunk]")
    if isinstance(items, (str, bytes, bytearray)):
        raise TypeError(f"chunks must be a list of chunks, got one {kind}: {items!r:.80}; pass a list holding it, [text]")
    if isinstance(items, Set):
        raise TypeError(
            f"chunks must be a list of chunks, got a {kind}, whose order is arbitrary (the order is the ranking); "
            "pass a list in the retriever's order"
        )
    if not isinstance(items, Sequence) and not hasattr(items, "__iter__"):
        raise TypeError(f"chunks must be a list of Chunk, dict or str, got {kind}: {items!r:.80}")


def check_pre_cut(chunk: Chunk) -> Chunk:
    """``chunk`` when it is whole, or cut as :meth:`Chunk.keep` cuts (``text`` the join of its ``pieces`` of
    ``source``), else a ValueError naming it, the mismatch and the fix: the renderer prints the pieces, so a
    caller's chunk whose text says something else would be sent silently as text it never showed.

    >>> check_pre_cut(Chunk(id="a", text="Paris is big.", source="Paris is big. Lyon is small.", pieces=((14, 28),)))
    Traceback (most recent call last):
    ...
    ValueError: chunk 'a': text 'Paris is big.' is not the join of its kept pieces ((14, 28),) of the original text; the pieces of source are what is rendered: cut a chunk with chunk.keep(ranges) of its original text (it sets text, source and pieces together), or pass its text alone, without source and pieces
    """
    if chunk.source is None and chunk.pieces is None:
        return chunk
    problem = _pieces_problem(chunk.original_text, chunk)
    if problem:
        raise ValueError(
            f"chunk {chunk.id!r}: {problem}; the pieces of source are what is rendered: cut a chunk with chunk.keep(ranges) "
            "of its original text (it sets text, source and pieces together), or pass its text alone, without source and pieces"
        )
    return chunk


def as_chunks(items: Sequence[Any]) -> list[Chunk]:
    """Coerce a sequence of :class:`Chunk`, dicts or strings to chunks, checking ids are unique and
    pre-cut chunks consistent (:func:`check_pre_cut`).

    Strings get ids ``"0"``, ``"1"``, ...

    >>> [c.id for c in as_chunks(["a", "b"])]
    ['0', '1']
    """
    _check_chunk_list(items)
    out: list[Chunk] = []
    for i, item in enumerate(items):
        if isinstance(item, Chunk):
            out.append(check_pre_cut(item))
        elif isinstance(item, Mapping):
            out.append(Chunk.from_dict(item))
        elif isinstance(item, str):
            out.append(Chunk(id=str(i), text=item))
        else:
            raise TypeError(
                f"chunk #{i} must be a Chunk, a dict with 'id' and 'text', or a string; "
                f"got {type(item).__name__}: {item!r:.80}"
            )
    seen: dict[str, int] = {}
    for i, c in enumerate(out):
        if c.id in seen:
            raise ValueError(
                f"duplicate chunk id {c.id!r} (chunks #{seen[c.id]} and #{i}); ids must be unique within one call, "
                "e.g. append the position or the document offset to the id"
            )
        seen[c.id] = i
    return out
