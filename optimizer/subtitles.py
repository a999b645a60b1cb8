"""Subtitle tracks (SRT, WebVTT): cues read as flowing prose.

A subtitle file is a run of blank-line separated *cues*: an optional index or identifier line, a timing line
(``00:01:06,000 --> 00:01:09,500`` in SRT; ``00:01:06.000 --> ...`` or ``01:06.000 --> ...`` in WebVTT, cue
settings after it allowed), then one to three lines of text; a WebVTT file opens with a ``WEBVTT`` header. A
spoken sentence often runs over several cues (``Reduce two hundred millilitres of cream`` | ``with a sprig of
tarragon`` | ``for about six minutes.``). Read a cue a paragraph, the cue holding the answer was a fragment that
scored on a few words and was left out, and the splitter cut some cues into index | timing | text and left
others whole.

So a track is one paragraph (:func:`join_tracks`), and its sentences are *units* of consecutive cues
(:func:`cue_units`): a unit runs from its first cue's index line to the end of the first cue whose text ends a
sentence, so it is printed with the timing lines of its cues and the reader can cite the time. Its index,
timing and header lines are no words of it (:func:`spoken`: blanked where a sentence is scored) and never a
sentence of their own. A kept cue printed after a gap is set off by a blank line, as in the file
(:func:`starts_cue`).

>>> t = "1\\n00:00:01,000 --> 00:00:03,000\\nReduce the cream\\n\\n2\\n00:00:04,000 --> 00:00:06,000\\nfor six minutes.\\n\\n3\\n00:00:07,000 --> 00:00:09,000\\nServe."
>>> [t[s:e] for s, e in cue_units(t, track_cues(t, 0, len(t)), lambda line: line.endswith("."), 1200)]
['1\\n00:00:01,000 --> 00:00:03,000\\nReduce the cream\\n\\n2\\n00:00:04,000 --> 00:00:06,000\\nfor six minutes.', '3\\n00:00:07,000 --> 00:00:09,000\\nServe.']
>>> spoken(t, 0, t.index("\\n\\n")).split()  # what a unit is scored on
['Reduce', 'the', 'cream']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

_STAMP = r"(?:\d+:)?\d{2}:\d{2}[,.]\d{3}"
TIMING = re.compile(rf"[ \t]*{_STAMP}[ \t]+-->[ \t]+{_STAMP}(?:[ \t]+[^\n]*)?\r?$")
"""A cue's timing line: ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` (SRT) or ``[HH:]MM:SS.mmm --> ...`` (WebVTT), then cue settings."""
HEADER = re.compile(r"\ufeff?WEBVTT(?:[ \t][^\n]*)?\r?$")
"""A WebVTT file's first line."""
CUE_LINES = 3
"""The most lines of text a cue holds (subtitles are written one to three lines a cue); more is no cue."""
_TAG = re.compile(r"<[^<>\n]*>|\{\\[^{}\n]*\}")  # a cue's styling: <i>, </b>, <c.yellow>, SRT's {\an8}
_TIMING_LINE = re.compile(rf"^{TIMING.pattern}", re.M)


class Cue(NamedTuple):
    """One cue of a track, as ranges of the text: where it starts (its index line, else its timing line), where its
    text starts, where it ends."""

    start: int
    text: int
    end: int


