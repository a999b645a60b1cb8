"""2WikiMultihopQA dev: the 164 of 200 MIGRES questions that carry their 10 paragraphs.

Chunk text is the paragraph's sentences joined by one space; ``gold_spans`` are the
``[start, end)`` offsets of the supporting sentences, checked to give each sentence back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import check_spans, sentence_offsets

NAME = "2wiki"
FILES = ("2wikimultihopqa/migres_2wiki_dev200.jsonl",)


def build(raw: Path) -> list[dict[str, Any]]:
    """Convert the raw file under ``raw`` into rows of the common schema."""
    rows: list[dict[str, Any]] = []
    with open(raw / FILES[0], encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            if not ex.get("context"):
                continue  # 36 questions come without passages
            qid = ex["_id"]
            support: dict[str, list[int]] = {}
            for title, sid in ex["supporting_facts"]:
                support.setdefault(title, []).append(sid)
            titles = [title for title, _ in ex["context"]]
            if not set(support) <= set(titles):
                raise RuntimeError(f"{qid}: supporting title missing from the context")
            chunks = []
            for k, (title, sentences) in enumerate(ex["context"]):
                text = " ".join(sentences)
                chunk: dict[str, Any] = {"id": f"{qid}-{k}", "title": title, "text": text, "gold": title in support}
                if chunk["gold"]:
                    offsets = sentence_offsets(sentences, joiner=" ")
                    check_spans(text, sentences, offsets, f"{qid}/{title}")
                    chunk["gold_spans"] = [list(offsets[i]) for i in sorted(set(support[title]))]
                chunks.append(chunk)
            answers = [ex["answer"]]  # the source has no aliases (see the card)
            meta = {
                "source": "2wikimultihopqa",
                "type": ex["type"],
                "answer_id": ex.get("answer_id"),
                "evidences": ex.get("evidences", []),
            }
            rows.append({"id": qid, "question": ex["question"], "answers": answers, "chunks": chunks, "meta": meta})
    return rows


CARD_TEMPLATE = """# 2wiki

Multi-hop questions (compositional, comparison, bridge-comparison, inference) over
Wikipedia paragraphs from **2WikiMultihopQA** dev, 10 paragraphs per question.

## Source

- Ho et al., *Constructing A Multi-hop QA Dataset for Comprehensive Evaluation of Reasoning
  Steps*, COLING 2020.
- `migres_2wiki_dev200.jsonl` from github.com/AdelWang/MIGRES @ `1de6265`, `data/wikihop.json`
  (a JSON Lines file; named "wikihop" there, but it is 2WikiMultihopQA dev). 200 questions; 164
  carry their 10-paragraph context with sentence-level `supporting_facts`, 36 carry none.

## License and attribution

2WikiMultihopQA is released under **Apache-2.0** (Ho et al., 2020). The paragraphs are
Wikipedia text; keep the attribution to the dataset authors and to Wikipedia when you share
`2wiki.jsonl`.

## Contents

| | |
|---|---|
| examples | {stats[n]} (the 36 questions without passages are left out) |
| tokens per example (cl100k, full rendered context) | mean {stats[tokens_mean]}, median {stats[tokens_median]} (min {stats[tokens_min]}, max {stats[tokens_max]}) |
| chunks per example | mean {stats[chunks_mean]} (min {stats[chunks_min]}, max {stats[chunks_max]}) |
| gold chunks per example | {stats[gold_mean]} |
| examples with sentence-level gold (`gold_spans`) | {stats[with_gold_spans]} |
| answerable | {stats[answerable]} of {stats[n]} ({stats[yes_no]} are yes/no and are left out of answer recall) |

Tokens are those of `optimizer.Pipeline.preset("full").run(question, chunks).tokens`: all chunks
rendered with `[n]` markers and titles, `cl100k_base`.

## How gold is marked

- `gold`: true for every paragraph whose title appears in `supporting_facts` (2 or 4 per question).
- `gold_spans` on each gold chunk: `[start, end]` character offsets into the chunk's `text` of the
  supporting sentences. The text is the source sentences joined by one space; the build
  checks each span gives back its sentence exactly.
- `meta.type` is the 2Wiki question type, `meta.evidences` the (subject, relation, object)
  triples of the reasoning path, `meta.answer_id` the Wikidata id of the answer.

## Notes

- **No answer aliases**: this source file has only the single `answer` string (the official
  release keeps aliases in a separate file that is not available here), so `answers` has one
  entry. Some answers are oddly title-cased (`"Mummy'S Boys"`); the metrics normalize case.
- Six questions contain the same distractor paragraph twice (same title, same text), as in
  the source; they are kept (with distinct chunk ids), which gives the dedupe stage real work.

## How it was built

One row per question that has a context, in file order; id = the 2Wiki `_id`; chunk ids
`<id>-<k>` with k the paragraph's position.

Rebuild (byte-identical output):

```
{commands}
```
"""


def card(stats: dict[str, Any], commands: str) -> str:
    """The dataset card (README section) for ``stats`` and the rebuild ``commands``."""
    return CARD_TEMPLATE.format(stats=stats, commands=commands)
