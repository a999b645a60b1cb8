"""Sentence splitting that keeps character offsets.

Prose goes through blingfire (fast, C, handles abbreviations and CJK full stops). Text is
first cut at blank lines, and blocks that look like tables or code are split per line, so a
"sentence" there is a row or a line of code. A Markdown fenced code block (```` ``` ```` or
``~~~``) is one block, blank lines inside it included, and is always split per line, its fence
lines joined to the first and last lines of code (so no sentence is a bare fence).

>>> text = "Dr. Smith arrived. 東京は首都です。大阪は二番目です。\\n\\n| a | b |\\n| 1 | 2 |"
>>> [text[s:e] for s, e in split_sentences(text)]
['Dr. Smith arrived.', '東京は首都です。', '大阪は二番目です。', '| a | b |', '| 1 | 2 |']
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
FENCE = re.compile(r"^[ \t]{0,3}(?:(`{3,})[^`\n]*|(~{3,})[^\n]*)$", re.M)
"""A Markdown (CommonMark) code fence's opening line: three or more backticks or tildes, then an info string."""
_FENCE_CLOSE = re.compile(r"[ \t]{0,3}(?:`{3,}|~{3,})[ \t]*")


def is_fence_close(line: str) -> bool:
    """True when ``line`` can close a fenced code block: only backticks or tildes (three or more).

    >>> is_fence_close("  ```"), is_fence_close("```py")
    (True, False)
    """
    return _FENCE_CLOSE.fullmatch(line) is not None
_LINE = re.compile(r"[^\n]+")
_CJK_STOP = re.compile(r"(?<=[。！？])")
# A very long "sentence" (no punctuation) is split further so that packing stays fine-grained.
MAX_SENTENCE_CHARS = 1200


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


def strip_range(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` moved inward past white space at either end."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split an over-long range at white space into pieces of at most MAX_SENTENCE_CHARS."""
    out = []
    while end - start > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start, start + MAX_SENTENCE_CHARS)
        if cut <= start:
            cut = start + MAX_SENTENCE_CHARS
        s, e = strip_range(text, start, cut)
        if s < e:
            out.append((s, e))
        start = cut
    s, e = strip_range(text, start, end)
    if s < e:
        out.append((s, e))
    return out


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


def _prose(text: str, start: int, end: int) -> list[tuple[int, int]]:
    block = text[start:end]
    offsets = blingfire_sentences(block)
    out: list[tuple[int, int]] = []
    for s, e in offsets:
        s, e = strip_range(text, start + s, start + e)
        if s >= e:
            continue
        # blingfire sometimes keeps CJK sentences together when no space follows the stop
        sub_start = s
        for m in _CJK_STOP.finditer(text, s, e):
            if sub_start < m.start() < e:
                out.append((sub_start, m.start()))
                sub_start = m.start()
        out.append((sub_start, e))
    return out


def fenced_blocks(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The Markdown fenced code blocks of ``text[start:end]``: from an opening fence line's start to the
    end of its closing line (a line of at least as many of the same mark), or to ``end`` when unclosed.

    >>> t = "Run:\\n```bash\\nls\\n\\npwd\\n```\\nDone."
    >>> [t[s:e] for s, e in fenced_blocks(t)]
    ['```bash\\nls\\n\\npwd\\n```']
    """
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    pos = start
    while (m := FENCE.search(text, pos, end)) is not None:
        mark = m.group(1) or m.group(2)
        close = re.compile(rf"^[ \t]{{0,3}}{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$", re.M).search(text, m.end(), end)
        stop = close.end() if close is not None else end
        out.append((m.start(), stop))
        pos = stop
    return out


@functools.lru_cache(maxsize=4096)
def code_blocks(text: str) -> tuple[tuple[int, int], ...]:
    """:func:`fenced_blocks` of the whole ``text``, found once per text (the splitter, the sentence
    stage and the packer all ask); a text without three backticks or tildes in a row has none."""
    return tuple(fenced_blocks(text)) if "```" in text or "~~~" in text else ()


def paragraph_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``text[start:end]`` split at blank lines: ``(start, end)`` ranges of ``text`` without surrounding
    white space, empty ones left out. A fenced code block (:func:`fenced_blocks`) is a block of its
    own, never split at the blank lines inside it.

    >>> t = "One.\\n\\n  \\n Two. Three.\\n"
    >>> [t[s:e] for s, e in paragraph_spans(t)]
    ['One.', 'Two. Three.']
    >>> t = "Run this:\\n```py\\nx = 1\\n\\ny = 2\\n```\\nThen stop."
    >>> [t[s:e] for s, e in paragraph_spans(t)]
    ['Run this:', '```py\\nx = 1\\n\\ny = 2\\n```', 'Then stop.']
    """
    end = len(text) if end is None else end
    fences = code_blocks(text) if (start, end) == (0, len(text)) else tuple(fenced_blocks(text, start, end))
    if not fences:
        return _blank_line_spans(text, start, end)
    out: list[tuple[int, int]] = []
    for fs, fe in fences:
        out += _blank_line_spans(text, start, fs)
        out += [(s, e) for s, e in [strip_range(text, fs, fe)] if s < e]
        start = fe
    return out + _blank_line_spans(text, start, end)


def _blank_line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``text[start:end]`` split at blank lines, each range stripped, empty ones left out."""
    bounds, pos = [], start
    for m in _BLANK_LINE.finditer(text, start, end):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, end))
    return [(s, e) for s, e in (strip_range(text, a, b) for a, b in bounds) if s < e]


@functools.lru_cache(maxsize=65536)
def split_sentences(text: str) -> tuple[tuple[int, int], ...]:
    """Return ``(start, end)`` character ranges of the sentences of ``text``, in order.

    Ranges never overlap, never include leading or trailing white space, and together cover
    every non-space character of ``text``.
    """
    if not text or text.isspace():
        return ()
    spans: list[tuple[int, int]] = []
    for b_start, b_end in paragraph_spans(text):
        block = text[b_start:b_end]
        if FENCE.match(block):
            pieces = _code_lines(block, b_start)
        elif _looks_structured(block):
            pieces = [(b_start + m.start(), b_start + m.end()) for m in _LINE.finditer(block)]
        else:
            pieces = _prose(text, b_start, b_end)
        for s, e in pieces:
            s, e = strip_range(text, s, e)
            if s < e:
                spans.extend(_split_long(text, s, e) if e - s > MAX_SENTENCE_CHARS else [(s, e)])
    return _cover(text, spans)


def split_range(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The sentences of ``text[start:end]`` as ranges of ``text``, read in the context of the whole
    ``text``: a part of a fenced code block (say, its lines without their fences) is still split per
    line. Without a fence in ``text``, the same as :func:`split_sentences` of the slice.

    >>> t = "Run:\\n```sh\\nls -l here\\npwd now\\n```"
    >>> [t[s:e] for s, e in split_range(t, t.index("ls"), t.rindex("\\n```"))]
    ['ls -l here', 'pwd now']
    """
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
