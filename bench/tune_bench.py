"""Benchmarks behind bench/RESULTS-tune.md: the tuner's answers, and adaptive vs fixed budgets.

    python bench/tune_bench.py tune --data hotpotqa --pipelines default,truncate --targets 0.98,0.95
    python bench/tune_bench.py adaptive --data hotpotqa --pipeline default
    python bench/tune_bench.py confidence --data hotpotqa --limit 200 --seeds 10

``confidence`` measures how often the chosen budget meets the target on the held-out half under the point
rule and under ``--confidence`` levels (one JSON line per seed and rule in ``confidence-<data>.jsonl``).

Both print markdown tables to stdout and write JSON (and, for ``adaptive``, a PNG) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# this checkout's code, not whichever one the environment has installed (a worktree of an old commit runs its own)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tune_cmd(args: argparse.Namespace) -> None:
    from evals.datasets import load_dataset
    from evals.tune import evaluate_at, tune_budget
    from optimizer import Pipeline

    data = load_dataset(args.data, limit=args.limit)
    out = []
    print(f"| pipeline | target | budget B (share) | tokens at median | metric at B (95% CI) | full | delta (95% CI) | "
          f"tokens saved / 1k q | $ saved / 1k q | evals | {args.metric} at B (check) | at 0.85B (check) | fails above B | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.pipelines.split(","):
        memo: dict = {}
        for target in (float(t) for t in args.targets.split(",")):
            start = time.perf_counter()
            r = tune_budget(data, name, metric=args.metric, target_retention=target, memo=memo, holdout=0)  # the in-sample table of BENCHMARKS.md
            seconds = time.perf_counter() - start
            at_b, full = evaluate_at(data, name, r.budget, metric=args.metric)
            below, _ = evaluate_at(data, name, round(0.85 * r.budget, 6), metric=args.metric)
            row = r.to_dict() | {"check_at_b": at_b, "check_at_085b": below, "check_full": full, "seconds": round(seconds, 1),
                                 "holds_at_b": at_b >= target * full, "misses_at_085b": below < target * full,
                                 "pipeline_config": Pipeline.preset(name).to_config()}
            out.append(row)
            print(f"| {name} | {target:g} | {r.budget:.4f} | {r.tokens} | {r.metric:.4f} ({r.ci[0]:.3f}-{r.ci[1]:.3f}) | "
                  f"{r.full_metric:.4f} | {r.delta:+.4f} ({r.delta_ci[0]:+.3f}..{r.delta_ci[1]:+.3f}) | "
                  f"{r.tokens_saved_per_1k:,.0f} | {r.cost_saved_per_1k:.3f} | {len(r.evaluations)} | "
                  f"{at_b:.4f} {'holds' if row['holds_at_b'] else 'MISSES'} | {below:.4f} {'misses' if row['misses_at_085b'] else 'HOLDS'} | "
                  f"{', '.join(f'{s:g}' for s in r.fails_above) or '-'} | {seconds:.0f} |", flush=True)
    _write(args.out / f"tune-{args.data}.json", {"meta": _meta(), "results": out})


def adaptive_cmd(args: argparse.Namespace) -> None:
    from evals.datasets import load_dataset
    from evals.sweep import run_eval
    from optimizer import Pipeline
    from optimizer.adaptive import AdaptiveBudget

    data = load_dataset(args.data, limit=args.limit)
    fixed = [float(b) for b in args.fixed.split(",")]
    settings = [AdaptiveBudget(mass=m, temperature=t) for t in (1.0, 0.5) for m in (0.5, 0.7, 0.8, 0.9, 0.95)]
    settings += [AdaptiveBudget(rule="gap"), AdaptiveBudget(mass=0.9, unit="chunk")]
    pipes: list = [args.pipeline]
    labels = {}
    for s in settings:
        p = Pipeline.preset(args.pipeline, adaptive=s)
        p.name = f"{args.pipeline}+adaptive({s.rule}" + (f" m={s.mass:g} T={s.temperature:g}" if s.rule == "mass" else "") + (f" {s.unit}" if s.unit != "sentence" else "") + ")"
        labels[p.name] = s
        pipes.append(p)
    start = time.perf_counter()
    # fixed budgets for the plain preset; the adaptive ones run under a hard cap of 100 % (so only the rule decides)
    run_fixed = run_eval(data, [args.pipeline], fixed, progress=False, resamples=1)
    run_adapt = run_eval(data, pipes[1:], [1.0], progress=False, resamples=1000)
    seconds = time.perf_counter() - start
    curve = sorted((r.metrics.tokens_mean, r.metrics.answer_recall, r.budget)
                   for r in run_fixed.runs if r.pipeline == args.pipeline)
    full = run_fixed.run_for("full", None).metrics.to_dict()
    rows = []
    print(f"| arm | tokens mean | share of full | answer recall | delta vs full (95% CI) | fixed-budget recall at the same tokens | fixed-budget tokens for the same recall | token saving at equal recall |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| full | {full['tokens_mean']:.1f} | 1.000 | {full['answer_recall']:.4f} | | | | |")
    for t, rec, b in curve:
        print(f"| {args.pipeline}@{b:g} (fixed) | {t:.1f} | {t / full['tokens_mean']:.3f} | {rec:.4f} | | | | |")
        rows.append({"arm": f"{args.pipeline}@{b:g}", "kind": "fixed", "budget": b, "tokens_mean": t, "answer_recall": rec})
    for r in (run_.to_dict() for run_ in run_adapt.runs):
        if r["pipeline"] == "full":
            continue
        m = r["metrics"]
        t, rec = m["tokens_mean"], m["answer_recall"]
        rec_fixed = _interp(t, [(c[0], c[1]) for c in curve])
        tok_fixed = _inverse(rec, [(c[0], c[1]) for c in curve])
        saving = (1 - t / tok_fixed) if tok_fixed else None
        d = r["vs_full"]["answer_recall"]
        print(f"| {r['pipeline']} | {t:.1f} | {t / full['tokens_mean']:.3f} | {rec:.4f} | {d['delta']:+.4f} ({d['ci95'][0]:+.3f}..{d['ci95'][1]:+.3f}) | "
              f"{_f(rec_fixed)} | {_f(tok_fixed, 1)} | {_pct(saving)} |")
        rows.append({"arm": r["pipeline"], "kind": "adaptive", "settings": labels[r["pipeline"]].to_dict(), "tokens_mean": t,
                     "answer_recall": rec, "delta_vs_full": d, "fixed_recall_at_same_tokens": rec_fixed,
                     "fixed_tokens_for_same_recall": tok_fixed, "token_saving_at_equal_recall": saving})
    print(f"\n{len(data.examples)} examples, {seconds:.0f} s")
    _write(args.out / f"adaptive-{args.data}.json", {"meta": _meta(), "pipeline_config": Pipeline.preset(args.pipeline).to_config(),
                                                   "full": full, "rows": rows, "seconds": round(seconds, 1)})
    _plot(rows, full, args.out / f"adaptive-{args.data}.png", f"{args.pipeline} on {args.data} (n={len(data.examples)})")


def confidence_cmd(args: argparse.Namespace) -> None:
    from evals.datasets import load_dataset
    from evals.tune import tune_budget

    data = load_dataset(args.data, limit=args.limit)
    levels = [None] + [float(c) for c in args.levels.split(",")]
    rows = []
    for seed in range(args.seeds):
        memo: dict = {}  # the rules of one seed share the tune half: each evaluates only its own bisection steps
        for conf in levels:
            start = time.perf_counter()
            r = tune_budget(data, args.pipeline, metric=args.metric, target_retention=args.target, seed=seed,
                            resamples=1000, memo=memo, confidence=conf)
            h = r.held_out
            row = {"data": args.data, "n": len(data.examples), "seed": seed, "confidence": conf, "budget": r.budget,
                   "met": r.met, "in_retention": r.retention, "bound": r.retention_bound, "tokens_mean": r.tokens_mean,
                   "tokens_full_mean": r.tokens_full_mean, "held_retention": h.retention, "held_met": h.met,
                   "held_checked": h.checked, "held_tokens_mean": h.tokens_mean,
                   "held_tokens_full_mean": h.tokens_full_mean, "evals": len(r.evaluations),
                   "secs": round(time.perf_counter() - start, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    path = args.out / f"confidence-{args.data}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _interp(x: float, pts: list[tuple[float, float]]) -> float | None:
    """y of the piecewise-linear curve through ``pts`` (sorted by x) at ``x``; None outside."""
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _inverse(y: float, pts: list[tuple[float, float]]) -> float | None:
    """Smallest x at which the piecewise-linear curve reaches ``y``; None outside its range."""
    if not pts or y < pts[0][1]:
        return None  # below the smallest fixed budget measured: no fair comparison
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y0 >= y:
            return x0
        if y0 < y <= y1:
            return x0 + (x1 - x0) * (y - y0) / (y1 - y0)
    return None


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f} %"


def _plot(rows: list[dict], full: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    f = [r for r in rows if r["kind"] == "fixed"]
    ax.plot([r["tokens_mean"] for r in f], [r["answer_recall"] for r in f], "o-", label="fixed budget (share)")
    for r in f:
        ax.annotate(f"{r['budget']:g}", (r["tokens_mean"], r["answer_recall"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    a = [r for r in rows if r["kind"] == "adaptive"]
    ax.scatter([r["tokens_mean"] for r in a], [r["answer_recall"] for r in a], marker="x", color="C3", label="adaptive")
    ax.axhline(full["answer_recall"], color="gray", ls=":", label="full context")
    ax.set_xlabel("mean context tokens")
    ax.set_ylabel("answer recall")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _meta() -> dict:
    return {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version()}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--data", default="hotpotqa")
    t.add_argument("--pipelines", default="default,truncate")
    t.add_argument("--targets", default="0.98,0.95")
    t.add_argument("--metric", default="answer_recall")
    a = sub.add_parser("adaptive")
    a.add_argument("--data", default="hotpotqa")
    a.add_argument("--pipeline", default="default")
    a.add_argument("--fixed", default="0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.6,0.7,0.8,1.0")
    c = sub.add_parser("confidence")
    c.add_argument("--data", default="hotpotqa")
    c.add_argument("--pipeline", default="default")
    c.add_argument("--metric", default="answer_recall")
    c.add_argument("--target", type=float, default=0.95)
    c.add_argument("--levels", default="0.8,0.9")
    c.add_argument("--seeds", type=int, default=10)
    for p in (t, a, c):
        p.add_argument("--limit", type=int, default=None)
        p.add_argument("--out", type=Path, default=Path("bench/results-tune"))
    args = parser.parse_args()
    {"tune": tune_cmd, "adaptive": adaptive_cmd, "confidence": confidence_cmd}[args.cmd](args)


if __name__ == "__main__":
    main()
