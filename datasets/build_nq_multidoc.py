"""NQ-Open multi-document QA in the manner of *Lost in the Middle*: 20 passages, one gold.

From the study's oracle file (one gold passage per question), a seeded sample of 500
questions each get 19 distractors: other questions' gold passages, ranked by BM25 against
the question, skipping any that contain a normalized gold answer. The gold passage cycles
through positions 0, 4, 9, 14, 19.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _common import SEED, bm25_rank_with, bm25_tokens, unique
from rank_bm25 import BM25Okapi

from evals.metrics import contains_answer

NAME = "nq-multidoc"
FILES = ("lost_in_the_middle/nq-open-oracle.jsonl.gz",)
N = 500
DOCS = 20
POSITIONS = (0, 4, 9, 14, 19)


def passage_text(title: str, text: str) -> str:
    """What the answer check looks at: title and text, since both are rendered."""
    return f"{title}\n{text}"


def load_source(raw: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The oracle file's questions and, for each, its one gold passage."""
    with gzip.open(raw / FILES[0], "rt", encoding="utf-8") as f:
        source = [json.loads(line) for line in f]
    passages = []
    for ex in source:
        gold = [c for c in ex["ctxs"] if c.get("isgold")]
        if len(gold) != 1:
            raise RuntimeError(f"expected one gold passage per question, got {len(gold)} for {ex['question']!r}")
        passages.append(gold[0])
    return source, passages


def bm25_ranker(passages: Sequence[Mapping[str, Any]]) -> Callable[[str], list[int]]:
    """All passages ranked by BM25 against a question: how the bundled set mines its distractors."""
    index = BM25Okapi([bm25_tokens(passage_text(p["title"], p["text"])) or ["<empty>"] for p in passages])
    return lambda question: bm25_rank_with(index, question, len(passages))


def build(raw: Path) -> list[dict[str, Any]]:
    """Convert the raw file under ``raw`` into rows of the common schema."""
    source, passages = load_source(raw)
    return assemble(source, passages, bm25_ranker(passages))


def assemble(source: Sequence[Mapping[str, Any]], passages: Sequence[Mapping[str, Any]],
             rank: Callable[[str], Iterable[int]]) -> list[dict[str, Any]]:
    """The seeded 500 questions, each with its gold passage and the first 19 distractors ``rank`` gives.

    ``rank(question)`` yields passage indices, best first; a distractor is skipped if it is the
    question's own passage, repeats a text already taken, or contains a normalized answer.
    ``bench/mined_variants.py`` passes other rankers to rebuild the same questions with
    distractors mined another way.
    """
    rng = random.Random(SEED)
    picked = sorted(rng.sample(range(len(source)), N))
    rows: list[dict[str, Any]] = []
    for n, i in enumerate(picked):
        ex, gold = source[i], passages[i]
        answers = unique(ex["answers"])
        seen = {gold["text"].strip()}
        distractors: list[int] = []
        for j in rank(ex["question"]):
            p = passages[j]
            key = p["text"].strip()
            if j == i or key in seen or contains_answer(passage_text(p["title"], p["text"]), answers):
                continue
            seen.add(key)
            distractors.append(j)
            if len(distractors) == DOCS - 1:
                break
        position = POSITIONS[n % len(POSITIONS)]
        order = distractors[:position] + [i] + distractors[position:]
        qid = f"nq-{i:04d}"
        chunks = [
            {"id": f"{qid}-{k}", "title": passages[j]["title"], "text": passages[j]["text"], "gold": j == i}
            for k, j in enumerate(order)
        ]
        meta = {
            "source": "nq-open",
            "line": i + 1,
            "gold_position": position,
            "gold_has_answer": bool(contains_answer(passage_text(gold["title"], gold["text"]), answers)),
        }
        rows.append({"id": qid, "question": ex["question"], "answers": answers, "chunks": chunks, "meta": meta})
    return rows


