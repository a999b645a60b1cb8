"""Sentence splitting that keeps character offsets.

Prose goes through blingfire (fast, C, handles abbreviations and CJK full stops; the few it cuts
after, a case name's ``v.``, a title opening a sentence, ``Exh. A``, ``p. 45``, are joined back by
:mod:`optimizer.abbreviations`). Text is
first cut at blank lines, and blocks that look like tables or code, or hold one record a line
without full stops (``Key: value`` lines, CSV rows, a schedule; not hard-wrapped prose), are split
per line, so a "sentence" there is a row, a record or a line of code; a log's lines (most of them
opening with a timestamp or carrying a log level) are split per line before their sentences are. Structured text on one line
(scraped HTML, minified JSON) is cut into its records first (:mod:`optimizer.inline_records`). A Markdown fenced code block (```` ``` ```` or
``~~~``) is one block, blank lines inside it included, and is always split per line, its fence
lines joined to the first and last lines of code (so no sentence is a bare fence).

Line structure is read on :func:`line_view`, where a lone ``\\r`` (an old Mac line ending) counts
as a line break and a ``\\r\\n`` as one; offsets are those of the text itself. Besides blingfire's
stops, a sentence ends after ``。！？`` and the other scripts' full stops (:data:`STOPS`) with any
closing quotes or brackets after them, and at a space between two letters of Thai, Lao, Khmer or
Myanmar, whose sentences are separated that way.

>>> text = "Dr. Smith arrived. 東京は首都です。大阪は二番目です。\\n\\n| a | b |\\n| 1 | 2 |"
>>> [text[s:e] for s, e in split_sentences(text)]
['Dr. Smith arrived.', '東京は首都です。', '大阪は二番目です。', '| a | b |', '| 1 | 2 |']
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections import OrderedDict
from typing import NamedTuple

import regex

from optimizer.abbreviations import join_abbreviations
from optimizer.atx_headings import heading_cuts
from optimizer.clauses import LEVELS, clauses_open, levels
from optimizer.inline_records import cut_ranges, record_cuts
from optimizer.subtitles import cue_units, join_tracks, track_cues
from optimizer.wrapped_lines import Shapes, unquoted, wrapped_groups

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
FENCE = re.compile(r"^[ \t]{0,3}(?:(`{3,})[^`\n]*|(~{3,})[^\n]*)$", re.M)
"""A Markdown (CommonMark) code fence's opening line: three or more backticks or tildes, then an info string."""
_FENCE_CLOSE = re.compile(r"[ \t]{0,3}(?:`{3,}|~{3,})[ \t]*\r?")
_LONE_CR = re.compile(r"\r(?!\n)")


def is_fence_close(line: str) -> bool:
    """True when ``line`` can close a fenced code block: only backticks or tildes (three or more),
    a ``\\r`` of a CRLF line ending allowed after them.

    >>> is_fence_close("  ```"), is_fence_close("```\\r"), is_fence_close("```py")
    (True, True, False)
    """
    return _FENCE_CLOSE.fullmatch(line) is not None


def line_view(text: str) -> str:
    """``text`` with each lone ``\\r`` (an old Mac line ending, not followed by ``\\n``) made a ``\\n``.

    The same length, so an offset into the view is one into ``text``: structure (lines, blank
    lines, fences, tables) is found on the view and the ranges are used on ``text``.

    >>> line_view("a\\rb\\r\\nc") == "a\\nb\\r\\nc"
    True
    """
    return _LONE_CR.sub("\n", text) if "\r" in text else text


_LINE = re.compile(r"[^\n]+")
STOPS = "。！？．｡।॥։።။۔"
"""Full stops a sentence ends at besides blingfire's: CJK (ideographic, fullwidth, halfwidth),
Devanagari danda and double danda, Armenian, Ethiopic, Myanmar and Urdu (U+06D4)."""
CLOSERS = "」』）”’》〉】"
"""Closing quotes and brackets that stay with the stop before them."""
_SEA = "\u0e01-\u0e2e\u0e30-\u0e45\u0e47-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\ua9e0-\ua9ff\uaa60-\uaa7f"
# a sentence ends after a stop and its closers (a fullwidth full stop not in a number), or at the
# spaces between two letters of Thai, Lao, Myanmar or Khmer (Thai's ฯ and ๆ, an abbreviation and a
# repetition mark that a space always follows, excepted)
_STOP = re.compile(rf"(?:[{STOPS.replace('．', '')}]|．(?![0-9０-９]))+[{CLOSERS}]*|(?<=[{_SEA}])[ \t]+(?=[{_SEA}])")
_OPENS_WITH_CLOSER = re.compile(rf"[{STOPS}{CLOSERS}]")
# A very long "sentence" (no punctuation) is split further so that packing stays fine-grained.
MAX_SENTENCE_CHARS = 1200
"""The longest sentence, in characters weighted by script (see :func:`sentence_weight`)."""
HEAVY_WEIGHT = 4
"""What a letter, mark or digit of a script past Latin (from Greek on, U+0370) weighs against a Latin
character's 1: such scripts take a token or more per character (Latin about a quarter)."""
_MARK = regex.compile(r"[\p{M}\u200c\u200d]")
_HEAVY = regex.compile(r"[[\p{L}\p{M}\p{N}]--[\x00-\u036f]]", regex.V1)


def sentence_weight(text: str, start: int = 0, end: int | None = None) -> int:
    """Characters of ``text[start:end]``, each letter, mark or digit of a script from Greek on
    counting :data:`HEAVY_WEIGHT` (a rough token measure that works for CJK, Thai and Indic text).

    >>> sentence_weight("Paris is big"), sentence_weight("東京は大きい"), sentence_weight("नमस्ते")
    (12, 24, 24)
    """
    end = len(text) if end is None else end
    return end - start + (HEAVY_WEIGHT - 1) * len(_HEAVY.findall(text, start, end))


def _looks_structured(block: str) -> bool:
    lines = [ln for ln in block.split("\n") if ln.strip()]
    if len(lines) < 2:
        return False
    structured = sum(
        1
        for ln in lines
        if ln.lstrip().startswith(("|", "-", "*", "+", "#", ">", "```"))
        or ln.startswith(("    ", "\t"))
        or ln.rstrip().endswith((":", "{", "}", ";", ")", ","))
        or "\t" in ln
    )
    return structured * 2 >= len(lines)


_ENDS_SENTENCE = re.compile(rf"[.!?…{STOPS}][\"'”’)\]{CLOSERS}]*$")


