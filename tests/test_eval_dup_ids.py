"""Python-built datasets: repeated example ids are refused by run_eval and tune_budget (as load_dataset refuses them),
a tune asks the reader about each full context once, and its memo tells readers apart by everything that changes
their answers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from eval_fixtures import strip_timings

from evals.datasets import Dataset, Example
from evals.readers.fake import FakeReader
from evals.readers.prompt import DEFAULT_TEMPLATE
from evals.records import REFERENCE
from evals.sweep import run_eval
from evals.tune import compare, tune_budget
from optimizer import Chunk

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def example(i: int, ex_id: str | None = None) -> Example:
    """The answer sits after a varying number of on-topic sentences, then filler chunks follow."""
    city, answer = f"Zorbland{i}", f"Quixotl{i}"
    on_topic = " ".join(f"The history of {city} mentions {WORDS[(i + k) % len(WORDS)]} rivers." for k in range(1 + i % 6))
    chunks = [Chunk(id=f"{i}-0", title=city, text=f"{on_topic} The capital of {city} is {answer}.")]
    chunks += [Chunk(id=f"{i}-{j}", title=f"Notes {j}", text=" ".join(
        f"Unrelated {WORDS[(i * j + k) % len(WORDS)]} notes about weather." for k in range(2 + (i * j) % 5))) for j in (1, 2, 3)]
    return Example(id=ex_id or f"q{i}", question=f"What is the capital of {city}?", answers=(answer,), meta={},
                   chunks=tuple(chunks))


def dataset(n: int, **ids: str) -> Dataset:
    """``n`` examples; ``ids`` maps a position (as ``"at3"``) to the id to give it instead of its own."""
    return Dataset("own", Path("own"), tuple(example(i, ids.get(f"at{i}")) for i in range(n)))


class Recording(FakeReader):
    """A FakeReader that keeps every prompt its model was asked (no cache: each is a paid call for a real reader)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.prompts: list[str] = []

    def _generate(self, prompt):
        self.prompts.append(prompt)
        return super()._generate(prompt)


# -- repeated ids ----------------------------------------------------------------------------------------------------


def test_run_eval_refuses_repeated_ids_naming_both_positions():
    data = dataset(4, at3="q1")
    with pytest.raises(ValueError) as info:
        run_eval(data, ["truncate"], [0.5], reader=FakeReader(), progress=False)
    message = str(info.value)
    assert "duplicate example id 'q1'" in message and "examples[3]" in message and "examples[1]" in message
    assert "give every example a unique id" in message and "'own'" in message


def test_ids_are_compared_as_the_rows_hold_them():
    """Rows pair by ``str(id)``: an int 1 and a string "1" would be paired together, so they are repeats too."""
    a, b = example(0), example(1)
    data = SimpleNamespace(name="mixed", examples=[SimpleNamespace(**{**vars(a), "id": 1, "gold_ids": ()}),
                                                   SimpleNamespace(**{**vars(b), "id": "1", "gold_ids": ()})])
    with pytest.raises(ValueError, match=r"duplicate example id '1'.*give every example a unique id"):
        run_eval(data, ["truncate"], [0.5], progress=False)


def test_tune_budget_refuses_repeated_ids_at_the_users_positions():
    """Checked before the held-out split, so the positions are those of the data passed (not of one half)."""
    data = dataset(40, at37="q3")
    for holdout in (0, 0.5):
        with pytest.raises(ValueError) as info:
            tune_budget(data, "truncate", target_retention=0.9, holdout=holdout, resamples=10)
        assert "duplicate example id 'q3'" in str(info.value) and "examples[37]" in str(info.value)
        assert "examples[3]" in str(info.value)


def test_unique_ids_still_run():
    run = run_eval(dataset(3), ["truncate"], [0.5], progress=False, resamples=10)
    assert [r.id for r in run.rows_for(REFERENCE, None)] == ["q0", "q1", "q2"]


# -- each full context read once per tune ----------------------------------------------------------------------------


def asked(memo) -> int:
    """Reader calls the rows a tune keeps needed: every row read, less those served from an equal prompt of its batch."""
    return sum(1 for rows in memo.values() for r in rows if r.reader_called and not r.reader_cached)