def _lines(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """The lines of ``text[s:e]`` as ``(start, end)`` ranges, a ``\\r`` before a line's ``\\n`` left in it."""
    out, pos = [], s
    while pos <= e:
        newline = text.find("\n", pos, e)
        stop = e if newline < 0 else newline
        out.append((pos, stop))
        if newline < 0:
            break
        pos = newline + 1
    return out


def _cue(text: str, s: int, e: int) -> Cue | None:
    """The cue the blank-line block ``text[s:e]`` is, else None: an optional index or identifier line (no ``-->``),
    a timing line, then one to :data:`CUE_LINES` lines of text."""
    lines = _lines(text, s, e)
    k = 0 if TIMING.fullmatch(text, *lines[0]) else 1
    if k == 1 and (len(lines) < 2 or "-->" in text[slice(*lines[0])] or not TIMING.fullmatch(text, *lines[1])):
        return None
    said = lines[k + 1 :]
    if not 1 <= len(said) <= CUE_LINES or any(TIMING.fullmatch(text, *line) for line in said):
        return None
    return Cue(s, said[0][0], e)


def _header(text: str, s: int, e: int) -> bool:
    """Whether the block ``text[s:e]`` is a WebVTT header: ``WEBVTT`` on its first line, metadata lines after it."""
    newline = text.find("\n", s, e)
    return HEADER.match(text, s, e if newline < 0 else newline) is not None and text.find("-->", s, e) < 0


def join_tracks(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` (the blank-line paragraphs of ``text``, in order) with each run of consecutive cues (a WebVTT
    header before them included) made one paragraph: the track.

    >>> t = "WEBVTT\\n\\n00:01.000 --> 00:03.000\\nBake it\\n\\n00:04.000 --> 00:06.000\\nfor ten minutes.\\n\\nNotes"
    >>> [t[s:e] for s, e in join_tracks(t, [(0, 6), (8, 39), (41, 81), (83, 88)])]
    ['WEBVTT\\n\\n00:01.000 --> 00:03.000\\nBake it\\n\\n00:04.000 --> 00:06.000\\nfor ten minutes.', 'Notes']
    """
    if "-->" not in text:
        return list(spans)
    out: list[tuple[int, int]] = []
    track = False  # whether out[-1] is a track (or a header) that a cue goes on
    for k, (s, e) in enumerate(spans):
        if _cue(text, s, e) is not None:
            if track:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
            track = True
        else:
            out.append((s, e))
            track = _header(text, s, e) and k + 1 < len(spans) and _cue(text, *spans[k + 1]) is not None
    return out


def track_cues(text: str, s: int, e: int) -> list[Cue]:
    """The cues of the paragraph ``text[s:e]`` when it is a track (:func:`join_tracks`: cues only, a WebVTT header
    first allowed), else ``[]``. The header, if any, starts the first cue.

    >>> t = "WEBVTT\\n\\n00:01.000 --> 00:03.000\\nBake it."
    >>> [t[c.start:c.text] for c in track_cues(t, 0, len(t))], track_cues("Bake it.\\n\\nNow.", 0, 14)
    (['WEBVTT\\n\\n00:01.000 --> 00:03.000\\n'], [])
    """
    if text.find("-->", s, e) < 0:
        return []
    blocks = _blocks(text, s, e)
    head = s if blocks and _header(text, *blocks[0]) else None
    cues = [_cue(text, a, b) for a, b in (blocks[1:] if head is not None else blocks)]
    if not cues or any(c is None for c in cues):
        return []
    found = [c for c in cues if c is not None]
    if head is not None:
        found[0] = found[0]._replace(start=head)
    return found


_BLANK = re.compile(r"\n[ \t\r\f\v]*\n")


def _blocks(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """``text[s:e]`` split at blank lines, each block without the white space around it."""
    out, pos = [], s
    for m in [*_BLANK.finditer(text, s, e), None]:
        a, b = pos, (e if m is None else m.start())
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
        if m is not None:
            pos = m.end()
    return out


def cue_units(text: str, cues: Sequence[Cue], ends_sentence: Callable[[str], bool], limit: int,
              weight: Callable[[str, int, int], int] = lambda t, s, e: e - s) -> list[tuple[int, int]]:
    """The sentences of a track (``cues``, :func:`track_cues`): runs of consecutive cues, each closed by the first
    cue whose text ends a sentence (``ends_sentence`` of its last line, its styling tags left out), from the first
    cue's start (its index line) to the last cue's end. A run that would weigh more than ``limit`` (``weight`` of
    its range; the splitter's longest sentence) is closed at the cue before, so unpunctuated captions are cut
    between cues too.
    """
    out: list[tuple[int, int]] = []
    first = None
    for k, cue in enumerate(cues):
        if first is not None and weight(text, first.start, cue.end) > limit:
            out.append((first.start, cues[k - 1].end))
            first = None
        first = cue if first is None else first
        last = text[max(cue.text, text.rfind("\n", cue.text, cue.end) + 1) : cue.end]  # its last line
        if ends_sentence(_TAG.sub("", last).strip()):
            out.append((first.start, cue.end))
            first = None
    if first is not None:
        out.append((first.start, cues[-1].end))
    return out


def frame_lines(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """The lines of ``text[s:e]`` that are a track's frame, not what is said: timing lines, the index or identifier
    line right before one, and a WebVTT header block.

    >>> t = "WEBVTT\\n\\n7\\n00:01.000 --> 00:03.000\\nBake it."
    >>> [t[a:b] for a, b in frame_lines(t, 0, len(t))]
    ['WEBVTT', '7', '00:01.000 --> 00:03.000']
    """
    if text.find("-->", s, e) < 0:
        return []
    out: list[tuple[int, int]] = []
    blocks = _blocks(text, s, e)
    if blocks and _header(text, *blocks[0]):
        out += _lines(text, *blocks[0])
    for m in _TIMING_LINE.finditer(text, s, e):
        before = text.rfind("\n", 0, m.start() - 1) + 1  # the line before the timing line
        if m.start() > s and text[m.start() - 1] == "\n" and s <= before < m.start() - 1 and text[before : m.start() - 1].strip():
            out.append((before, m.start() - 1))
        out.append((m.start(), m.end()))
    return sorted(set(out))


def spoken(text: str, s: int, e: int) -> str:
    """``text[s:e]`` with its frame lines (:func:`frame_lines`) blanked with spaces: the same length, so an offset
    into it is one into the text, and a sentence of a track is scored on what is said in it, not on its timings.

    >>> spoken("12\\n00:00:58,000 --> 00:01:01,500\\nReduce it", 0, 42)
    '  \\n                             \\nReduce it'
    """
    frames = frame_lines(text, s, e)
    if not frames:
        return text[s:e]
    out, pos = [], s
    for a, b in frames:
        out += [text[pos:a], " " * (b - a)]
        pos = b
    return "".join(out) + text[pos:e]


def starts_cue(text: str, pos: int) -> bool:
    """Whether the line at ``pos`` of ``text`` opens a cue: a timing line, or an index line over one.

    >>> t = "Bake it.\\n\\n2\\n00:04.000 --> 00:06.000\\nfor ten minutes."
    >>> starts_cue(t, 10), starts_cue(t, 12), starts_cue(t, 0)
    (True, True, False)
    """
    end = text.find("\n", pos)
    if end < 0:
        return False
    if TIMING.match(text, pos, end):
        return True
    following = text.find("\n", end + 1)
    return "-->" not in text[pos:end] and TIMING.match(text, end + 1, len(text) if following < 0 else following) is not None
