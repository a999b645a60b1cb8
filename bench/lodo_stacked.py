"""Leave-one-dataset-out check of a stacked scorer: the fitted conditional logit plus `default`'s own score.

    python bench/lodo_stacked.py            # every fold; prints default, fitted and stacked per held-out set

The stacked model gets the fitted scorer's features (computed with the static model
`default` ships) and one more column, ``hand``: `default`'s hand-weighted sentence score,
min-max scaled per question. For each held-out set H (an extra goes with its source) it is
fitted on the other groups, its selector is chosen on them (the fitted grid plus `default`'s
own selector point) and H is replayed exactly (``scorer_data.replay``) at 12.5 / 25 / 50 %.
`default` itself is replayed the same way as the incumbent. Issue 11, ninth round
(BENCHMARKS.md); the protocol was written before any number was read.
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from fit_extra import OUT as EXTRA_DIR  # noqa: E402
from fit_scorer import CACHE, GRID_EXAMPLES, fit_model, grid_selectors, relative_probability  # noqa: E402
from scorer_data import BUDGETS, EXTRA, SETS, Prepared, _context, load_prepared, replay  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from optimizer.pipeline import Pipeline  # noqa: E402
from optimizer.scoring import minmax  # noqa: E402
from optimizer.stages import sentence_scorer  # noqa: E402
from optimizer.stages.sentence_features import BASE, SentenceFeatures  # noqa: E402
from optimizer.stages.sentence_select import SentenceSelector  # noqa: E402

sentence_scorer._KNOWN = frozenset(sentence_scorer._KNOWN) | {"hand"}  # bench-only column
DEFAULT_POINT = {"density": 0.3, "tight_sentences": 4, "redundancy": 0.3, "coverage": 0.5}


def with_hand(p: Prepared, pipe: Pipeline, cache: dict) -> tuple[Prepared, np.ndarray]:
    """``p`` with the ``hand`` column, and the raw hand score (what `default`'s selector gets)."""
    key = f"{p.dataset}/{p.id}"
    if key not in cache:
        stage = pipe.steps[-1][1]
        context, _ = _context(pipe, p.chunks)
        cache[key] = stage._weighted(p.query, p.chunks, list(p.sents), context) if p.sents else np.zeros(0)
    raw = cache[key]
    col = np.array(minmax(list(raw))) if len(raw) else raw
    values = np.column_stack([p.features.values, col]) if len(raw) else np.zeros((0, len(p.features.names) + 1))
    return replace(p, features=SentenceFeatures(tuple(p.features.names) + ("hand",), values, p.features.retriever)), raw


def load(pipe: Pipeline) -> tuple[dict[str, list[Prepared]], dict[str, np.ndarray]]:
    by_group: dict[str, list[Prepared]] = {}
    sources = [(d, d, load_dataset(d).examples) for d in SETS]
    sources += [(d, g, load_dataset(EXTRA_DIR / f"{d}.jsonl").examples) for d, g in EXTRA.items()]
    hand_path = CACHE / "hand-default.pkl"
    cache = pickle.loads(hand_path.read_bytes()) if hand_path.is_file() else {}
    raws: dict[str, np.ndarray] = {}
    for dataset, group, examples in sources:
        prepared = load_prepared(dataset, examples, pipe, static="static", dense=None, cache_dir=CACHE, tag="static-trained")
        for p in prepared:
            q, raw = with_hand(p, pipe, cache)
            by_group.setdefault(group, []).append(q)
            raws[f"{p.dataset}/{p.id}"] = raw
    hand_path.write_bytes(pickle.dumps(cache))
    return by_group, raws


def recall(test: list[Prepared], pipe: Pipeline, score, selector: SentenceSelector, contexts: dict) -> list[float]:  # type: ignore[no-untyped-def]
    return [float(np.mean([replay(p, pipe, score(p), selector, b, contexts) for p in test])) for b in BUDGETS]


def choose(train: dict[str, list[Prepared]], pipe: Pipeline, model, contexts: dict) -> dict:  # type: ignore[no-untyped-def]
    subsets = [[p for p in v if p.counts and p.dataset == k][:GRID_EXAMPLES] for k, v in train.items()]
    best = None
    for settings in [*grid_selectors(), DEFAULT_POINT]:
        sel = SentenceSelector(**settings)  # type: ignore[arg-type]
        value = float(np.mean([np.mean(recall(s, pipe, lambda p: relative_probability(model, p), sel, contexts)) for s in subsets]))
        if best is None or value > best[0] + 1e-12:
            best = (value, settings)
    assert best is not None
    return best[1]


def main() -> int:
    pipe = Pipeline.preset("default")
    data, raws = load(pipe)
    contexts: dict = {}
    default_sel = pipe.steps[-1][1].selector
    rows = {}
    for held in SETS:
        test = [p for p in data[held] if p.dataset == held and p.counts]
        inc = recall(test, pipe, lambda p: raws[f"{p.dataset}/{p.id}"], default_sel, contexts)
        train = {k: v for k, v in data.items() if k != held}
        out = {"default": inc}
        for label, names in (("fitted", BASE), ("stacked", BASE + ("hand",))):
            model = fit_model([p for v in train.values() for p in v], names)
            settings = choose(train, pipe, model, contexts)
            out[label] = recall(test, pipe, lambda p, m=model: relative_probability(m, p), SentenceSelector(**settings), contexts)
            coef = {n: round(float(c), 2) for n, c in zip(model.names, model.coef)}
            print(f"{held} {label} selector={settings} coef={coef}", flush=True)
        rows[held] = out
        print(f"{held:13s} n={len(test)} " + "  ".join(f"{k} " + " / ".join(f"{r:.3f}" for r in v) for k, v in out.items()), flush=True)
    for label in ("default", "fitted", "stacked"):
        print(f"all groups {label}: {np.mean([np.mean(rows[h][label]) for h in SETS]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
