"""The README's ``pycon`` examples are doctests: what they show is what ragtrim prints.

``test_readme.py`` runs the ```` ```python ```` blocks as scripts; a ```` ```pycon ```` block
shows its outputs, so it is checked line by line here (``...`` stands for what varies, such
as milliseconds).
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```pycon\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_a_doctest_example():
    assert BLOCKS, "README.md lost its pycon example (Python section)"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_pycon_block_prints_what_it_shows(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(BLOCKS[index], {"__name__": "readme"}, f"README.md pycon block {index}", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    outcome = runner.run(test, out=report.append)
    assert outcome.attempted > 0
    if outcome.failed:
        pytest.fail("".join(report), pytrace=False)
