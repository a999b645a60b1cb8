"""Leave-one-dataset-out evaluation of the fitted sentence scorer.

    bash runs/base.sh        # once: `ragtrim eval` of the baselines + default per set into runs/base/<set>
    python bench/lodo.py --held all --out runs/lodo
    python bench/lodo.py --held nq-multidoc --out runs/lodo --limit 100     # quick

For the held-out set H: both scorers' weights (``default``, ``quality``; their ``plain`` and
``retriever`` models) are fitted on the other three bundled sets and their fit-only
extras, and the selector settings are chosen on those sets (``bench/fit_scorer.py``'s grid),
so nothing about H chose anything. Then ``evals.sweep.run_eval`` runs H with ``default`` /
``quality`` built from that fold's weights and settings and writes the usual report
(``results.json``, ``report.md``, ``examples.jsonl``) plus ``paired.json`` / ``paired.md``:
each minus the best baseline at each budget (and minus ``default``, the pre-fit
default), paired bootstrap over the same questions, from the baseline run's per-example
rows in ``--base``.

``--retriever-scores`` gives every chunk ``score`` = the float MiniLM cosine to the
question (what a dense retriever returns) and sorts chunks by it, so the fitted presets
use their ``retriever`` model; pair it with a baseline run on the same scored file
(``--base`` folder ``<set>+scores``, made with ``--write-scored``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fit_scorer import KINDS, PASSES, build_scorer, dump, load_pass  # noqa: E402
from paired import load_rows, paired_markdown, paired_table, recall_rows  # noqa: E402
from scorer_data import BUDGETS, SETS  # noqa: E402

from evals.datasets import Dataset, load_dataset  # noqa: E402
from evals.report import write_report  # noqa: E402
from evals.sweep import run_eval  # noqa: E402
from optimizer.embeddings import chunk_vectors, embed_texts, get_embedder  # noqa: E402
from optimizer.pipeline import Pipeline  # noqa: E402
from optimizer.presets import preset_config  # noqa: E402

BASELINES = ("truncate", "bm25-topk", "bm25-pack", "dense-topk", "sentence-dense")
NEW = ("fitted", "fitted-quality")
PRESET = {"default": "fitted", "quality": "fitted-quality"}  # scorer kind -> preset


def fold_pipeline(kind: str, weights: Path, selector: dict[str, Any]) -> Pipeline:
    """The fitted preset of scorer ``kind`` with the fold's scorer file and selector settings."""
    config = preset_config(PRESET[kind])
    for step in config["steps"]:
        if step["stage"] in ("sentences", "compress-sentences"):
            step["params"] = {"scorer": "fitted", "weights": str(weights), **selector}
    config["name"] = PRESET[kind]
    return Pipeline.from_config(config)


def with_scores(dataset: Dataset) -> Dataset:
    """Chunks scored by float MiniLM cosine (title + text) and sorted best first, like a dense retriever's output."""
    embedder = get_embedder("minilm")
    examples = []
    for ex in dataset.examples:
        q = embed_texts(embedder, [ex.question])[0]
        vecs = chunk_vectors(embedder, ex.chunks, use_title=True, reuse=False)
        scored = [replace(c, score=float(v @ q)) for c, v in zip(ex.chunks, vecs)]
        scored.sort(key=lambda c: -(c.score or 0.0))
        examples.append(replace(ex, chunks=tuple(scored)))
    return replace(dataset, examples=tuple(examples), name=f"{dataset.name}+scores")


def run_fold(held: str, out: Path, base: Path, *, limit: int | None, scored: Path | None, baselines: Sequence[str]) -> None:
    """Fit on the other sets, run ``default``/``quality`` on ``held``, pair with the baseline rows in ``base``."""
    started = time.perf_counter()
    fold = out / f"fold-{held}"
    fold.mkdir(parents=True, exist_ok=True)
    pipelines: list[Any] = []
    selectors = {}
    for kind in KINDS:
        weights = fold / f"scorer-{kind}.json"
        if not weights.is_file():
            pipe = Pipeline.preset("default")
            training = {name: {k: v for k, v in load_pass(name, SETS, pipe).items() if k != held} for name in PASSES}
            weights.write_text(dump(build_scorer(kind, training, pipe, f"python bench/lodo.py --held {held}")), encoding="utf-8")
        selectors[kind] = json.loads(weights.read_text(encoding="utf-8"))["info"]["selector"]
        pipelines.append(fold_pipeline(kind, weights, selectors[kind]))
    dataset = load_dataset(held, limit=limit)
    if scored is not None:
        dataset = load_dataset(scored / f"{held}.jsonl", limit=limit)
    run = run_eval(dataset, pipelines, list(BUDGETS), progress=False)
    target = fold / ("eval-scores" if scored is not None else "eval")
    write_report(run, target, meta={"fold": held, "selectors": selectors, "seconds": round(time.perf_counter() - started, 1)}, plot=False)
    mine = recall_rows([r.to_dict() for r in run.rows])
    base_dir = base / (f"{held}+scores" if scored is not None else held)
    theirs = recall_rows(load_rows(base_dir / "examples.jsonl"))
    present = [b for b in baselines if (b, BUDGETS[0]) in theirs]
    also = [a for a in ("default",) if (a, BUDGETS[0]) in theirs]
    table = paired_table(mine, theirs, list(NEW), present, also)
    (target / "paired.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    (target / "paired.md").write_text(paired_markdown(table), encoding="utf-8")
    print(f"## {dataset.name} (fold {held}, {len(dataset)} questions; selectors {selectors})")
    print(paired_markdown(table))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", required=True, help=f"one of {', '.join(SETS)}, or 'all'")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N questions of the held-out set")
    parser.add_argument("--retriever-scores", action="store_true")
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--scored", type=Path, default=Path("runs/scored"), metavar="DIR",
                        help="where the sets with retriever scores are (<set>.jsonl)")
    parser.add_argument("--write-scored", action="store_true",
                        help="only write each held-out set with retriever scores to --scored (for `ragtrim eval --data`)")
    parser.add_argument("--base", type=Path, default=Path("runs/base"),
                        help="folder with one `ragtrim eval` run per set (baselines, default) to pair with")
    args = parser.parse_args(argv)
    helds = SETS if args.held == "all" else tuple(args.held.split(","))
    for h in helds:
        if h not in SETS:
            parser.error(f"--held must be one of {', '.join(SETS)} or 'all', got {h!r}")
    if args.write_scored:
        args.scored.mkdir(parents=True, exist_ok=True)
        for held in helds:
            scored = with_scores(load_dataset(held, limit=args.limit))
            path = args.scored / f"{held}.jsonl"
            path.write_text("".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in scored.examples), encoding="utf-8")
            print(f"wrote {path}")
        return 0
    for held in helds:
        run_fold(held, args.out, args.base, limit=args.limit, scored=args.scored if args.retriever_scores else None,
                 baselines=[b for b in args.baselines.split(",") if b])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
