"""A kept paragraph under a ``#`` heading is printed under its outline: the nearest ``#`` heading before it at each
shallower level.

Hunt 37's Keep-a-Changelog case: with ``### Added`` between ``## [2.3.1] - 2024-05-01`` and ``### Fixed``,
``default`` and ``quality`` printed ``### Fixed`` and the answer without the version it was fixed in (a ``#``
heading was printed only over the deeper heading right after it)."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.render import Renderer
from optimizer.stage import StageContext, StageOutput
from optimizer.stages.paragraphs import ParagraphViews, paragraph_parts
from optimizer.tokenizer import get_tokenizer


def version(v: str, day: str, added: list[str], fixed: list[str]) -> str:
    text = f"## [{v}] - {day}\n\n"
    if added:
        text += "### Added\n\n" + "\n".join(f"- {x}" for x in added) + "\n\n"
    return text + "### Fixed\n\n" + "\n".join(f"- {x}" for x in fixed)


VERSIONS = [
    ("2.4.0", "2024-06-12", ["`--dry-run` flag for the sync command."], ["Crash when the config file is empty.", "Wrong exit code on SIGTERM."]),
    ("2.3.2", "2024-05-20", [], ["Memory leak in the websocket reconnect loop.", "Typo in the help text."]),
    ("2.3.1", "2024-05-01", ["Prometheus label for worker id."],
     ["Race condition when two workers rotate the log file at the same time.", "Invalid token error message."]),
    ("2.3.0", "2024-04-10", ["S3-compatible storage backends."], ["Incorrect retry count in the uploader."]),
    ("2.2.5", "2024-03-02", [], ["Log file rotation on Windows when the path contains spaces.", "Upgraded openssl to 3.0.13."]),
    ("2.2.4", "2024-02-14", [], ["Websocket reconnect not honouring the backoff setting.", "Race condition in the cache warmer."]),
    ("2.2.3", "2024-01-30", [], ["Crash on startup with Python 3.12."]),
    ("2.2.2", "2024-01-05", [], ["Log rotation losing the last line.", "Duplicate metrics."]),
]
CHUNKS = [Chunk(id=f"c{i}", title="CHANGELOG.md", text=version(*VERSIONS[i]) + "\n\n" + version(*VERSIONS[i + 1])) for i in range(0, 8, 2)]
CHUNKS += [Chunk(id="faq", title="FAQ", text="Q: Why does the log file rotate twice? A: Two workers could rotate at the same time; "
                                               "upgrade to the latest version."),
           Chunk(id="ops", title="Runbook", text="Log rotation is handled by each worker. If two workers race, one of them loses "
                                                 "its handle. Restart both.")]
QUERY = "Which version fixed the race condition when two workers rotate the log file?"
ANSWER = "- Race condition when two workers rotate the log file"


def frames(text: str) -> list[tuple[str, list[str]]]:
    return [(text[slice(*p.body)][:12], [text[slice(*f)] for f in p.frame]) for p in paragraph_parts(Chunk(id="t", text=text))]


def test_a_paragraph_is_framed_by_its_outline_not_only_the_heading_right_above():
    assert frames(CHUNKS[1].text) == [
        ("- Prometheus", ["## [2.3.1] - 2024-05-01", "### Added"]),
        ("- Race condi", ["## [2.3.1] - 2024-05-01", "### Fixed"]),  # before: ["### Fixed"]
        ("- S3-compati", ["## [2.3.0] - 2024-04-10", "### Added"]),
        ("- Incorrect ", ["## [2.3.0] - 2024-04-10", "### Fixed"]),
    ]
    titles = [v.title for v in ParagraphViews([CHUNKS[1]]).views]  # the outline is printed, not part of a view's title
    assert titles[:2] == ["CHANGELOG.md: [2.3.1] - 2024-05-01: Added", "CHANGELOG.md: Fixed"]
    deep = "# A\n\n## B\n\n### C\n\n#### D\nBody text.\n\n### E\nMore text.\n\n## F\n\nLast text."
    assert frames(deep) == [("Body text.", ["# A", "## B", "### C", "#### D"]), ("More text.", ["# A", "## B", "### E"]),
                            ("Last text.", ["# A", "## F"])]
    plain = "## Cities\n\nParis\nParis is big.\n\nLyon\nLyon is old."  # a heading without # has no level: as before
    assert frames(plain) == [("## Cities", []), ("Paris is big", ["Paris"]), ("Lyon is old.", ["Lyon"])]
    other = "Doc\n\nSection\nBody text here.\n\nOther paragraph."  # no # heading: as before
    assert frames(other) == [("Doc", []), ("Body text he", ["Section"]), ("Other paragr", [])]


def test_views_sharing_an_outline_heading_count_it_once():
    """The selector's overhead for two views under one ``## [2.3.1]`` counts that line once, as the block prints it once."""
    c = CHUNKS[1]
    tok = get_tokenizer("cl100k_base")
    renderer = Renderer()
    base = StageContext(tokenizer=tok, budget=None, render_overhead=lambda cs, grouped=False: renderer.overhead(cs, tok, grouped=grouped))
    split = ParagraphViews([c])
    ctx = split.context(base)
    views = split.views
    assert views is not None and len(views) == 4
    for taken in ([views[0]], [views[1]], [views[0], views[1]], [views[1], views[3]], views):
        rendered = renderer.render(split.merge(StageOutput(list(taken))).chunks).text
        estimate = ctx.overhead(list(taken)) + sum(tok.count(v.text) for v in taken)
        assert 0 <= estimate - tok.count(rendered) <= len(taken) + 1, (rendered, estimate)
        tally = ctx.overhead_tally()
        assert sum(tally.take(v) for v in taken) == ctx.overhead(list(taken))


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("share", [0.1, 0.15, 0.25])
def test_the_changelog_answer_comes_with_its_version(preset, share):
    full = Pipeline.preset("full").run(QUERY, CHUNKS).tokens
    result = Pipeline.preset(preset, budget=int(share * full)).run(QUERY, CHUNKS)
    assert result.tokens <= result.budget
    if ANSWER in result.text:
        assert "## [2.3.1] - 2024-05-01\n" in result.text, result.text
    source = {c.id: c.text for c in CHUNKS}
    for span in result.spans:
        assert source[span.chunk_id][span.start:span.end] == result.text[span.context_start:span.context_end]


def test_the_changelog_answer_is_kept_at_some_share():
    """Not vacuous: the answer (so its version) is printed at the hunt's 0.15 share."""
    full = Pipeline.preset("full").run(QUERY, CHUNKS).tokens
    for preset in ("default", "quality"):
        text = Pipeline.preset(preset, budget=int(0.15 * full)).run(QUERY, CHUNKS).text
        assert ANSWER in text and "## [2.3.1] - 2024-05-01\n" in text, text
