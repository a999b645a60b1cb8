"""HotpotQA dev, distractor setting: 500 IRCoT questions; sentence-level gold for the first 100.

Chunk text is the IRCoT ``paragraph_text`` unchanged. For the 100 questions that are also in
the Hugging Face-layout file (matched by question text), the paragraph text is exactly the
source sentences joined by one space, so each supporting sentence's ``[start, end)`` offsets
are computed by walking that join and checked to give the sentence back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import check_spans, sentence_offsets, unique

NAME = "hotpotqa"
FILES = ("hotpotqa/ircot_dev_subsampled.jsonl", "hotpotqa/meve_hotpot_dev_distractor_first100.json")


def _sentence_gold(raw: Path) -> dict[str, dict[str, Any]]:
    """Question text -> type, level, sentences per title and supporting sentence ids per title."""
    with open(raw / FILES[1], encoding="utf-8") as f:
        data = json.load(f)
    out: dict[str, dict[str, Any]] = {}
    for ex in data:
        support: dict[str, list[int]] = {}
        for title, sid in zip(ex["supporting_facts"]["title"], ex["supporting_facts"]["sent_id"], strict=True):
            support.setdefault(title, []).append(sid)
        out[ex["question"]] = {
            "type": ex["type"],
            "level": ex["level"],
            "sentences": dict(zip(ex["context"]["title"], ex["context"]["sentences"], strict=True)),
            "support": support,
        }
    return out


def build(raw: Path) -> list[dict[str, Any]]:
    """Convert the raw files under ``raw`` into rows of the common schema."""
    detail = _sentence_gold(raw)
    rows: list[dict[str, Any]] = []
    matched = 0
    with open(raw / FILES[0], encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            qid = ex["question_id"]
            extra = detail.get(ex["question_text"])
            matched += extra is not None
            chunks = []
            for k, para in enumerate(ex["contexts"]):
                chunk: dict[str, Any] = {
                    "id": f"{qid}-{k}",
                    "title": para["title"],
                    "text": para["paragraph_text"],
                    "gold": bool(para["is_supporting"]),
                }
                if extra is not None and chunk["gold"]:
                    sentences = extra["sentences"][para["title"]]
                    if " ".join(sentences) != chunk["text"]:
                        raise RuntimeError(f"{qid}: paragraph {para['title']!r} differs from its sentences")
                    offsets = sentence_offsets(sentences, joiner=" ")
                    check_spans(chunk["text"], sentences, offsets, f"{qid}/{para['title']}")
                    sids = sorted(set(extra["support"].get(para["title"], [])))
                    if not sids:
                        raise RuntimeError(f"{qid}: gold paragraph {para['title']!r} has no supporting sentence")
                    chunk["gold_spans"] = [list(offsets[i]) for i in sids]
                chunks.append(chunk)
            if extra is not None and set(extra["support"]) != {c["title"] for c in chunks if c["gold"]}:
                raise RuntimeError(f"{qid}: sentence-level and paragraph-level gold disagree")
            meta: dict[str, Any] = {"source": "hotpotqa", "setting": "distractor"}
            if extra is not None:
                meta.update(type=extra["type"], level=extra["level"])
            meta["sentence_gold"] = extra is not None
            answers = unique(a for obj in ex["answers_objects"] for a in obj["spans"])
            rows.append({"id": qid, "question": ex["question_text"], "answers": answers, "chunks": chunks, "meta": meta})
    if matched != len(detail):
        raise RuntimeError(f"only {matched} of {len(detail)} sentence-level questions found in the IRCoT file")
    return rows


def card(stats: dict[str, Any], commands: str) -> str:
    return f"""# hotpotqa

Multi-hop questions over Wikipedia paragraphs, HotpotQA dev set, **distractor setting**:
each question comes with its 2 gold paragraphs plus up to 8 distractor paragraphs.

## Source

- Yang et al., *HotpotQA: A Dataset for Diverse, Explainable Multi-hop Question Answering*, EMNLP 2018.
- `ircot_dev_subsampled.jsonl` from github.com/xindili-cmu/anlp-project-multihop @ `df0d575`,
  `processed_data/hotpotqa/dev_subsampled.jsonl` (the 500-question dev subsample of IRCoT,
  Trivedi et al., ACL 2023; repository Apache-2.0).
- `meve_hotpot_dev_distractor_first100.json` from github.com/nakulbh/Meve-framework @ `a83b659`,
  `data/hotpot_dev_distractor_v1.json` (repository MIT): the first 100 dev questions in the
  Hugging Face layout, with sentence-level supporting facts, `type` and `level`.

## License and attribution

HotpotQA is distributed under **CC BY-SA 4.0**; the paragraphs are Wikipedia text (CC BY-SA).
`hotpotqa.jsonl` is a derived work: **share-alike applies to it** (redistribute it under
CC BY-SA 4.0 with attribution to HotpotQA, Yang et al. 2018, and Wikipedia's authors).

## Contents

| | |
|---|---|
| examples | {stats['n']} |
| tokens per example (cl100k, full rendered context) | mean {stats['tokens_mean']}, median {stats['tokens_median']} (min {stats['tokens_min']}, max {stats['tokens_max']}) |
| chunks per example | mean {stats['chunks_mean']} (min {stats['chunks_min']}, max {stats['chunks_max']}) |
| gold chunks per example | {stats['gold_mean']} |
| examples with sentence-level gold (`gold_spans`) | {stats['with_gold_spans']} |
| answerable | {stats['answerable']} of {stats['n']} ({stats['yes_no']} are yes/no and are left out of answer recall) |

Tokens are those of `optimizer.Pipeline.preset("full").run(question, chunks).tokens`: all chunks
rendered with `[n]` markers and titles, `cl100k_base`.

## How gold is marked

- Every chunk has `gold`: true for the two supporting paragraphs (IRCoT's `is_supporting`).
- For the {stats['with_gold_spans']} questions also in the first-100 file (matched by question text), each gold
  chunk also has `gold_spans`: `[start, end]` character offsets into that chunk's `text` of
  its supporting sentences. The chunk text is the IRCoT paragraph text unchanged; it equals
  the source sentences joined by one space, and the build checks that every span gives back
  its sentence exactly (white space at the ends stripped).
- `meta.type` (bridge/comparison) and `meta.level` exist only for those {stats['with_gold_spans']} questions
  (the IRCoT file does not carry them); `meta.sentence_gold` says which examples have spans.

## How it was built

One row per IRCoT question, in file order; id = HotpotQA question id; chunk ids
`<question id>-<k>` with k the paragraph's position; answers = the IRCoT answer spans. Seven
questions have only their 2 gold paragraphs and a few have 5-8 paragraphs, as in the source.

Rebuild (byte-identical output):

```
{commands}
```
"""