@pytest.mark.parametrize("holdout, n", [(0, 12), (0.5, 40)])
def test_a_tune_reads_each_full_context_once(holdout, n):
    data, reader, memo = dataset(n), Recording(), {}
    result = tune_budget(data, "truncate", metric="accuracy", reader=reader, target_retention=0.9, holdout=holdout,
                         resamples=20, memo=memo)
    assert len(result.evaluations) > 3  # several search batches
    full = [r for key, rows in memo.items() if key[1] == REFERENCE for r in rows]
    assert len(full) == n  # the search's examples and the held-out ones
    full_prompts = {reader.prompt(ex.question, r.context) for ex, r in zip(_in_order(data, full), full)}
    assert sum(p in full_prompts for p in reader.prompts) == n  # once each, not once per batch
    assert reader.calls == asked(memo)


def _in_order(data, rows):
    by_id = {ex.id: ex for ex in data.examples}
    return [by_id[r.id] for r in rows]


@pytest.mark.parametrize("pipeline", ["truncate", "default"])
def test_tune_numbers_are_those_of_a_fresh_eval_at_each_share(pipeline):
    """The full rows a tune keeps are those every share is compared with: each evaluation equals a fresh run_eval's."""
    data = dataset(12)
    result = tune_budget(data, pipeline, metric="accuracy", reader=FakeReader(), target_retention=0.9, holdout=0,
                         resamples=20)
    for share, value in result.evaluations:
        run = run_eval(data, [pipeline], [share], reader=FakeReader(), progress=False, resamples=1)
        fresh = compare(run.rows_for(REFERENCE, None), run.rows_for(pipeline, share), "accuracy")
        assert value == pytest.approx(fresh.value), share


def test_run_eval_reuses_given_reference_rows():
    data = dataset(5)
    first = run_eval(data, ["truncate"], [0.5], reader=FakeReader(), progress=False, resamples=50)
    reader = Recording()
    again = run_eval(data, ["truncate"], [0.3, 0.5], reader=reader, progress=False, resamples=50,
                     reference_rows=first.rows_for(REFERENCE, None))
    assert reader.calls == 10  # the two shares only
    assert again.rows_for(REFERENCE, None) == first.rows_for(REFERENCE, None)
    same = [first.run_for("truncate", 0.5).to_dict(), again.run_for("truncate", 0.5).to_dict()]
    assert strip_timings(same[0]) == strip_timings(same[1])  # deltas versus the given full rows


def test_reference_rows_of_other_examples_are_refused():
    data = dataset(3)
    rows = run_eval(data, ["truncate"], [0.5], progress=False, resamples=10).rows_for(REFERENCE, None)
    with pytest.raises(ValueError, match="reference rows"):
        run_eval(dataset(4), ["truncate"], [0.5], progress=False, reference_rows=rows)
    with pytest.raises(ValueError, match="reader"):  # rows no reader answered cannot stand for a reader's
        run_eval(data, ["truncate"], [0.5], reader=FakeReader(), progress=False, reference_rows=rows)


# -- the memo tells readers apart --------------------------------------------------------------------------------------


OTHER_TEMPLATE = DEFAULT_TEMPLATE.replace("{question}", "{question} alpha")  # ties some history sentences with the answer


def test_a_shared_memo_does_not_serve_another_template_s_answers():
    data, memo = dataset(12), {}
    settings = dict(metric="f1", target_retention=0.9, holdout=0, resamples=20)
    first = tune_budget(data, "truncate", reader=FakeReader(), memo=memo, **settings)
    other = FakeReader(template=OTHER_TEMPLATE)
    shared = tune_budget(data, "truncate", reader=other, memo=memo, **settings)
    alone = tune_budget(data, "truncate", reader=FakeReader(template=OTHER_TEMPLATE), **settings)
    assert other.calls > 0 and alone.full_metric != first.full_metric  # the template changes the answers
    assert shared == alone


def test_a_shared_memo_still_serves_an_equal_reader():
    data, memo = dataset(12), {}
    settings = dict(metric="f1", target_retention=0.9, holdout=0, resamples=20)
    first = tune_budget(data, "truncate", reader=FakeReader(), memo=memo, **settings)
    again_reader = FakeReader()
    assert tune_budget(data, "truncate", reader=again_reader, memo=memo, **settings) == first
    assert again_reader.calls == 0
