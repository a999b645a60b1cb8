"""Helpers shared by the dataset build scripts: sentence offsets, BM25 ranking, JSONL writing, stats.

These scripts are run as files (``python datasets/build.py``), not imported as a package:
the folder is called ``datasets`` and must not shadow the Hugging Face package of that name.

>>> sentence_offsets(["One.", " Two."], joiner=" ")
[(0, 4), (6, 10)]
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rank_bm25 import BM25Okapi

SEED = 20240501  # one fixed seed for every sampling and placement decision

# A frozen tokenizer for the BM25 used to choose distractors. Deliberately local (not
# optimizer.text) so a change in the library never silently changes a rebuilt dataset.
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto over under about as
    is are was were be been being am do does did have has had it its this that these those there here
    what which who whom whose when where why how i me my we our you your he him his she her they them
    their not no nor so than too very can could should would will shall may might must also just only
    s t d ll m o re ve y""".split()
)


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stop words (for choosing distractors).

    >>> bm25_tokens("What is the capital of France?")
    ['capital', 'france']
    """
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def bm25_rank(query: str, docs: Sequence[str]) -> list[int]:
    """Indices of ``docs`` by BM25 score for ``query`` (Robertson & Zaragoza 2009), ties by index.

    >>> bm25_rank("red apple", ["green pear", "red apple pie", "blue sky", "a red car", "yellow sun"])
    [1, 3, 0, 2, 4]
    """
    index = BM25Okapi([bm25_tokens(d) or ["<empty>"] for d in docs])
    return bm25_rank_with(index, query, len(docs))


def bm25_rank_with(index: BM25Okapi, query: str, n: int) -> list[int]:
    """Rank ``n`` documents of a prepared index; scores rounded so float noise never flips a tie."""
    scores = index.get_scores(bm25_tokens(query))
    return sorted(range(n), key=lambda i: (-round(float(scores[i]), 9), i))


def sentence_offsets(sentences: Sequence[str], *, joiner: str) -> list[tuple[int, int]]:
    """Character ranges of each sentence (white space stripped) in ``joiner.join(sentences)``."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s in sentences:
        start, end = pos, pos + len(s)
        start += len(s) - len(s.lstrip())
        end -= len(s) - len(s.rstrip())
        out.append((start, max(start, end)))
        pos += len(s) + len(joiner)
    return out


def check_spans(text: str, sentences: Sequence[str], spans: Sequence[tuple[int, int]], where: str) -> None:
    """Raise if a span does not give back its sentence exactly."""
    for sentence, (start, end) in zip(sentences, spans, strict=True):
        if not (0 <= start <= end <= len(text)) or text[start:end] != sentence.strip():
            raise RuntimeError(f"{where}: sentence offsets ({start}, {end}) do not map to {sentence.strip()!r}")


def unique(items: Iterable[str]) -> list[str]:
    """Distinct strings in first-seen order."""
    return list(dict.fromkeys(items))


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows as UTF-8 JSON Lines (``\\n`` line ends, keys in insertion order); return the count."""
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def validate_rows(name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Checks every build must pass: unique ids, unique chunk ids, gold spans inside their chunk."""
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise RuntimeError(f"{name}: duplicate example id {row['id']!r}")
        seen.add(row["id"])
        ids = [c["id"] for c in row["chunks"]]
        if len(ids) != len(set(ids)):
            raise RuntimeError(f"{name}: duplicate chunk ids in {row['id']!r}")
        for c in row["chunks"]:
            for start, end in c.get("gold_spans", ()):
                if not (0 <= start < end <= len(c["text"])):
                    raise RuntimeError(f"{name}: gold span {(start, end)} outside chunk {c['id']!r}")


def measure(rows: Sequence[Mapping[str, Any]], tokenizer: str = "cl100k_base") -> dict[str, Any]:
    """Size statistics of a built set, tokens counted on the full rendered context."""
    from optimizer import Pipeline

    full = Pipeline.preset("full", tokenizer=tokenizer)
    tokens = [full.run(r["question"], r["chunks"]).tokens for r in rows]
    chunks = [len(r["chunks"]) for r in rows]
    gold = [sum(bool(c.get("gold")) for c in r["chunks"]) for r in rows]
    spans = [r for r in rows if any("gold_spans" in c for c in r["chunks"])]
    return {
        "n": len(rows),
        "tokenizer": tokenizer,
        "tokens_mean": round(statistics.fmean(tokens), 1),
        "tokens_median": statistics.median(tokens),
        "tokens_min": min(tokens),
        "tokens_max": max(tokens),
        "chunks_mean": round(statistics.fmean(chunks), 2),
        "chunks_min": min(chunks),
        "chunks_max": max(chunks),
        "gold_mean": round(statistics.fmean(gold), 2),
        "with_gold_spans": len(spans),
        "answerable": sum(bool(r["answers"]) for r in rows),
        "yes_no": sum(bool(r["answers"]) and all(a.strip().lower() in ("yes", "no") for a in r["answers"]) for r in rows),
    }
