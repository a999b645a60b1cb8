"""A Markdown ``#`` heading ends the paragraph before it, as CommonMark reads it, though no blank line comes between.

Hunt genres39's changelog written tight (``## v3.1.4`` / ``### Fixed`` / ``- Memory leak ...`` with no blank lines):
paragraphs were split at blank lines only, so its headings were neither frames nor outline but one-line sentences
picked alone; ``default`` printed ``### Breaking`` / ``### Added`` / ``### Fixed`` with nothing under the first two
and never ``## v3.1.4``, so the reader could not tell which version fixed the leak. The same text with blank lines
was kept from share 0.3. Near-misses keep their paragraphs: ``#`` lines in code (fenced, indented, or a block of
unfenced code or configuration), ``#hashtags``, ``#123`` references, a quoted ``> # `` line, and ``# of`` for "number of"."""

from __future__ import annotations

import re

import pytest

from optimizer import Chunk, Pipeline
from optimizer.sentences import paragraph_spans, split_sentences
from optimizer.stages.paragraphs import paragraph_parts
from tests.kept_answers import lost_runs

CHANGELOG = """# Changelog
## v3.2.0 — 2025-06-01
### Breaking
- Dropped support for Python 3.8.
### Added
- `--parallel` flag for the sync command.
## v3.1.4 — 2025-05-12
### Fixed
- Memory leak in the watcher when a directory is deleted (#812).
- `sync` no longer follows symlinks outside the root.
## v3.1.3 — 2025-04-30
### Security
- Bumped urllib3 to 2.2.2 (CVE-2024-37891)."""
SPACED = re.sub(r"\n(#)", r"\n\n\1", CHANGELOG)
OTHER = "Storage tips: Banana bread keeps for 4 days at room temperature wrapped in foil, or up to 3 months frozen."
QUERY = "Which version fixed the memory leak in the watcher?"


def texts(text: str) -> list[str]:
    return [text[s:e] for s, e in paragraph_spans(text)]


def test_a_heading_ends_the_paragraph_before_it_as_a_blank_line_would():
    assert texts(CHANGELOG) == texts(SPACED)
    assert texts(CHANGELOG)[:3] == ["# Changelog", "## v3.2.0 — 2025-06-01", "### Breaking\n- Dropped support for Python 3.8."]


def test_text_before_a_heading_is_a_paragraph_of_its_own():
    t = "Intro line one.\nIntro line two.\n## Install\nRun the installer."
    assert texts(t) == ["Intro line one.\nIntro line two.", "## Install\nRun the installer."]


def test_a_tight_changelogs_fix_is_under_its_version_as_a_spaced_ones_is():
    def framed(text: str) -> list[tuple[list[str], list[str]]]:
        parts = paragraph_parts(Chunk(id="c", text=text))
        return [([text[slice(*f)] for f in p.outline], [text[slice(*f)] for f in p.frame]) for p in parts]

    assert framed(CHANGELOG) == framed(SPACED)
    assert (["# Changelog"], ["## v3.1.4 — 2025-05-12", "### Fixed"]) in framed(CHANGELOG)


def test_the_sentences_of_a_tight_changelog_are_a_spaced_ones():
    assert [CHANGELOG[s:e] for s, e in split_sentences(CHANGELOG)] == [SPACED[s:e] for s, e in split_sentences(SPACED)]


@pytest.mark.parametrize("budget", [40, 50, 60])
def test_the_fix_reaches_the_reader_with_its_version(budget):
    chunks = [{"id": "cl", "text": CHANGELOG}, {"id": "x", "text": OTHER}]
    assert lost_runs(QUERY, chunks, "Memory leak", [budget]) == []
    assert lost_runs(QUERY, chunks, "## v3.1.4", [budget]) == []


def level(line: str) -> int:
    return len(line) - len(line.lstrip("#")) if re.match(r"#{1,6} ", line) else 0


def test_no_heading_is_printed_bare():
    chunks = [{"id": "cl", "text": CHANGELOG}, {"id": "x", "text": OTHER}]
    text = Pipeline.preset("default").run(QUERY, chunks, budget=66).text
    lines = [line for line in text.splitlines() if line.strip()]
    for k, line in enumerate(lines):  # under each heading: text, or a deeper heading
        if level(line):
            assert k + 1 < len(lines) and (not level(lines[k + 1]) or level(lines[k + 1]) > level(line)), text
    assert "## v3.1.4" in text


NEAR_MISSES = {
    "fenced shell comments": "Install it:\n```sh\n# fetch the deps\npip install ragtrim\n## then run\nragtrim --help\n```\nThat is all.",
    "fenced python comments": "```python\nimport os\n# Read the config\ncfg = load()\n```",
    "hashtags": "Loved the launch!\n#launchday #ragtrim\n#1 on the charts today.",
    "issue refs": "Fixed in this release:\n#812 watcher leak\n#815 symlink escape",
    "quoted email": "Sounds good.\n> On Mon, Ann wrote:\n> # Agenda\n> Budget review.",
    "number of": "Seats by room:\n# of seats: 12 in room A\n# of desks: 4",
    "indented python comment": "def load():\n  # Read the config\n  return cfg",
    "unfenced shell script": "#!/bin/sh\n# Install deps\napt-get install -y curl\n# Run the job\n./run.sh --fast",
    "unfenced python": "import os\n# Read the config\ncfg = load(os.environ)\n# Start the server\nserve(cfg)",
    "toml comments": "[server]\n# The port to listen on\nport = 8080\n# Worker count\nworkers = 4",
    "yaml comments": "server:\n  port: 8080\n# Database settings\ndatabase:\n  host: db.internal",
    "sentence comment": "Keep the defaults.\n# This line is a note, not a heading.\nThen restart.",
}


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_hash_lines_that_head_nothing_keep_their_paragraph(name):
    text = NEAR_MISSES[name]
    no_headings = text.replace("#", "%")  # the same text, no line of it a heading: its blocks are the blank lines' and fences'
    assert paragraph_spans(text) == paragraph_spans(no_headings)