def ends_sentence(line: str) -> bool:
    """Whether ``line`` (stripped) ends like a sentence: a full stop, ``!``, ``?``, an ellipsis or one of
    :data:`STOPS`, then closing quotes or brackets.

    >>> ends_sentence("It rained."), ends_sentence("यह लेक मीड को रोकता है।"), ends_sentence("ڈیم مکمل ہوا۔"), ends_sentence("Annual Report")
    (True, True, True, False)
    """
    return _ENDS_SENTENCE.search(line.rstrip()) is not None


_STOP_INSIDE = re.compile(rf"[.!?…{STOPS}][\"'”’)\]{CLOSERS}]*\s+\S")
_ORDINAL = r"(?:\d{1,3}|[A-Za-z]|[ivx]{2,5}|[IVX]{2,5})"
_MARKER = rf"{_ORDINAL}[.)]|{LEVELS}\.|\({_ORDINAL}\)"
"""A list item's marker: a number, a letter or a small Roman numeral, then ``.`` or ``)``, or in brackets; or a
clause's number of several levels, then ``.`` (``3.2.1.``, :mod:`optimizer.clauses`)."""
LIST_MARKER = re.compile(rf"[ \t]*(?:{_MARKER})[ \t]+(?=\S)")
"""A line's leading list marker (``1. ``, ``2) ``, ``a. ``, ``(b) ``, ``iv. ``, ``3.2. ``) and the white space around it."""


def item_words(line: str) -> str:
    """``line`` without its leading list marker (:data:`LIST_MARKER`): the ``.`` of ``1. Open the lid`` ends no
    sentence.

    >>> item_words("1. Open the lid"), item_words("(b) Rinse it"), item_words("It cost 12. Then more")
    ('Open the lid', 'Rinse it', 'It cost 12. Then more')
    """
    m = LIST_MARKER.match(line)
    return line[m.end() :] if m else line


def _wraps_at(line: str, following: str, width: int) -> bool:
    """Whether the break after ``line`` is one of hard-wrapped prose (text wrapped at a fixed width):
    ``following`` goes on mid-sentence (it starts with neither a capital nor a digit, as a record's
    key, number or time does) and its first word would not have fitted on ``line`` within ``width``,
    the block's longest line but the last (reaching it counts: wrappers differ in whether the space
    or the line break counts). A wrap breaks only there; a record ends wherever it ends.

    >>> _wraps_at("Click is a Python package for creating", "beautiful command line interfaces", 40)
    True
    >>> _wraps_at("it loads about twice as fast", "next let's talk about pricing", 40), _wraps_at("Weight: 1.19 kg", "Price: 1299 EUR", 16)
    (False, False)

    A ``following`` line without white space inside is no wrapped prose either (a ``requirements.txt``
    pin, a path, an identifier): its first word is the whole line, so it would never have fitted.

    >>> _wraps_at("aiohttp==3.9.1", "charset-normalizer==3.3.2", 20)
    False
    """
    word, *rest = following.split(maxsplit=1)
    return bool(rest) and not (word[0].isupper() or word[0].isdigit()) and len(line) + 1 + len(word) >= width


_KEY = re.compile(r"\s*[^\s:：][^:：]{0,40}(?::(?:\s|$)|：)")
_FIELD_SEPARATORS = (re.compile(r"[,;](?!\s|$)"), re.compile(r"\|"), re.compile(r"\t"))
"""A row's field separators: a comma or semicolon with text right after it (prose puts a space there or ends
the line), a bar, a tab; counted after :data:`_THOUSANDS`."""
_THOUSANDS = re.compile(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d]|,\d)")
"""A number written with thousands commas (``110,000``, ``$12,450,000``): its commas separate no fields."""


def _same_fields(lines: list[str]) -> bool:
    """Whether every line is a record of one shape, whatever its case: ``key: value`` lines (a YAML-like
    listing, a spec sheet in any script, ``：`` included), or rows with the same number of separators
    (:data:`_FIELD_SEPARATORS`: CSV, a pipe table without its outer bars): two a row, or one on each of
    four rows or more. Prose wrapped at a fixed width does not start every line with a short key, and
    its commas, however many a line holds, are followed by a space.

    >>> _same_fields(["name: nimbus 14", "weight: 1.19 kg", "price: 1299 eur"])
    True
    >>> _same_fields(["s01,lyon,9-20", "s02,paris,8-22", "s03,nice,9-19"]), _same_fields(["see http://a.io", "and more", "here"])
    (True, False)
    >>> _same_fields(["Woodley plays Hazel, a cancer patient who", "meets Augustus, another patient", "played by Elgort, in 2014", "and so on, as before"])
    False
    """
    if all(_KEY.match(ln) for ln in lines):
        return True
    counts = [field_counts(ln) for ln in lines]
    fields = ({c[k] for c in counts} for k in range(len(_FIELD_SEPARATORS)))
    return any(len(n) == 1 and min(n) >= (1 if len(lines) > 3 else 2) for n in fields)


def field_counts(line: str) -> tuple[int, ...]:
    """How many of each field separator (:data:`_FIELD_SEPARATORS`: comma or semicolon, bar, tab) ``line``
    holds, a number's thousands commas left out: two rows of one table have the same counts.

    >>> field_counts("s01,lyon,9-20"), field_counts("| a | b |"), field_counts("Paris, France, 110,000 people")
    ((2, 0, 0), (0, 3, 0), (0, 0, 0))
    """
    plain = _THOUSANDS.sub("0", line)
    return tuple(len(sep.findall(plain)) for sep in _FIELD_SEPARATORS)


def is_record_line(line: str) -> bool:
    """Whether ``line`` reads as a ``key: value`` record (a spec sheet's, a YAML-like listing's line).

    >>> is_record_line("Weight: 1.19 kg"), is_record_line("It rained all day.")
    (True, False)
    """
    return _KEY.match(line) is not None


def _line_records(block: str) -> bool:
    """Whether ``block`` holds one record a line (a spec sheet's ``Key: value`` lines, CSV rows, a
    schedule, a changelog, unpunctuated caption lines, a numbered list's steps): three lines or more, no
    sentence ending before the last line's end (a list marker's ``1.`` ends none: :func:`item_words`), and
    most line breaks not those of hard-wrapped prose (:func:`_wraps_at`). Prose ends its sentences inside
    the block, or, wrapped at a fixed width (a README, an e-mail), breaks where the next word would not
    fit; it stays a paragraph of sentences.

    blingfire does not split at a lone line break, so such a block would be one "sentence" of up to
    hundreds of tokens, which the sentence stages can only keep or leave whole; split per line,
    each record is a sentence of its own.

    >>> _line_records("Model: Nimbus 14\\nWeight: 1.19 kg\\nPrice: 1299 EUR")
    True
    >>> _line_records("Click is a Python package for creating beautiful command line interfaces\\n"
    ...               "in a composable way with as little code as necessary\\n"
    ...               "and it is highly configurable out of the box")
    False
    """
    lines = [item_words(ln.rstrip()) for ln in block.split("\n") if ln.strip()]
    if len(lines) < 3 or any(_STOP_INSIDE.search(ln) for ln in lines) or any(_ENDS_SENTENCE.search(ln) for ln in lines[:-1]):
        return False
    if _same_fields(lines):
        return True
    width = max(len(ln) for ln in lines[:-1])  # a wrapped paragraph's last line is what is left over
    return 2 * sum(_wraps_at(a, b.lstrip(), width) for a, b in zip(lines, lines[1:])) < len(lines) - 1


