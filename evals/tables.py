"""One table model for every report: a title, headers, rows of text cells and a note.

The report builds :class:`Table` values from a results document; :func:`to_markdown`,
:func:`to_html` and :func:`to_rich` (the terminal) only lay them out, so the three outputs
always show the same numbers.

>>> t = Table("Summary", ("pipeline", "tokens"), (("full", "1443"), ("default", "361")), note="n = 2")
>>> print(to_markdown(t))
### Summary
<BLANKLINE>
| pipeline | tokens |
|---|---|
| full | 1443 |
| default | 361 |
<BLANKLINE>
n = 2
>>> to_html(Table("A", ("x",), (("<1>",),)))
'<h3>A</h3><table><thead><tr><th>x</th></tr></thead><tbody><tr><td>&lt;1&gt;</td></tr></tbody></table>'
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells; ``left`` columns are left-aligned in the terminal."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    left: tuple[str, ...] = ("pipeline", "budget")

    def __post_init__(self) -> None:
        bad = [row for row in self.rows if len(row) != len(self.headers)]
        if bad:
            raise ValueError(f"table {self.title!r}: every row needs {len(self.headers)} cells, got {bad[0]!r}")


def to_markdown(t: Table) -> str:
    """A Markdown section: ``### title``, the table (``|`` escaped), then the note."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = [f"### {t.title}", ""]
    lines.append("| " + " | ".join(map(esc, t.headers)) + " |")
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines.extend("| " + " | ".join(map(esc, row)) + " |" for row in t.rows)
    if t.note:
        lines += ["", t.note]
    return "\n".join(lines)


def to_html(t: Table) -> str:
    """An ``<h3>``, a ``<table>`` and the note as a paragraph, all escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
    return f"<h3>{html.escape(t.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def to_rich(t: Table) -> Any:
    """A :class:`rich.table.Table` for the terminal (cells may hold a line break).

    Every text is escaped: a name such as ``trunc[v2]`` or ``tr[/]unc`` is shown as written, never read as markup.

    >>> import io
    >>> from rich.console import Console
    >>> console = Console(width=60, file=io.StringIO(), record=True)
    >>> console.print(to_rich(Table("rag[v2]", ("pipeline",), (("tr[/]unc",),))))
    >>> text = console.export_text(); "rag[v2]" in text and "tr[/]unc" in text
    True
    """
    from rich.markup import escape
    from rich.table import Table as RichTable

    out = RichTable(title=escape(t.title), caption=escape(t.note) if t.note else None)
    for h in t.headers:
        out.add_column(escape(h), justify="left" if h in t.left else "right")
    for row in t.rows:
        out.add_row(*(escape(cell) for cell in row))
    return out


__all__ = ["Table", "to_html", "to_markdown", "to_rich"]
