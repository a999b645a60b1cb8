"""SQuAD 2.0 (CS224N half of dev) as retrieval pools: own paragraph plus 9 BM25-nearest paragraphs of the same article.

500 questions sampled with a fixed seed, stratified so the answerable/unanswerable mix of
the source is kept; the gold paragraph sits at a seeded random position of the pool.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from _common import SEED, bm25_rank_with, bm25_tokens, unique
from rank_bm25 import BM25Okapi

NAME = "squad2-pools"
FILES = ("squad_v2/dev-v2.0.cs224n_half.json",)
N = 500
DISTRACTORS = 9


def _sample(questions: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Stratified sample of ``N`` questions (by answerability), returned in file order."""
    impossible = [q for q in questions if q["is_impossible"]]
    possible = [q for q in questions if not q["is_impossible"]]
    n_impossible = round(N * len(impossible) / len(questions))
    picked = rng.sample(impossible, n_impossible) + rng.sample(possible, N - n_impossible)
    return sorted(picked, key=lambda q: q["order"])


def build(raw: Path) -> list[dict[str, Any]]:
    """Convert the raw file under ``raw`` into rows of the common schema."""
    with open(raw / FILES[0], encoding="utf-8") as f:
        data = json.load(f)["data"]
    questions: list[dict[str, Any]] = []
    for a, article in enumerate(data):
        for p, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                questions.append({**qa, "article": a, "paragraph": p, "order": len(questions)})
    rng = random.Random(SEED)
    sample = _sample(questions, rng)
    indexes: dict[int, BM25Okapi] = {}
    rows: list[dict[str, Any]] = []
    for q in sample:
        article = data[q["article"]]
        paragraphs = [para["context"] for para in article["paragraphs"]]
        if q["article"] not in indexes:
            indexes[q["article"]] = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in paragraphs])
        ranked = bm25_rank_with(indexes[q["article"]], q["question"], len(paragraphs))
        distractors = [i for i in ranked if i != q["paragraph"]][:DISTRACTORS]
        position = rng.randrange(len(distractors) + 1)
        order = distractors[:position] + [q["paragraph"]] + distractors[position:]
        title = article["title"].replace("_", " ")
        chunks = [
            {"id": f"{q['id']}-{k}", "title": title, "text": paragraphs[i], "gold": i == q["paragraph"]}
            for k, i in enumerate(order)
        ]
        answers = unique(a["text"] for a in q["answers"])
        meta: dict[str, Any] = {
            "source": "squad_v2",
            "type": "unanswerable" if q["is_impossible"] else "answerable",
            "article": title,
            "paragraph": q["paragraph"],
            "gold_position": position,
        }
        if q["is_impossible"]:
            meta["plausible_answers"] = unique(a["text"] for a in q.get("plausible_answers", []))
        rows.append({"id": q["id"], "question": q["question"], "answers": answers, "chunks": chunks, "meta": meta})
    return rows


CARD_TEMPLATE = """# squad2-pools

Single-paragraph reading-comprehension questions from **SQuAD 2.0**, turned into small
retrieval pools of hard, same-article distractors; about half the questions are
unanswerable from the text.

## Source

- Rajpurkar, Jia & Liang, *Know What You Don't Know: Unanswerable Questions for SQuAD*, ACL 2018.
- `dev-v2.0.cs224n_half.json` from github.com/chrischute/squad @ `85623ad`, `data/dev-v2.0.json`
  (MIT starter code of Stanford CS224N): the CS224N split, about half of the official dev set
  (16 articles, 646 paragraphs, 6,078 questions of which 3,168 unanswerable).

## License and attribution

SQuAD 2.0 is distributed under **CC BY-SA 4.0**; the paragraphs are Wikipedia text
(CC BY-SA). `squad2-pools.jsonl` is a derived work: **share-alike applies to it**
(redistribute under CC BY-SA 4.0, attributing SQuAD 2.0, Rajpurkar et al. 2018, and
Wikipedia's authors).

## Contents

| | |
|---|---|
| examples | {stats[n]} |
| tokens per example (cl100k, full rendered context) | mean {stats[tokens_mean]}, median {stats[tokens_median]} (min {stats[tokens_min]}, max {stats[tokens_max]}) |
| chunks per example | mean {stats[chunks_mean]} (min {stats[chunks_min]}, max {stats[chunks_max]}) |
| gold chunks per example | {stats[gold_mean]} |
| answerable | {stats[answerable]} of {stats[n]} ({answerable_share:.1%}); {unanswerable} unanswerable with `answers: []` |

Tokens are those of `optimizer.Pipeline.preset("full").run(question, chunks).tokens`: all chunks
rendered with `[n]` markers and titles, `cl100k_base`. All chunks of a pool share the article
title, so the renderer prints it once.

## How gold is marked

- `gold`: true on the question's own paragraph, false on the distractors.
- **Unanswerable questions keep their source paragraph marked gold** even though it does not
  answer them: it is the paragraph the question was written against (and the one that holds
  SQuAD's `plausible_answers`, kept in `meta.plausible_answers`). Evidence recall on these
  examples therefore means "kept the paragraph the question is about"; answer recall leaves
  them out (no answers).
- `meta.type` is `answerable` / `unanswerable`; `meta.gold_position` is the 0-based position
  of the gold paragraph in `chunks`; `meta.paragraph` its index in the article.
- No sentence-level gold (`gold_spans`); SQuAD marks answer character offsets, not sentences.

## How it was built

1. All 6,078 questions in file order; a `random.Random({SEED})` draws a stratified sample:
   round(500 x 3,168 / 6,078) = {unanswerable} unanswerable and {stats[answerable]} answerable questions, kept in file order.
2. For each question, the other paragraphs of **its own article** are ranked with BM25
   (`rank_bm25.BM25Okapi`, lower-cased word tokens without stop words, ties by paragraph
   index) against the question; the top {DISTRACTORS} are the distractors, in rank order.
3. The gold paragraph is inserted at `rng.randrange(10)` (same generator, after sampling).
4. ids: the SQuAD question id; chunk ids `<question id>-<k>` with k the position in the pool.
   Answers are the distinct answer texts of the annotators, in their order.

Same-article distractors are hard on purpose: they share the topic and names, and for an
answerable question a distractor can contain the answer string too (as in real retrieval).

Rebuild (byte-identical output):

```
{commands}
```
"""


def card(stats: dict[str, Any], commands: str) -> str:
    """The dataset card (README section) for ``stats`` and the rebuild ``commands``."""
    unanswerable = stats["n"] - stats["answerable"]
    return CARD_TEMPLATE.format(stats=stats, commands=commands, DISTRACTORS=DISTRACTORS, SEED=SEED, unanswerable=unanswerable, answerable_share=stats["answerable"] / stats["n"])
