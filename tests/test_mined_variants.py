"""bench/mined_variants.py and the nq-multidoc builder it drives: distractors from any ranker, same rules."""

import importlib.util
import sys
from pathlib import Path

from evals.metrics import contains_answer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "datasets"))

SPEC = importlib.util.spec_from_file_location("mined_variants", ROOT / "bench" / "mined_variants.py")
mined = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(mined)
nq = mined.nq


def toy_pool(n: int = 520):
    """``n`` questions, each with its own gold passage; passage 7's text repeats passage 6's."""
    source, passages = [], []
    for i in range(n):
        source.append({"question": f"question {i}", "answers": [f"answer{i}"]})
        text = f"passage {i} says answer{i}." if i != 7 else "passage 6 says answer6."
        passages.append({"title": f"T{i}", "text": text})
    return source, passages


def test_fused_sums_reciprocal_ranks_and_breaks_ties_by_index():
    a = lambda q: [0, 1, 2, 3]  # noqa: E731
    b = lambda q: [3, 2, 1, 0]  # noqa: E731
    assert mined.fused(a, b)("q") == [0, 3, 1, 2]  # 0 and 3 tie (1/61 + 1/64) above 1 and 2 (1/62 + 1/63); ties by index
    c = lambda q: [2, 0, 1, 3]  # noqa: E731
    assert mined.fused(a, c)("q") == [0, 2, 1, 3]
    assert mined.fused(a, c, k=0)("q")[0] == 0  # 1/1 + 1/2 against 1/3 + 1/1 for 2: 1.5 > 1.33


def test_assemble_skips_own_passage_repeats_and_answers_and_places_gold():
    source, passages = toy_pool()
    # every question is offered the same order: passages 0, 1, 2, ... (its own included)
    rows = nq.assemble(source, passages, lambda q: range(len(passages)))
    assert len(rows) == nq.N
    for n, row in enumerate(rows):
        golds = [k for k, c in enumerate(row["chunks"]) if c["gold"]]
        assert golds == [row["meta"]["gold_position"]] == [nq.POSITIONS[n % len(nq.POSITIONS)]]
        assert len(row["chunks"]) == nq.DOCS
        texts = [c["text"] for c in row["chunks"]]
        assert len(set(texts)) == len(texts)  # passage 7 repeats 6: never both, and never the gold's twin
        for c in row["chunks"]:
            if not c["gold"]:
                assert not contains_answer(f"{c['title']}\n{c['text']}", row["answers"])


def test_assemble_follows_the_ranker():
    source, passages = toy_pool()
    forward = nq.assemble(source, passages, lambda q: range(len(passages)))
    backward = nq.assemble(source, passages, lambda q: reversed(range(len(passages))))
    k = next(k for k, r in enumerate(forward) if 30 < int(r["id"][3:]) < 500)
    titles = lambda row: [c["title"] for c in row["chunks"] if not c["gold"]]  # noqa: E731
    assert titles(forward[k]) == [f"T{j}" for j in (*range(7), *range(8, 20))]  # 7 repeats 6's text
    assert titles(backward[k]) == [f"T{j}" for j in range(519, 500, -1)]


def test_bm25_ranker_ranks_the_matching_passage_first():
    source, passages = toy_pool()
    assert nq.bm25_ranker(passages)("what does passage 5 say")[0] == 5
