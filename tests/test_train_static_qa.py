"""bench/train_static_qa.py: its training pairs hold no eval question, and its loss ranks gold passages first."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("train_static_qa", ROOT / "bench" / "train_static_qa.py")
train_static_qa = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("train_static_qa", train_static_qa)
SPEC.loader.exec_module(train_static_qa)


def _toy_tokenize(texts):  # one id per distinct lower-cased word (a stand-in for word pieces)
    vocab = _toy_tokenize.vocab
    return [[vocab.setdefault(w, len(vocab)) for w in t.lower().split()] for t in texts]


_toy_tokenize.vocab = {}


def _gold_first(table, pairs):
    hits = 0
    for q, gold, negatives in pairs:
        ids = _toy_tokenize([q, gold, *negatives])
        vecs = np.stack([table[i].mean(axis=0) for i in ids])
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        hits += int(np.argmax(vecs[1:] @ vecs[0]) == 0)
    return hits / len(pairs)


def test_training_moves_questions_towards_their_gold_passage_and_keeps_the_table_shape():
    topics = ["river", "piano", "comet", "tariff", "glacier", "sonnet", "enzyme", "harbour"]
    answers = ["delta", "keys", "tail", "trade", "ice", "poem", "protein", "ships"]
    filler = "the a of in and"
    pairs = []
    for k, (t, a) in enumerate(zip(topics, answers)):
        gold = f"{filler} {a} {a} {filler}"
        negatives = [f"{filler} {answers[(k + j) % len(answers)]} {filler}" for j in (1, 2, 3)]
        pairs.append((f"what about {t}", gold, negatives))
    _toy_tokenize(sorted({w for p in pairs for text in (p[0], p[1], *p[2]) for w in text.lower().split()}))
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(_toy_tokenize.vocab), 16)).astype(np.float32)
    before = _gold_first(table, pairs)
    trained = train_static_qa.train(pairs, table, _toy_tokenize, epochs=60, lr=5e-2, log=lambda *_: None)
    assert trained.shape == table.shape and trained.dtype == np.float32
    assert before < 0.5
    assert _gold_first(trained, pairs) == 1.0
    assert not np.shares_memory(trained, table) and np.isfinite(trained).all()


def test_l2_pull_keeps_the_table_nearer_its_start():
    pairs = [(f"q{k} x", f"d{k} y", [f"d{(k + 1) % 6} y"]) for k in range(6)]
    _toy_tokenize(sorted({w for p in pairs for text in (p[0], p[1], *p[2]) for w in text.lower().split()}))
    table = np.random.default_rng(1).normal(size=(len(_toy_tokenize.vocab), 8)).astype(np.float32)
    free = train_static_qa.train(pairs, table, _toy_tokenize, epochs=30, lr=5e-2, l2=0.0, log=lambda *_: None)
    pulled = train_static_qa.train(pairs, table, _toy_tokenize, epochs=30, lr=5e-2, l2=5.0, log=lambda *_: None)
    assert np.linalg.norm(pulled - table) < np.linalg.norm(free - table)


@pytest.mark.slow
@pytest.mark.skipif(not (train_static_qa.RAW / "lost_in_the_middle").is_dir(), reason="raw data (../shared/datasets) not here")
def test_training_pairs_hold_no_question_of_a_bundled_or_fit_only_set():
    from evals.datasets import load_dataset

    nq, squad = train_static_qa.nq_pairs(), train_static_qa.squad_pairs()
    assert len(nq) > 1000 and len(squad) > 1000
    held = {e.question for e in load_dataset("nq-multidoc").examples}
    held |= {e.question for e in load_dataset(train_static_qa._fit_extra("nq-extra")).examples}
    held_squad = {e.question for e in load_dataset("squad2-pools").examples}
    held_squad |= {e.question for e in load_dataset(train_static_qa._fit_extra("squad-extra")).examples}
    assert not {q for q, _, _ in nq} & held
    assert not {q for q, _, _ in squad} & held_squad
    eval_gold = {f"{c.title}\n{c.text}" for e in load_dataset("nq-multidoc").examples for c in e.chunks if c.id in set(e.gold_ids)}
    assert not {g for _, g, _ in nq} & eval_gold  # no eval question's gold passage is a training positive
    for _, gold, negatives in nq + squad:
        assert gold not in negatives and len(negatives) == train_static_qa.NEGATIVES