def _field_lines(block: str) -> bool:
    """Whether ``block`` is a record's fields, one a line (a support ticket's ``Customer:``, ``Issue:``,
    ``Resolution:`` lines, a contact card): three lines or more, two in three of them ``key: value`` lines
    (:func:`is_record_line`; a first line such as ``Ticket #9001`` need not be one), none going on in the next
    as hard-wrapped prose does (:func:`_wraps_at`). Such a block is one field a line even when its values are
    sentences ending with a full stop, which :func:`_line_records` takes for prose; blingfire would join every
    line up to the first stop into one "sentence" (``Ticket ...`` with ``Customer: ...`` and ``Issue: ...``).

    >>> _field_lines("Ticket #9001\\nSubject: VPN drops.\\nRoot cause: Idle timeout.\\nFix: Raised it.")
    True
    >>> _field_lines("Note: the cache is cleared nightly, so the\\nfirst request of the day is slow. We plan\\nto warm it up.")
    False
    """
    lines = [ln.rstrip() for ln in block.split("\n") if ln.strip()]
    if len(lines) < 3 or 3 * sum(is_record_line(ln) for ln in lines) < 2 * len(lines):
        return False
    width = max(len(ln) for ln in lines[:-1])
    return not any(_wraps_at(a, b.lstrip(), width) for a, b in zip(lines, lines[1:]))


