"""Quick leave-one-dataset-out check of the ``default`` scorer by pipeline-exact replay (no report).

    python bench/lodo_quick.py                 # every fold: fit + choose selector without H, recall on H
    python bench/lodo_quick.py --fixed '{"density": 0.5}'   # skip the grid, use these selector settings

Prints, per held-out set, the answer recall at 12.5 / 25 / 50 % of the ``default`` scorer
fitted and tuned without that set. Uses the cached static pass of ``bench/fit_scorer.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from fit_scorer import choose_selector, feature_names, fit_model, load_pass, relative_probability  # noqa: E402
from scorer_data import BUDGETS, SETS, replay  # noqa: E402

from optimizer.pipeline import Pipeline  # noqa: E402
from optimizer.stages.sentence_select import SentenceSelector  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", default=None, help="selector settings as JSON (skips the grid)")
    parser.add_argument("--features", default=None, help="comma-separated feature subset (ablation)")
    parser.add_argument("--kind", default="default", choices=["default", "quality"])
    parser.add_argument("--retriever", action="store_true",
                        help="the MiniLM pass with the simulated retriever signal: plain vs retriever model side by side")
    parser.add_argument("--limit-test", type=int, default=None, help="score only the first N of the held-out set")
    parser.add_argument("--drop", default=None, help="comma-separated features to leave out (ablation)")
    args = parser.parse_args()
    pipe = Pipeline.preset("default")
    data = load_pass("minilm" if args.retriever or args.kind == "quality" else "static", SETS, pipe)
    names = tuple(args.features.split(",")) if args.features else feature_names(args.kind, args.retriever)
    if args.drop:
        names = tuple(n for n in names if n not in args.drop.split(","))
    for held in SETS:
        train = {k: v for k, v in data.items() if k != held}
        model = fit_model([p for v in train.values() for p in v], names)
        settings = json.loads(args.fixed) if args.fixed else choose_selector(train, pipe, model)[0]
        selector = SentenceSelector(**settings)
        test = [p for p in data[held] if p.dataset == held][: args.limit_test]
        test = [p for p in test if p.counts]
        contexts: dict = {}
        recall = [np.mean([replay(p, pipe, relative_probability(model, p), selector, b, contexts) for p in test]) for b in BUDGETS]
        coef = {n: round(float(c), 2) for n, c in zip(model.names, model.coef)}
        print(f"{held:13s} n={len(test)} " + " / ".join(f"{r:.3f}" for r in recall) + f"  selector={settings}", flush=True)
        print(f"    coef {coef}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
