"""Reading JSON Lines with errors that name the file and the line.

>>> import io
>>> list(iter_jsonl(io.StringIO('{"id": "a", "text": "x"}\\n\\n{"id": "b", "text": "y"}\\n'), name="chunks.jsonl"))
[(1, {'id': 'a', 'text': 'x'}), (3, {'id': 'b', 'text': 'y'})]
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from optimizer.records import Chunk


# byte order marks of encodings that are not UTF-8 (UTF-32 first: its little-endian mark starts like UTF-16's)
_OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe", "UTF-16LE"),
               (b"\xfe\xff", "UTF-16BE"))


def open_text(path: str | Path) -> IO[str]:
    """Open ``path`` for reading text; ``-`` is stdin and ``.gz`` files are decompressed.

    A UTF-8 byte order mark at the start (as some Windows editors write) is skipped; a UTF-16
    or UTF-32 one raises ValueError with the command that converts the file. Stdin is read
    the same way (its bytes, decoded as UTF-8 here, whatever the terminal's locale), so a
    pipe gives what the file gives.
    """
    if str(path) == "-":
        return _stdin_text()
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{str(p)!r} is a folder; pass one JSON Lines file, or join its files and read stdin: cat {_quote(str(p))}/*.jsonl | ... -c -")
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    opener = (lambda: gzip.open(p, "rb")) if p.suffix == ".gz" else (lambda: open(p, "rb"))
    with opener() as raw:
        _check_not_utf16(raw.read(4), str(p))
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig")
    return open(p, encoding="utf-8-sig")


def _stdin_text() -> IO[str]:
    """Stdin as UTF-8 text (a UTF-8 byte order mark skipped, a UTF-16 one refused), read whole: the chunks are held in
    memory anyway, and closing this stream leaves stdin itself open. A stdin without bytes underneath (a test's
    ``StringIO``) is returned as it is."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin
    data = buffer.read()
    _check_not_utf16(data[:4], "<stdin>")
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig")


def _check_not_utf16(head: bytes, name: str) -> None:
    """Raise when ``head`` (a file's first bytes) is a UTF-16 or UTF-32 byte order mark, saying how to convert."""
    for bom, encoding in _OTHER_BOMS:
        if head.startswith(bom):
            raise ValueError(
                f"{name}: the file is {encoding} (it starts with a {encoding} byte order mark); ragtrim reads UTF-8 "
                f"JSON Lines: convert it first, e.g. {_iconv(encoding[:6], name)}"
            )


def _iconv(encoding: str, name: str, target: str = "UTF-8") -> str:
    """The iconv command that converts file ``name`` (or stdin) from ``encoding`` to UTF-8 (spelt ``target``)."""
    if name == "<stdin>":
        return f"pipe it through iconv -f {encoding} -t {target}"
    return f"iconv -f {encoding} -t {target} {_quote(name)} > {_quote(_utf8_name(name))}"


def iter_jsonl(stream: IO[str], *, name: str = "<stdin>") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises ValueError naming it.

    A file that is not UTF-8 raises naming the line and the byte; a first line that shows the
    file is a JSON array, pretty-printed JSON or CSV says so and how to convert it (:func:`format_hint`).
    """
    lines = enumerate(stream, start=1)
    number, first = 0, True
    while True:
        try:
            number, line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise ValueError(not_utf8_message(name, number + 1, exc)) from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            hint = format_hint(line, name) if first else ""
            raise ValueError(
                f"{name}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
                + (f"; {hint}" if hint else "")
            ) from None
        first = False
        yield number, obj


def format_hint(first_line: str, name: str) -> str:
    """What a file whose first line is ``first_line`` probably is, when not JSON Lines, and how to convert it ("" if unsure).

    >>> format_hint('[{"id": "q1"}]', "d.json")
    "d.json looks like one JSON array, not JSON Lines (one object per line); convert it: jq -c '.[]' d.json > d.jsonl"
    >>> format_hint("{", "d.json").split(";")[0]
    'd.json looks like pretty-printed JSON (an object spread over several lines)'
    >>> format_hint("id,question,answers", "d.csv")
    'd.csv looks like CSV (a comma-separated header line): CSV is not supported; write JSON Lines, one object per line with id, question, answers and chunks'
    """
    text = first_line.strip()
    jsonl = _quote(_jsonl_name(name))
    if text.startswith("["):
        return f"{name} looks like one JSON array, not JSON Lines (one object per line); convert it: jq -c '.[]' {_quote(name)} > {jsonl}"
    if text == "{":
        return (f"{name} looks like pretty-printed JSON (an object spread over several lines); JSON Lines needs each object "
                f"on one line: jq -c . {_quote(name)} > {jsonl} (jq -c '.[]' if the objects are in an array)")
    if "," in text and not text.startswith(("{", '"')):
        return (f"{name} looks like CSV (a comma-separated header line): CSV is not supported; write JSON Lines, one "
                "object per line with id, question, answers and chunks")
    return ""


def not_utf8_message(name: str, approx_line: int, exc: UnicodeDecodeError) -> str:
    """A decoding error naming the file, the line and the byte, with the command that converts a Windows-1252 file."""
    where = _first_bad_line(name)
    if where is not None:
        line, column, byte = where
        at = f"line {line}: byte 0x{byte:02x} at byte {column} of the line"
    else:
        at = f"near line {approx_line}: byte 0x{exc.object[exc.start]:02x}"
    return (
        f"{name}, {at} is not UTF-8 ({exc.reason}); ragtrim reads UTF-8 JSON Lines. If the file is Windows-1252 "
        f"(Latin-1) text, convert it: {_iconv('cp1252', name, 'utf-8')}"
    )


def _first_bad_line(name: str) -> tuple[int, int, int] | None:
    """``(line, byte column, byte)`` of the first byte of file ``name`` that is not UTF-8 (None: not a file, or none)."""
    p = Path(name)
    if not p.is_file():
        return None
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as raw:
        for number, data in enumerate(raw, start=1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, exc.start + 1, data[exc.start]
    return None


def _quote(name: str) -> str:
    import shlex

    return shlex.quote(name)


def _utf8_name(name: str) -> str:
    """``data.jsonl`` -> ``data.utf8.jsonl`` (where a converted copy could go)."""
    p = Path(name)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return str(p.with_name(f"{stem}.utf8.jsonl"))


def _jsonl_name(name: str) -> str:
    """``data.json`` -> ``data.jsonl``."""
    p = Path(name)
    return str(p.with_name(f"{p.stem}.jsonl")) if p.suffix != ".jsonl" else str(p.with_name(f"{p.stem}.lines.jsonl"))


def read_chunks(path: str | Path) -> list[Chunk]:
    """Read chunk objects (``id``, ``text``, optional ``title``, ``score``, ``metadata``) from a JSONL file or ``-``."""
    name = "<stdin>" if str(path) == "-" else str(path)
    stream = open_text(path)
    chunks = []
    try:
        for number, obj in iter_jsonl(stream, name=name):
            if not chunks:
                _check_not_wrapped(obj, number, name)
            try:
                chunks.append(Chunk.from_dict(obj))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}, line {number}: {exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return chunks


_WRAPPERS = ("chunks", "documents", "nodes")


def _check_not_wrapped(obj: Any, number: int, name: str) -> None:
    """Raise, with the jq command that converts it, when the first line holds all the chunks (a JSON array on one
    line, or an object with a ``chunks``/``documents``/``nodes`` list) instead of one chunk."""
    if isinstance(obj, list):
        raise ValueError(f"{name}, line {number}: a JSON array, not one chunk object; {format_hint('[', name)}")
    if isinstance(obj, dict) and not {"id", "text"} & obj.keys():
        key = next((k for k in _WRAPPERS if isinstance(obj.get(k), list)), None)
        if key is not None:
            convert = (f"pipe it through jq -c '.{key}[]'" if name == "<stdin>"
                       else f"jq -c '.{key}[]' {_quote(name)} > {_quote(_jsonl_name(name))}")
            raise ValueError(f"{name}, line {number}: an object holding a {key!r} list, not one chunk object; JSON Lines "
                             f"needs one chunk per line: {convert}")