CARD_TEMPLATE = """# nq-multidoc

Open-domain questions from **Natural Questions (NQ-Open)**, each with 20 Wikipedia passages of
which exactly one is the gold passage, in the manner of the *Lost in the Middle*
multi-document QA task. Built from that study's oracle file.

## Source

- Liu et al., *Lost in the Middle: How Language Models Use Long Contexts*, TACL 2024.
- Kwiatkowski et al., *Natural Questions*, TACL 2019; Lee et al., *Latent Retrieval for Weakly
  Supervised Open Domain QA* (NQ-Open), ACL 2019.
- `nq-open-oracle.jsonl.gz` from github.com/nelson-liu/lost-in-the-middle @ `29b8a6d`,
  `qa_data/nq-open-oracle.jsonl.gz` (repository MIT): 2,655 questions, each with its one gold
  Wikipedia passage (title + text).

## License and attribution

The passages are Wikipedia text and NQ is released under CC BY-SA 3.0; we distribute the
derived file under **CC BY-SA 4.0** (the compatible later version). **Share-alike applies to
`nq-multidoc.jsonl`**: redistribute it under CC BY-SA 4.0, attributing Natural Questions
(Google, Kwiatkowski et al. 2019), the Lost in the Middle study (Liu et al. 2024) and
Wikipedia's authors.

## Contents

| | |
|---|---|
| examples | {stats[n]} |
| tokens per example (cl100k, full rendered context) | mean {stats[tokens_mean]}, median {stats[tokens_median]} (min {stats[tokens_min]}, max {stats[tokens_max]}) |
| chunks per example | mean {stats[chunks_mean]} (min {stats[chunks_min]}, max {stats[chunks_max]}) |
| gold chunks per example | {stats[gold_mean]} |
| answerable | {stats[answerable]} of {stats[n]} |
| gold passage contains a normalized answer | {stats[gold_has_answer]} of {stats[n]} |

Tokens are those of `optimizer.Pipeline.preset("full").run(question, chunks).tokens`: all chunks
rendered with `[n]` markers and titles, `cl100k_base`.

## How gold is marked

- `gold`: true on the one gold passage (the oracle file's `isgold`), false on the 19 others.
- `meta.gold_position`: its 0-based position in `chunks`, cycling 0, 4, 9, 14, 19 over the
  examples in id order (100 examples each), so results can be split by position.
- **No distractor contains a gold answer**: every distractor's title and text were checked with
  `evals.metrics.contains_answer` (SQuAD-normalized substring test, the same test as answer
  recall), so answer recall is 1 only when text from the gold passage survives.
- `meta.gold_has_answer` says whether the gold passage itself passes that test (true for
  {stats[gold_has_answer]} of {stats[n]} here).

## How it was built

1. A `random.Random({SEED})` samples {N} of the 2,655 questions; they are kept in file order.
   id = `nq-<0-based line number>`; `meta.line` is the 1-based line.
2. The pool of candidate passages is the gold passages of **all 2,655 questions**. BM25
   (`rank_bm25.BM25Okapi` over title + text, lower-cased word tokens without stop words, ties
   by line) ranks them against the question. Walking down that ranking, a passage is skipped
   if it is the question's own, repeats a passage already taken (same text: 50 passages are
   the gold passage of 2-4 questions each), or contains a normalized gold answer; the first
   19 left are the distractors, kept in rank order (most similar first), as the study
   ordered its retrieved distractors.
3. The gold passage is inserted at the cycled position. Chunk ids `<id>-<k>`.

## How this differs from the study's files

The study's 10/20/30-document files took distractors from **Contriever retrieval over all of
Wikipedia** (the top-ranked passages without the answer), which are not available here.
Here the distractors come from a much smaller pool (the other questions' gold passages, 2,654
candidates) and are chosen by **BM25**, not a dense retriever. They are topically close by
word overlap, but on average less close than Contriever's top hits, so this set is likely
somewhat easier than the original, and absolute numbers are not comparable to the paper's.
Gold positions are cycled over five values rather than every example being run at every
position. As in the study, the answer check is a string match, so a distractor may still
answer the question in other words (e.g. another question's passage on the same topic).

Rebuild (byte-identical output):

```
{commands}
```
"""


def card(stats: dict[str, Any], commands: str) -> str:
    """The dataset card (README section) for ``stats`` and the rebuild ``commands``."""
    return CARD_TEMPLATE.format(stats=stats, commands=commands, N=N, SEED=SEED)