def _field_rows(text: str, lines: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The fields of a record's ``lines`` (:func:`_field_lines`; ranges of ``text``, in order): a line that is neither
    a ``key: value`` field nor a list item goes on with the line before it when that one ends no sentence (a value
    wrapped onto the next line: ``Issue: VPN drops for users in`` / ``Berlin and Munich.``).

    >>> t = "Ticket #1\\nIssue: VPN drops for users in\\nBerlin and Munich.\\nFix: Raised it."
    >>> [t[s:e] for s, e in _field_rows(t, [(0, 9), (10, 39), (40, 58), (59, 74)])]
    ['Ticket #1', 'Issue: VPN drops for users in\\nBerlin and Munich.', 'Fix: Raised it.']
    """
    out: list[tuple[int, int]] = []
    for s, e in lines:
        line = text[s:e]
        if out and not is_record_line(line) and not LIST_MARKER.match(line) and not ends_sentence(text[slice(*out[-1])]):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


_BAR = re.compile(r"[ \t]+\|[ \t]+")


def _bar_fields(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The line ``text[start:end]`` of a record's fields (:func:`_field_lines`) cut at each `` | `` when every part
    after the first is a ``key: value`` field (``Ticket #48213 | Status: Open | Priority: P1``: the ticket's id, its
    status, its priority), each part then cut into its records (:func:`_records`); else only the latter.

    >>> t = "Ticket #48213 | Status: Open | Priority: P1"
    >>> [t[s:e] for s, e in _bar_fields(t, 0, len(t))], len(_bar_fields("Note: a | b is an or", 0, 20))
    (['Ticket #48213', 'Status: Open', 'Priority: P1'], 1)
    """
    bars = list(_BAR.finditer(text, start, end))
    ends = [m.end() for m in bars]
    if not bars or not all(is_record_line(text[a : b.start() if b else end]) for a, b in zip(ends, [*bars[1:], None])):
        return _records(text, start, end, whole=False)
    bounds = [start, *(x for m in bars for x in (m.start(), m.end())), end]
    return [r for a, b in zip(bounds[::2], bounds[1::2]) for r in _records(text, a, b, whole=False)]


def _holds_end(line: str) -> bool:
    return _STOP_INSIDE.search(line) is not None or ends_sentence(line)


_SHAPES = Shapes(_wraps_at, ends_sentence, is_record_line, _holds_end, field_counts)


_RUN = re.compile(r"\d+|[^\W\d_]+")
_LEVEL = re.compile(r"\b(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|SEVERE)\b")
"""A log level, as logging libraries print it."""


def _stamp(line: str) -> str:
    """The shape of ``line``'s first two words, each run of digits ``9`` and each run of letters ``a``
    (``2024-03-01T12:00:05Z INFO`` and ``2024-03-01T12:02:50Z ERROR`` are both ``9-9-9a9:9:9a a``), when it
    holds two runs of digits or more (a date, a time, an address); else ``""``. A numbered list's
    ``1. Install`` holds one.

    >>> _stamp("2024-03-01T12:00:05Z INFO api up"), _stamp("I0301 12:00:05.120 pool.go:41] slow"), _stamp("1. Install it.")
    ('9-9-9a9:9:9a a', 'a9 9:9:9.9', '')
    """
    shape = _RUN.sub(lambda m: "9" if m.group()[0].isdigit() else "a", " ".join(line.split(maxsplit=2)[:2]))
    return shape if shape.count("9") >= 2 else ""


def _stamped_lines(block: str) -> bool:
    """Whether ``block`` is a log (three lines or more): most lines (two in three) open with words of one
    :func:`_stamp` shape (a timestamp), or carry a log level (:data:`_LEVEL`) in their first three words.

    Such a block is one record a line even when a message ends with a full stop, which
    :func:`_line_records` takes for prose; blingfire would join every line up to that stop into one
    "sentence" of hundreds of characters.

    >>> _stamped_lines("2024-03-01T12:00:05Z INFO up\\n2024-03-01T12:00:10Z INFO GET /a 200\\n2024-03-01T12:00:15Z ERROR db down.")
    True
    >>> _stamped_lines("WARN retrying.\\nINFO done\\nERROR lost."), _stamped_lines("1. Install it.\\n2. Run it.\\n3. Done.")
    (True, False)
    """
    lines = [ln for ln in block.split("\n") if ln.strip()]
    if len(lines) < 3:
        return False
    stamps: dict[str, int] = {}
    for ln in lines:
        stamp = _stamp(ln)
        stamps[stamp] = stamps.get(stamp, 0) + 1
    if any(stamp and 3 * n >= 2 * len(lines) for stamp, n in stamps.items()):
        return True
    return 3 * sum(_LEVEL.search(" ".join(ln.split(maxsplit=3)[:3])) is not None for ln in lines) >= 2 * len(lines)


def strip_range(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` moved inward past white space at either end."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split an over-long range into pieces of at most MAX_SENTENCE_CHARS weighted characters
    (:func:`sentence_weight`): at the last line break that fits in the second half of the piece, else
    at the last white space that fits, else after the last CJK comma, else before the character that
    does not fit (never between a letter and its combining marks).

    >>> t = "東京は大きい、" * 100
    >>> [(e - s, sentence_weight(t, s, e)) for s, e in _split_long(t, 0, len(t))]
    [(336, 1200), (336, 1200), (28, 100)]
    >>> t = "\\n".join(["python-multipart==0.0.6"] * 60)  # lines without a space: cut between them
    >>> {t[s:e].split("\\n")[-1] for s, e in _split_long(t, 0, len(t))}
    {'python-multipart==0.0.6'}
    """
    out = []
    while (limit := _fit(text, start, end)) < end:
        cut = _last_break(text, start, limit)
        if cut <= start:
            cut = max(text.rfind(c, start, limit) for c in "，、；") + 1
        if cut <= start:
            cut = _cluster_start(text, start, limit)
        s, e = strip_range(text, start, cut)
        if s < e:
            out.append((s, e))
        start = cut
    s, e = strip_range(text, start, end)
    if s < e:
        out.append((s, e))
    return out


def _last_break(text: str, start: int, limit: int) -> int:
    """Where :func:`_split_long` cuts ``text[start:limit]``: the last line break past its middle, else the
    last white space (space, tab or line break), else ``-1``."""
    line = text.rfind("\n", start, limit)
    if line > (start + limit) // 2:
        return line
    return max(line, *(text.rfind(c, start, limit) for c in " \t"))


def _fit(text: str, start: int, end: int) -> int:
    """The furthest ``p <= end`` with ``text[start:p]`` at most MAX_SENTENCE_CHARS weighted characters."""
    window = min(end, start + MAX_SENTENCE_CHARS)
    if not _HEAVY.search(text, start, window):  # every character weighs 1
        return window
    weight = 0
    for p in range(start, end):
        weight += HEAVY_WEIGHT if _HEAVY.match(text, p) else 1
        if weight > MAX_SENTENCE_CHARS:
            return p
    return end


def _cluster_start(text: str, start: int, pos: int) -> int:
    """``pos`` moved back past combining marks and joiners, so a cut there does not split a character
    (a letter and its vowel signs); ``pos`` itself when the whole of ``text[start:pos]`` is such."""
    p = pos
    while p > start + 1 and (_MARK.match(text, p) or text[p - 1] in "\u200d\u200c"):
        p -= 1
    return p if p > start + 1 else pos


_SCRATCH = threading.local()
_SCRATCH_MAX = 1 << 20  # larger outputs get buffers of their own


def _buffers(size: int) -> tuple[ctypes.Array, ctypes.Array, ctypes.Array]:  # type: ignore[type-arg]
    """An output buffer and two offset arrays of at least ``size`` entries, reused within a thread.

    blingfire writes into caller-owned buffers; allocating three fresh ones per text cost
    about 40 % of a chunk's split. A buffer is only read where this call's output was written.
    """
    held = getattr(_SCRATCH, "buffers", None)
    if held is not None and len(held[0]) >= size:
        return held
    fresh = (ctypes.create_string_buffer(size), (ctypes.c_int32 * size)(), (ctypes.c_int32 * size)())
    if size <= _SCRATCH_MAX:
        _SCRATCH.buffers = fresh
    return fresh


def blingfire_sentences(block: str) -> list[tuple[int, int]]:
    """blingfire's sentence ranges of ``block``, in characters.

    The same ranges as ``blingfire.text_to_sentences_and_offsets(block)[1]``, from the same
    C function, but its byte-to-character mapping looks at the sentence boundaries only
    instead of looping in Python over every byte of the text.

    >>> blingfire_sentences("Dr. Smith arrived. Então, café às 9h.")
    [(0, 18), (19, 37)]
    """
    import blingfire

    data = block.encode("utf-8")
    size = len(data) * 2
    out, starts, ends = _buffers(size)
    n = blingfire.blingfire.TextToSentencesWithOffsets(
        ctypes.c_char_p(data), ctypes.c_int(len(data)), ctypes.byref(out), ctypes.byref(starts), ctypes.byref(ends),
        ctypes.c_int(size),
    )
    if n == -1 or n > size:
        return []
    # what out.value would read from a fresh zero-filled buffer: the output up to its first NUL
    count = ctypes.string_at(out, n).split(b"\0", 1)[0].count(b"\n") + 1
    # blingfire maps byte offsets (a sentence's first byte, one past its last) to characters in
    # one forward pass, so it stops at the first offset that is not a character start at or
    # after the previous one; then the end of the text stands in for one missing offset
    wanted = [v for k in range(count) for v in (starts[k], ends[k] + 1)]
    ascii_only = len(data) == len(block)
    offsets: list[int] = []
    prev_byte = prev_char = 0
    for b in wanted:
        if b < prev_byte or b >= len(data) or (data[b] & 0xC0) == 0x80:
            break
        prev_char += (b - prev_byte) if ascii_only else len(data[prev_byte:b].decode("utf-8"))
        prev_byte = b
        offsets.append(prev_char)
    if len(offsets) < len(wanted):
        offsets.append(len(block))
    if len(offsets) != len(wanted):  # the library's own (slow) path, for its exact behaviour
        return list(blingfire.text_to_sentences_and_offsets(block)[1])
    return list(zip(offsets[0::2], offsets[1::2]))


_FOOTMARK = (r"\[\d{1,4}(?:[ \t]*[,–-][ \t]*\d{1,4})*\]|\[[a-z]\]|\[\^[^\]\[\s]{1,24}\]"  # [4], [12, 13], [a], [^1]
             r"|<sup>[^<>\n]{1,16}</sup>|[⁰¹²³⁴-⁹]|[†‡]")
"""One mark. Each alternative reads one way, so a run of them splits one way only: a ``+`` on one (``[¹²³]+``) would
try every split of ``¹¹¹...`` that no space follows, doubling the time with each mark. No mark's body holds the
start of another (a ``[^...]`` no ``[``, a ``<sup>`` no ``<``): else a run of ``[^x.[1]`` would be read again from
each ``[^``, in time quadratic in its length."""
_FOOTMARKS = re.compile(rf"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))(?:{_FOOTMARK})+(?=\s|$)")
"""Footnote and citation marks right after a sentence's stop, before white space: ``[4][5]``, ``[12, 13]``, ``[a]``,
``[^1]``, ``<sup>2</sup>``, ``¹²``, ``†``."""


def footmarks(block: str) -> tuple[str, dict[int, int]]:
    """``block`` with the marks after its sentence ends (:data:`_FOOTMARKS`) blanked (the same length, so an
    offset into it is one into ``block``), and where each run of marks starts mapped to where it ends.

    blingfire ends a sentence at ``.[3]`` but not at ``.[4][5]``, ``.¹`` or ``.[^1]``: it splits the blanked
    text, and a sentence that ends where marks start takes them.

    >>> footmarks("It fell.[4][5] It rose.¹")
    ('It fell.       It rose. ', {8: 14, 23: 24})
    """
    marks = {m.start(): m.end() for m in _FOOTMARKS.finditer(block)}
    if not marks:
        return block, marks
    return _FOOTMARKS.sub(lambda m: " " * len(m.group()), block), marks


_BARE_MARKER = re.compile(_MARKER)
_LAST_LINE_MARKER = re.compile(rf"\n[ \t]*(?:{_MARKER})$")
_LONE_MARKER = re.compile(rf"^[ \t]*({_MARKER})[ \t]*$", re.M)
_ROMAN = {"i": 1, "v": 5, "x": 10}


def _opens_item(text: str, newline: int) -> bool:
    """Whether a marker on the line after ``text[newline]`` opens a list item: the line before it is blank, closes a
    sentence or a lead-in (``.:!?;``) or is an item itself. Otherwise it is a hard-wrapped sentence's last number or
    letter (``The recommended dose for adults is`` / ``2. Children ...``), which stays with that sentence.

    >>> _opens_item("Steps:\\n2. Rinse", 6), _opens_item("1. Open the lid\\n2. Rinse", 15), _opens_item("for adults is\\n2. Children", 13)
    (True, True, False)
    """
    prev = text[text.rfind("\n", 0, newline) + 1 : newline].rstrip()  # the whole line: an item may hold a stop
    return not prev or _ends_lead(prev) or LIST_MARKER.match(prev) is not None


def _ends_lead(line: str) -> bool:
    """Whether ``line`` (stripped) ends a sentence or a lead-in (``:``, ``;``): what may come before a new item."""
    return line[-1:] in (":", ";") or ends_sentence(line)


def _ordinals(marker: str) -> set[tuple[str, int]]:
    """What ``marker`` counts as, each ``(kind, value)``: its style (``9.``, ``(a)``, ``I)``...) and its number, letter
    or Roman numeral's value; a lone ``i``, ``v`` or ``x`` is both a letter and a numeral.

    >>> sorted(_ordinals("12.")), sorted(_ordinals("(b)")), sorted(_ordinals("iv."))
    ([('9.', 12)], [('(a)', 98)], [('i.', 4)])
    """
    body = marker.strip("().")
    if "." in body:  # a clause's number (``3.2.1.``): its parent's number is part of its style
        *parent, last = levels(body)
        return {(".".join(map(str, parent)) + ".9.", last)}
    style = marker.replace(body, "9" if body.isdigit() else "a" if body.islower() else "A")
    if body.isdigit():
        return {(style, int(body))}
    out = {(style, ord(body))} if len(body) == 1 else set()
    values = [_ROMAN.get(c.lower(), 0) for c in body]
    if all(values) and (len(body) > 1 or body.lower() in _ROMAN):
        total = sum(-v if v < w else v for v, w in zip(values, [*values[1:], 0]))
        out.add((style.replace("a", "i").replace("A", "I"), total))
    return out


_AROUND = 2000
"""How far around a paragraph (in characters, to whole lines) its lone markers' neighbours are looked for."""


def _lone_markers(text: str, start: int, end: int) -> set[tuple[str, int]]:
    """The :func:`_ordinals` of the markers that are lines of their own in ``text[start:end]`` and the text around it
    (:data:`_AROUND`): a PDF's list may hold a blank line between its items, each item a paragraph of its own.

    >>> sorted(_lone_markers("1.\\nOpen it.\\n\\n2.\\nClose it.", 0, 11))
    [('9.', 1), ('9.', 2)]
    """
    lo = text.rfind("\n", 0, max(start - _AROUND, 0)) + 1
    hi = text.find("\n", min(end + _AROUND, len(text)))
    return {o for m in _LONE_MARKER.finditer(text, lo, len(text) if hi < 0 else hi) for o in _ordinals(m.group(1))}


def _in_sequence(marker: str, lone: set[tuple[str, int]]) -> bool:
    """Whether ``marker``, a line of its own, has a neighbour (the one before or after it: ``1.`` / ``2.``, ``a.`` /
    ``b.``) among the other lone markers ``lone`` in and around its block: a list with each marker on a line of its own (a PDF's),
    not a value on its own line (``Number of employees:`` / ``250.``, ``Correct answer:`` / ``B.``)."""
    return any((kind, n + step) in lone for kind, n in _ordinals(marker) for step in (-1, 1))


def _items_open(text: str, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` (blingfire's sentences, in order) with each list marker given to the item it opens: a range
    that is nothing but a marker opening a line (``2.``) is joined to the next (inside a line it may be a
    number that ends a sentence: ``See Art.`` | ``12.`` | ``It applies.``), and one whose last line is a marker
    (``Open the lid\\n2.``, blingfire cuts after each ``N.``) leaves it to the next when the line before
    :func:`_opens_item`. The last range keeps its own.

    A marker opens an item when the item's text follows it on its line. One alone on its line is a value
    (``Number of employees:`` / ``250.``, ``How many moons?`` / ``2.``) and stays where it is, unless the block or
    the text around it (:func:`_lone_markers`) holds its neighbour alone on a line too (:func:`_in_sequence`: ``1.`` / ``Open it.`` / ``2.`` / ``Close it.``).

    >>> t = "Steps:\\n1. Open it.\\n2. Rinse it."
    >>> [t[s:e] for s, e in _items_open(t, [(0, 9), (10, 18), (19, 21), (22, 31)])]
    ['Steps:', '1. Open it.', '2. Rinse it.']
    >>> t = "Version:\\n3.\\nIt shipped."
    >>> [t[s:e] for s, e in _items_open(t, [(0, 11), (12, 23)])]
    ['Version:\\n3.', 'It shipped.']
    """
    out: list[tuple[int, int]] = []
    lone: set[tuple[str, int]] | None = None  # the lone markers in and around the block, found when first needed
    opened = None  # where a marker cut off the range before starts
    for k, (s, e) in enumerate(ranges):
        s = s if opened is None else opened
        opened = None
        if k + 1 < len(ranges):
            bare = _BARE_MARKER.fullmatch(text, s, e) is not None and not text[text.rfind("\n", 0, s) + 1 : s].strip()
            m = None if bare else _LAST_LINE_MARKER.search(text, max(s, e - 24), e)
            if not bare and m is None:
                out.append((s, e))
                continue
            marker = text[s:e] if bare else m.group().strip()  # type: ignore[union-attr]
            if "\n" in text[e : ranges[k + 1][0]]:  # alone on its line: an item's marker only in a run of them
                if lone is None:
                    lone = _lone_markers(text, ranges[0][0], ranges[-1][1])
                opens = _in_sequence(marker, lone)
            else:
                opens = bare or _opens_item(text, m.start())  # type: ignore[union-attr]
            if opens:
                if not bare:
                    out.append(strip_range(text, s, m.start()))  # type: ignore[union-attr]
                opened = s if bare else strip_range(text, m.start(), e)[0]  # type: ignore[union-attr]
                continue
        out.append((s, e))
    return out


def _prose(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The sentences of the prose block ``text[start:end]``: blingfire's, each cut after a stop of
    :data:`STOPS` with its closing quotes, and at a space between Thai, Lao, Khmer or Myanmar letters.

    blingfire keeps CJK sentences together when no space follows the stop, and cuts a closing
    quote or a second stop (``。」``, ``？！``) off into the next sentence; those are put back first,
    as are its cuts after a case name's ``v.``, a title, an exhibit or a page number
    (:func:`~optimizer.abbreviations.join_abbreviations`: ``In Miranda v.`` | ``Arizona ...``). A list
    marker starts the item it opens (:func:`_items_open`), and footnote marks after a stop end the sentence
    with it (:func:`footmarks`).

    >>> t = "「长城很长。」长城在中国。真的吗？！是的。"
    >>> [t[s:e] for s, e in _prose(t, 0, len(t))]
    ['「长城很长。」', '长城在中国。', '真的吗？！', '是的。']
    """
    ranges: list[tuple[int, int]] = []
    block, marks = footmarks(text[start:end])
    for s, e in blingfire_sentences(block):
        s, e = strip_range(text, start + s, start + e)
        if s >= e:
            continue
        e = start + marks.get(e - start, e - start)  # a sentence's end takes the footnote marks after it
        if ranges and ranges[-1][1] == s and text[s - 1] in STOPS and _OPENS_WITH_CLOSER.match(text, s):
            ranges[-1] = (ranges[-1][0], e)  # a stop's closing quote or second stop, cut off by blingfire
        else:
            ranges.append((s, e))
    out: list[tuple[int, int]] = []
    for s, e in clauses_open(text, join_abbreviations(text, _items_open(text, ranges)), _ends_lead):
        sub_start = s
        for m in _STOP.finditer(text, s, e):
            if sub_start < m.end() < e:
                out.append(strip_range(text, sub_start, m.end()))
                sub_start = m.end()
        out.append((sub_start, e))
    return out


def fenced_blocks(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The Markdown fenced code blocks of ``text[start:end]``: from an opening fence line's start to the
    end of its closing line (a line of at least as many of the same mark), or to ``end`` when unclosed.

    Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (:func:`line_view`).

    >>> t = "Run:\\n```bash\\nls\\n\\npwd\\n```\\nDone."
    >>> [t[s:e] for s, e in fenced_blocks(t)]
    ['```bash\\nls\\n\\npwd\\n```']
    >>> fenced_blocks("```sh\\r\\nls\\r\\n```\\r\\nDone."), fenced_blocks("```sh\\rls\\r```\\rDone.")
    ([(0, 15)], [(0, 12)])
    """
    text = line_view(text)
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    pos = start
    while (m := FENCE.search(text, pos, end)) is not None:
        mark = m.group(1) or m.group(2)
        close = re.compile(rf"^[ \t]{{0,3}}{re.escape(mark[0])}{{{len(mark)},}}[ \t]*\r?$", re.M).search(text, m.end(), end)
        stop = close.end() if close is not None else end
        out.append((m.start(), stop))
        pos = stop
    return out


def code_blocks(text: str) -> tuple[tuple[int, int], ...]:
    """:func:`fenced_blocks` of the whole ``text``, found once per text (the splitter, the sentence
    stage and the packer all ask); a text without three backticks or tildes in a row has none.
    Texts with a fence are remembered as :func:`split_sentences`'s are, within their own
    :data:`SPLIT_CACHE_CHARS` characters (:func:`clear_split_cache` forgets them too)."""
    if "```" not in text and "~~~" not in text:
        return ()
    blocks = _CODE_CACHE.get(text)
    if blocks is None:
        blocks = tuple(fenced_blocks(text))
        _CODE_CACHE.put(text, blocks)
    return blocks


def paragraph_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``text[start:end]`` split at blank lines: ``(start, end)`` ranges of ``text`` without surrounding
    white space, empty ones left out. A fenced code block (:func:`fenced_blocks`) is a block of its
    own, never split at the blank lines inside it. A Markdown ``#`` heading line ends the paragraph
    before it as a blank line would, as CommonMark reads it (:mod:`optimizer.atx_headings`: not a
    comment of code).

    >>> t = "One.\\n\\n  \\n Two. Three.\\n"
    >>> [t[s:e] for s, e in paragraph_spans(t)]
    ['One.', 'Two. Three.']
    >>> t = "Run this:\\n```py\\nx = 1\\n\\ny = 2\\n```\\nThen stop."
    >>> [t[s:e] for s, e in paragraph_spans(t)]
    ['Run this:', '```py\\nx = 1\\n\\ny = 2\\n```', 'Then stop.']
    """
    text = line_view(text)
    end = len(text) if end is None else end
    fences = code_blocks(text) if (start, end) == (0, len(text)) else tuple(fenced_blocks(text, start, end))
    if not fences:
        return join_tracks(text, _blank_line_spans(text, start, end))
    out: list[tuple[int, int]] = []
    for fs, fe in fences:
        out += join_tracks(text, _blank_line_spans(text, start, fs))
        out += [(s, e) for s, e in [strip_range(text, fs, fe)] if s < e]
        start = fe
    return out + join_tracks(text, _blank_line_spans(text, start, end))


def _blank_line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``text[start:end]`` split at blank lines and before a Markdown ``#`` heading line
    (:func:`~optimizer.atx_headings.heading_cuts`), each range stripped, empty ones left out."""
    bounds, pos = [], start
    for m in _BLANK_LINE.finditer(text, start, end):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, end))
    blocks = [(s, e) for s, e in (strip_range(text, a, b) for a, b in bounds) if s < e]
    return [part for s, e in blocks for part in _at_headings(text, s, e)]


def _at_headings(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The block ``text[start:end]`` cut before each of its ``#`` heading lines, each part stripped."""
    cuts = heading_cuts(text, start, end)
    if not cuts:
        return [(start, end)]
    bounds = zip([start, *cuts], [*cuts, end])
    return [(s, e) for s, e in (strip_range(text, a, b) for a, b in bounds) if s < e]


SPLIT_CACHE_CHARS = 8_000_000
"""The most characters of text whose sentences :func:`split_sentences` remembers (least recently used
go first). The ranges take about as much memory again, so the cache holds some 20 MB at most."""
SPLIT_CACHE_MAX_TEXT = 250_000
"""A text longer than this many characters is split every time it is asked for, never remembered."""


class SplitCacheInfo(NamedTuple):
    """What :func:`split_sentences` remembers (:func:`split_cache_info`); the first four fields as
    ``functools.lru_cache``'s ``cache_info()``."""

    hits: int
    misses: int
    maxsize: None
    """no bound on the number of texts: ``max_chars`` bounds their characters"""
    currsize: int
    """texts remembered"""
    chars: int
    """their characters, at most ``max_chars``"""
    max_chars: int


class _SplitCache:
    """Sentence ranges of recently split texts, least recently used first out, bounded by the
    total characters of the texts kept (``max_chars``); a text over ``max_text`` characters is
    never kept. Thread-safe: every read and write holds one lock (the splitting itself does not).

    >>> cache = _SplitCache(max_chars=10, max_text=8)
    >>> for t in ("abcd", "efgh", "ijkl", "a" * 9):
    ...     cache.put(t, ((0, len(t)),))
    >>> cache.get("abcd"), cache.get("ijkl"), cache.info()[3:]
    (None, ((0, 4),), (2, 8, 10))
    """

    def __init__(self, max_chars: int = SPLIT_CACHE_CHARS, max_text: int = SPLIT_CACHE_MAX_TEXT) -> None:
        self.max_chars = max_chars
        self.max_text = min(max_text, max_chars)
        self._items: OrderedDict[str, tuple[tuple[int, int], ...]] = OrderedDict()
        self._chars = self._hits = self._misses = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple[tuple[int, int], ...] | None:
        """The ranges kept for ``text`` (now the most recently used), or None."""
        with self._lock:
            spans = self._items.get(text)
            if spans is None:
                self._misses += 1
                return None
            self._hits += 1
            self._items.move_to_end(text)
            return spans

    def put(self, text: str, spans: tuple[tuple[int, int], ...]) -> None:
        """Keep ``spans`` for ``text``, forgetting the least recently used texts past ``max_chars``."""
        if len(text) > self.max_text:
            return
        with self._lock:
            if text in self._items:  # another thread split it meanwhile
                return
            self._items[text] = spans
            self._chars += len(text)
            while self._chars > self.max_chars:
                old, _ = self._items.popitem(last=False)
                self._chars -= len(old)

    def clear(self) -> None:
        """Forget every text and reset the counts."""
        with self._lock:
            self._items.clear()
            self._chars = self._hits = self._misses = 0

    def info(self) -> SplitCacheInfo:
        """Hits, misses, texts and characters kept, and the character bound."""
        with self._lock:
            return SplitCacheInfo(self._hits, self._misses, None, len(self._items), self._chars, self.max_chars)


_SPLIT_CACHE = _SplitCache()
_CODE_CACHE = _SplitCache()  # code_blocks' fences, bounded the same way
_WRAP_CACHE = _SplitCache()  # wrapped_lines' lines, bounded the same way


def clear_split_cache() -> None:
    """Forget the sentences :func:`split_sentences` remembers (at most :data:`SPLIT_CACHE_CHARS`
    characters of text), e.g. to free that memory in a long-running process; later calls split
    again. Also ``split_sentences.cache_clear()``.

    >>> _ = split_sentences("One. Two."); clear_split_cache(); split_cache_info().currsize
    0
    """
    _SPLIT_CACHE.clear()
    _CODE_CACHE.clear()
    _WRAP_CACHE.clear()


def split_cache_info() -> SplitCacheInfo:
    """Hits, misses, texts and characters :func:`split_sentences` remembers, and the character bound
    (:data:`SPLIT_CACHE_CHARS`). Also ``split_sentences.cache_info()``."""
    return _SPLIT_CACHE.info()


def split_sentences(text: str) -> tuple[tuple[int, int], ...]:
    """Return ``(start, end)`` character ranges of the sentences of ``text``, in order.

    Ranges never overlap, never include leading or trailing white space, and together cover
    every non-space character of ``text``. Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``.

    The splitter, the sentence stages and the packer ask for the same texts, so the ranges of
    recent texts are remembered, up to :data:`SPLIT_CACHE_CHARS` characters of text in all
    (:func:`clear_split_cache` forgets them).

    >>> t = "| a | b |\\r| 1 | 2 |\\r\\rDone."
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['| a | b |', '| 1 | 2 |', 'Done.']
    """
    if not text or text.isspace():
        return ()
    spans = _SPLIT_CACHE.get(text)
    if spans is None:
        spans, wrapped = _split_and_wraps(text)
        _SPLIT_CACHE.put(text, spans)
        _WRAP_CACHE.put(text, wrapped)
    return spans


def wrapped_lines(text: str) -> tuple[tuple[int, int], ...]:
    """The lines (ranges of ``text``, stripped, in order) of the groups of hard-wrapped quoted or bullet
    lines that :func:`split_sentences` reads as prose (:func:`~optimizer.wrapped_lines.wrapped_groups`):
    a sentence made of them may still be cut at their line ends when it does not fit whole (the selector's
    line runs, the packer's cut). Remembered with the text's sentences.

    >>> t = "> We agreed to extend the deadline for the report\\n> to April 30 if the bank agrees.\\n> Raj"
    >>> [t[s:e] for s, e in wrapped_lines(t)]
    ['> We agreed to extend the deadline for the report', '> to April 30 if the bank agrees.']
    """
    if ("\n" not in text and "\r" not in text) or text.isspace():
        return ()
    lines = _WRAP_CACHE.get(text)
    return sentences_and_wrapped_lines(text)[1] if lines is None else lines


def sentences_and_wrapped_lines(text: str) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """:func:`split_sentences` and :func:`wrapped_lines` of ``text``, split once when neither is remembered
    (a text past :data:`SPLIT_CACHE_MAX_TEXT` characters never is)."""
    if not text or text.isspace():
        return (), ()
    spans, lines = _SPLIT_CACHE.get(text), _WRAP_CACHE.get(text)
    if spans is None or lines is None:
        spans, lines = _split_and_wraps(text)
        _SPLIT_CACHE.put(text, spans)
        _WRAP_CACHE.put(text, lines)
    return spans, lines


split_sentences.cache_clear = clear_split_cache  # type: ignore[attr-defined]  # as when it was an lru_cache
split_sentences.cache_info = split_cache_info  # type: ignore[attr-defined]


def _split(text: str) -> tuple[tuple[int, int], ...]:
    """:func:`split_sentences` of a text with a non-space character, not remembered."""
    return _split_and_wraps(text)[0]


def _split_and_wraps(text: str) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """:func:`split_sentences` of a text with a non-space character, not remembered, and its :func:`wrapped_lines`."""
    text = line_view(text)  # the same length: its ranges are the text's
    spans: list[tuple[int, int]] = []
    wrapped: list[tuple[int, int]] = []
    for b_start, b_end in paragraph_spans(text):
        block = text[b_start:b_end]
        if FENCE.match(block):
            pieces = _code_lines(block, b_start)
        elif cues := track_cues(text, b_start, b_end):  # subtitles: a sentence runs over cues, printed with their timings
            pieces = cue_units(text, cues, ends_sentence, MAX_SENTENCE_CHARS, sentence_weight)
        elif _looks_structured(block) or ("\n" in block and _line_records(block)):
            lines = (strip_range(text, b_start + m.start(), b_start + m.end()) for m in _LINE.finditer(block))
            groups = wrapped_groups(text, [(s, e) for s, e in lines if s < e], _SHAPES)
            wrapped += [line for group in groups if len(group) > 1 for line in group]
            pieces = [r for group in groups for r in _group_pieces(text, group)]
        elif "\n" in block and _field_lines(block):  # a record's fields: one a line, a head line's fields cut at their bars
            lines = (strip_range(text, b_start + m.start(), b_start + m.end()) for m in _LINE.finditer(block))
            rows = _field_rows(text, [(s, e) for s, e in lines if s < e])
            pieces = [r for s, e in rows for a, b in _bar_fields(text, s, e) for r in _prose(text, a, b)]
        elif "\n" in block and _stamped_lines(block):  # a log: a line's sentences never run into the next line
            lines = (strip_range(text, b_start + m.start(), b_start + m.end()) for m in _LINE.finditer(block))
            pieces = [r for s, e in lines if s < e for a, b in _records(text, s, e, whole=False) for r in _prose(text, a, b)]
        else:
            pieces = [r for s, e in _records(text, b_start, b_end, whole=True) for r in _prose(text, s, e)]
        for s, e in pieces:
            s, e = strip_range(text, s, e)
            if s < e:
                spans.extend(_split_long(text, s, e) if e - s > MAX_SENTENCE_CHARS // HEAVY_WEIGHT else [(s, e)])
    return _cover(text, spans), tuple(wrapped)


def _group_pieces(text: str, group: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The sentences of a structured block's line, or of lines a hard wrap joins
    (:func:`~optimizer.wrapped_lines.wrapped_groups`), split as prose without their quote marks."""
    if len(group) == 1:
        return _records(text, *group[0], whole=False)
    view, starts = unquoted(text, group)
    base = group[0][0]
    return [(starts.get(base + s, base + s), base + e) for s, e in _prose(view, 0, len(view))]


def _records(text: str, start: int, end: int, whole: bool) -> list[tuple[int, int]]:
    """``text[start:end]`` (no white space at either end) cut into the records of one-line markup or
    JSON (:func:`~optimizer.inline_records.record_cuts`; ``whole``: it is a block of its own, not a
    line of one), or the range itself when it holds no such structure."""
    return cut_ranges(text, record_cuts(text, start, end, whole), start, end)


def split_range(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The sentences of ``text[start:end]`` as ranges of ``text``, read in the context of the whole
    ``text``: a part of a fenced code block (say, its lines without their fences) is still split per
    line. Without a fence in ``text``, the same as :func:`split_sentences` of the slice.

    >>> t = "Run:\\n```sh\\nls -l here\\npwd now\\n```"
    >>> [t[s:e] for s, e in split_range(t, t.index("ls"), t.rindex("\\n```"))]
    ['ls -l here', 'pwd now']
    """
    text = line_view(text)
    fences = code_blocks(text)
    if not any(fs < end and start < fe for fs, fe in fences):
        return [(start + s, start + e) for s, e in split_sentences(text[start:end])]
    out: list[tuple[int, int]] = []
    pos = start
    for fs, fe in fences:
        lo, hi = max(fs, start), min(fe, end)
        if lo >= hi:
            continue
        out += [(pos + s, pos + e) for s, e in split_sentences(text[pos:lo])]
        if strip_range(text, lo, hi) == strip_range(text, fs, fe):
            out += _code_lines(text[fs:fe], fs)
        else:
            out += [r for r in (strip_range(text, lo + m.start(), lo + m.end()) for m in _LINE.finditer(text[lo:hi])) if r[0] < r[1]]
        pos = hi
    return out + [(pos + s, pos + e) for s, e in split_sentences(text[pos:end])]


def _code_lines(block: str, offset: int) -> list[tuple[int, int]]:
    """A fenced block's non-blank lines (offsets plus ``offset``), its opening fence joined to the first
    line of code and its closing fence to the last, so no line is a bare fence unless the block is empty.

    >>> b = "```sh\\nls\\n\\npwd\\n```"
    >>> [b[s:e] for s, e in _code_lines(b, 0)]
    ['```sh\\nls', 'pwd\\n```']
    """
    lines = [(offset + m.start(), offset + m.end()) for m in _LINE.finditer(block) if m.group().strip()]
    closed = len(lines) > 1 and is_fence_close(block[lines[-1][0] - offset : lines[-1][1] - offset])
    if len(lines) > 2 - (not closed):  # a line of code besides the fences: join the opening fence to it
        lines[:2] = [(lines[0][0], lines[1][1])]
    if closed and len(lines) > 1:
        lines[-2:] = [(lines[-2][0], lines[-1][1])]
    return lines


def _cover(text: str, spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Make sure no non-space character is lost between sentences (blingfire may skip some)."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s, e in sorted(spans):
        s = max(s, pos)
        if s >= e:
            continue
        gs, ge = strip_range(text, pos, s)
        if gs < ge:  # an uncovered gap with text: give it to the previous sentence or its own
            if out and out[-1][1] >= pos:
                out[-1] = (out[-1][0], ge)
            else:
                out.append((gs, ge))
        out.append((s, e))
        pos = e
    gs, ge = strip_range(text, pos, len(text))
    if gs < ge:
        out.append((gs, ge))
    # merge accidental overlaps
    merged: list[tuple[int, int]] = []
    for s, e in out:
        if merged and s < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return tuple(merged)
