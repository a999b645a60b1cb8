"""Metrics checked against hand computations (DESIGN.md definitions)."""

from __future__ import annotations

import math

import pytest

from evals import metrics as M
from optimizer import Chunk, Pipeline


@pytest.mark.parametrize(
    ("context", "answers", "expected"),
    [
        # articles and punctuation vanish on both sides: "the U.S.A." -> "usa"
        ("[1] The U.S.A.\nIt is large.", ["the USA"], 1),
        # "An Apple-a-day" -> "appleaday"; the context's "apple a day" -> "apple day" (no match)
        ("He said: an apple a day.", ["An Apple-a-day"], 0),
        ("He said: an appleaday.", ["An Apple-a-day"], 1),
        # any of several answers
        ("Born in Lyon, France.", ["Paris", "Lyon"], 1),
        # substring, not whole word (DESIGN.md: substring of the normalized context)
        ("Parisian cafés", ["Paris"], 1),
        ("Nothing relevant here.", ["Paris"], 0),
        # white space collapses
        ("Chief   of\nProtocol", ["Chief of Protocol"], 1),
    ],
)
def test_answer_recall_hand_cases(context, answers, expected):
    assert M.answer_recall(context, answers) == expected


@pytest.mark.parametrize("answers", [["yes"], ["No."], ["YES", "no"], [], [""], ["  ", "yes"], ["the"]])
def test_answer_recall_leaves_out_yes_no_and_empty(answers):
    assert M.answer_recall("yes no the answer is yes", answers) is None


def test_answer_recall_counts_mixed_yes_and_real_answer():
    assert M.answer_recall("it is Paris", ["yes", "Paris"]) == 1
    # DESIGN.md: *any* answer counts once the example is in, so a yes alias still matches
    assert M.answer_recall("it is yes", ["yes", "Paris"]) == 1
    assert M.answer_recall("it is no", ["yes", "Paris"]) == 0


def test_accuracy_counts_yes_no_but_not_empty():
    assert M.accuracy("Yes, it is.", ["yes"]) == 1
    assert M.accuracy("No.", ["yes"]) == 0
    assert M.accuracy("anything", []) is None


@pytest.mark.parametrize(
    ("prediction", "answers", "em", "f1"),
    [
        ("the Eiffel Tower", ["Eiffel Tower"], 1, 1.0),
        # P = 2/4, R = 2/2 -> F1 = 2 * 0.5 * 1 / 1.5 = 2/3
        ("Eiffel Tower in Paris", ["Eiffel Tower"], 0, 2 / 3),
        # repeated tokens count once per occurrence in the gold: P = 1/2, R = 1 -> 2/3
        ("Paris Paris", ["Paris"], 0, 2 / 3),
        # max over answers: vs "Denver Broncos" P = 1/1, R = 1/2 -> 2/3; vs "Broncos" exact
        ("Broncos", ["Denver Broncos", "Broncos"], 1, 1.0),
        ("Broncos", ["Denver Broncos"], 0, 2 / 3),
        ("Carolina Panthers", ["Denver Broncos"], 0, 0.0),
        # punctuation and case: "$1.5 million" -> "15 million"
        ("$1.5 Million", ["1.5 million"], 1, 1.0),
        # prediction that normalizes to nothing scores 0 against a real answer
        ("The.", ["Paris"], 0, 0.0),
    ],
)
def test_em_f1_squad_cases(prediction, answers, em, f1):
    assert M.em(prediction, answers) == em
    assert math.isclose(M.f1(prediction, answers), f1, rel_tol=1e-9)


def test_em_f1_none_without_answers():
    assert M.em("x", []) is None and M.f1("x", [""]) is None


def test_evidence_recall_from_a_real_pipeline_run():
    chunks = [
        Chunk(id="a", title="A", text="Alpha is first. " * 5),
        Chunk(id="b", title="B", text="Beta is second. " * 5),
        Chunk(id="c", title="C", text="Gamma is third. " * 5),
    ]
    full = Pipeline.preset("full").run("q", chunks)
    kept = {s.chunk_id for s in full.spans if s.end > s.start}
    assert M.evidence_recall(kept, ["a", "c"]) == 1.0
    # truncate keeps a prefix: with room for about one chunk, only "a" survives -> 1 of 2 gold
    cut = Pipeline.preset("truncate", budget=25).run("q", chunks)
    kept = {s.chunk_id for s in cut.spans if s.end > s.start}
    assert "a" in kept and "c" not in kept
    assert M.evidence_recall(kept, ["a", "c"]) == 0.5
    assert M.evidence_recall(kept, []) is None
