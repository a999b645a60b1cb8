"""Probe (issue 11, ninth round): embed only the question with MiniLM, mapped linearly into the static model's space.

    python bench/query_projection.py        # gold passage first on the dev set nq-extra, four ways

`default` embeds question and passages with the static model. A question is short and its
meaning depends on word order, where a bag of word pieces is weakest, while one MiniLM pass over
a question is cheap. The map between the two spaces is a ridge regression fitted on 6,000
random WordNet texts (Debian ``wordnet-base``; no eval text), embedded by both models:
``A`` maps MiniLM's question vector into the static space; ``W`` maps the static passage
vectors into MiniLM's space; ``mix`` adds the static and the mapped question vectors. Measured
on the fit-only dev set ``runs/fit-extra/nq-extra.jsonl`` (``bench/fit_extra.py``), never on a
reported set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from train_static import wordnet_texts  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from optimizer.embeddings import get_embedder  # noqa: E402

DEV = Path(__file__).resolve().parent.parent / "runs" / "fit-extra" / "nq-extra.jsonl"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def ridge(x: np.ndarray, y: np.ndarray, lam: float = 1e-2) -> np.ndarray:
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def main() -> int:
    static, mini = get_embedder("static"), get_embedder("minilm-int8")
    texts = wordnet_texts(Path("/usr/share/wordnet"))
    sample = [texts[i] for i in np.random.default_rng(0).choice(len(texts), 6000, replace=False)]
    s, m = static.encode(sample), mini.encode(sample)
    a, w = ridge(m, s), ridge(s, m)
    hits: dict[str, int] = {"static": 0, "A": 0, "W": 0, "mix": 0}
    n = 0
    for ex in load_dataset(DEV).examples:
        gold = set(ex.gold_ids)
        if not gold:
            continue
        p = static.encode([f"{c.title or ''}. {c.text}" for c in ex.chunks])
        qs, qm = static.encode([ex.question])[0], mini.encode([ex.question])[0]
        qa = unit(qm @ a)
        scores = {"static": p @ qs, "A": p @ qa, "W": unit(p @ w) @ qm, "mix": p @ unit(qs + qa)}
        for k, v in scores.items():
            hits[k] += ex.chunks[int(np.argmax(v))].id in gold
        n += 1
    for k, v in hits.items():
        print(f"{k:6s} gold passage first {v / n:.3f} (n={n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
