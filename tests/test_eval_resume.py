"""A reader sweep killed halfway and run again redoes no finished reader call."""

from __future__ import annotations

import json

import pytest

from evals.datasets import load_dataset
from evals.readers.cache import ReaderCache
from evals.readers.fake import FakeReader
from evals.report import write_report
from evals.sweep import run_eval
from eval_fixtures import strip_timings, write_tiny


class DyingReader(FakeReader):
    """A fake reader whose process 'dies' (KeyboardInterrupt) when it starts call ``die_at``."""

    def __init__(self, *, die_at: int, cache=None):
        super().__init__(cache=cache)
        self.die_at = die_at

    def _generate(self, prompt):
        if self.calls + 1 == self.die_at:
            raise KeyboardInterrupt
        return super()._generate(prompt)


def _sweep(dataset, reader):
    return run_eval(dataset, ["truncate", "bm25-pack"], [0.25, 0.5], reader=reader, progress=False)


def test_interrupted_sweep_resumes_without_repeating_calls(tmp_path):
    dataset = load_dataset(write_tiny(tmp_path / "tiny.jsonl"))
    clean_reader = FakeReader(cache=ReaderCache(tmp_path / "clean.sqlite"))
    clean = _sweep(dataset, clean_reader)
    unique = clean_reader.calls
    assert unique > 6

    cache = ReaderCache(tmp_path / "resume.sqlite")
    dying = DyingReader(die_at=6, cache=cache)
    with pytest.raises(KeyboardInterrupt):
        _sweep(dataset, dying)
    assert dying.calls == 5 and len(cache) == 5

    again = FakeReader(cache=ReaderCache(tmp_path / "resume.sqlite"))
    resumed = _sweep(dataset, again)
    assert dying.calls + again.calls == unique  # no finished call was made twice

    write_report(clean, tmp_path / "clean", plot=False)
    write_report(resumed, tmp_path / "resumed", plot=False)
    a = json.loads((tmp_path / "clean" / "results.json").read_text())
    b = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert strip_timings(a) == strip_timings(b)
