"""Quick measurement of pipelines × budgets: answer recall, evidence recall, tokens, latency.

    python bench/stages.py --data hotpotqa --limit 100 --pipelines default,bm25-topk
    python bench/stages.py --data 2wiki --pipelines default --set sentences.hops=1 --label no-hop
    python bench/stages.py --data hotpotqa --latency 100          # p50/p95 of Pipeline.run, models warm

Recall passes memoize embeddings across budgets (same numbers, less waiting); latency is
measured separately, without that memo, on the first ``--latency`` questions at budget 0.25.
Results are printed as a markdown table and appended as JSON lines to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from evals.metrics import answer_recall, evidence_recall  # noqa: E402
from optimizer.models import ModelStore, use_store  # noqa: E402
from optimizer.pipeline import Pipeline  # noqa: E402
from optimizer.presets import preset_config  # noqa: E402
from optimizer.registry import DEPRECATED_ALIASES  # noqa: E402


class _Memo:
    """Wrap an embedder so each text is encoded once per process (recall passes only)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.memo = inner, inner.name, inner.dim, {}

    def encode(self, texts):  # type: ignore[no-untyped-def]
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            for t, v in zip(missing, self.inner.encode(missing)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts]) if texts else self.inner.encode(texts)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build(name: str, overrides: list[str]) -> Pipeline:
    """A preset with ``stage.param=value`` overrides (``stage`` is the step's stage name)."""
    config = preset_config(name)
    for item in overrides:
        key, value = item.split("=", 1)
        stage, param = key.split(".", 1)
        removed = stage.startswith("-")
        stage = DEPRECATED_ALIASES.get(stage.lstrip("-"), stage.lstrip("-"))  # "sentences.x" still works
        steps = [s for s in config["steps"] if s["stage"] == stage]
        if removed:  # "-dedupe-near.x=1" removes that step
            config["steps"] = [s for s in config["steps"] if s["stage"] != stage]
            continue
        if not steps:
            config["steps"].insert(0 if stage != "compress-sentences" else len(config["steps"]), {"stage": stage, "params": {}})
            steps = [s for s in config["steps"] if s["stage"] == stage]
        if param != "_":
            steps[0].setdefault("params", {})[param] = parse_value(value)
    return Pipeline.from_config(config)


def static_from_table(table: Path) -> Path:
    """The model folder of a candidate static table (``.npz``), built once into the cache; the table is never written next to."""
    import hashlib

    from optimizer.cache import cache_dir
    from optimizer.embeddings import build_static_model

    digest = hashlib.sha256(table.read_bytes()).hexdigest()[:12]
    folder = cache_dir() / "static-candidates" / f"{table.stem}-{digest}"
    if not (folder / "model.safetensors").is_file():
        build_static_model(folder, table=table)
    return folder


def models(static: Path | None) -> ModelStore:
    """A new store; with ``static``, its 'static' embedder is that candidate model (a new instance, nothing memoized)."""
    store = ModelStore()
    if static is not None:
        from optimizer.embeddings import StaticEmbedder

        store.put(("embedder", "static"), StaticEmbedder(static, name="static"))
    return store


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure(pipe: Pipeline, examples: list[Any], budgets: list[float], latency_n: int) -> list[dict[str, Any]]:
    rows = []
    for budget in budgets:
        ar, er, toks, full = [], [], [], []
        for ex in examples:
            result = pipe.run(ex.question, ex.chunks, budget=budget)
            r = answer_recall(result.text, ex.answers)
            if r is not None:
                ar.append(r)
            e = evidence_recall({s.chunk_id for s in result.spans}, ex.gold_ids)
            if e is not None:
                er.append(e)
            toks.append(result.tokens)
            full.append(result.tokens_full)
        rows.append(
            {
                "budget": budget,
                "answer_recall": statistics.fmean(ar) if ar else None,
                "n_answer": len(ar),
                "evidence_recall": statistics.fmean(er) if er else None,
                "tokens_mean": statistics.fmean(toks),
                "tokens_full_mean": statistics.fmean(full),
            }
        )
    return rows


def latency(pipe: Pipeline, examples: list[Any], n: int, budget: float = 0.25) -> tuple[float, float]:
    pipe.warm_up()
    for ex in examples[:3]:
        pipe.run(ex.question, ex.chunks, budget=budget)
    times = []
    for ex in examples[:n]:
        t = time.perf_counter()
        pipe.run(ex.question, ex.chunks, budget=budget)
        times.append((time.perf_counter() - t) * 1000)
    return pct(times, 50), pct(times, 95)


def table(path: str) -> str:
    """Markdown tables (one per dataset) from the JSON lines ``--out`` wrote."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for data in dict.fromkeys(r["data"] for r in records):
        rows = [r for r in records if r["data"] == data and "rows" in r]
        budgets = sorted({b["budget"] for r in rows for b in r["rows"]})
        head = "| pipeline | " + " | ".join(f"AR / ER / tokens @ {b:g}" for b in budgets) + " | p50 / p95 ms |"
        out += [f"**{data}** (n={rows[0]['n'] if rows else 0})", "", head, "|---" * (len(budgets) + 2) + "|"]
        for r in rows:
            cells = {b["budget"]: f"{b['answer_recall']:.3f} / {b['evidence_recall']:.3f} / {b['tokens_mean']:.0f}" for b in r["rows"]}
            lat = f"{r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f}" if "latency_ms_p50" in r else "-"
            out.append(f"| {r['pipeline']} | " + " | ".join(cells.get(b, "-") for b in budgets) + f" | {lat} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="hotpotqa")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--pipelines", default="default")
    ap.add_argument("--budgets", default="0.125,0.25,0.5")
    ap.add_argument("--set", action="append", default=[], help="stage.param=value override (repeatable)")
    ap.add_argument("--label", default=None)
    ap.add_argument("--latency", type=int, default=0, help="questions to time (0: skip)")
    ap.add_argument("--no-recall", action="store_true")
    ap.add_argument("--out", default=None, help="append JSON lines here")
    ap.add_argument("--table", default=None, help="print markdown tables from a --out file and exit")
    ap.add_argument("--static-table", default=None, help="use this static table (.npz, train_static*.py) as the 'static' model")
    args = ap.parse_args(argv)
    if args.table:
        print(table(args.table))
        return

    ds = load_dataset(args.data)
    examples = list(ds.examples)[args.offset :]
    if args.limit is not None:
        examples = examples[: args.limit]
    budgets = [float(b) for b in args.budgets.split(",")]
    out = []
    static = static_from_table(Path(args.static_table)) if args.static_table else None
    memo_store = models(static)  # embedders wrapped to remember vectors across pipelines and budgets
    for name in args.pipelines.split(","):
        pipe = build(name, args.set)
        label = args.label if args.label else name
        record: dict[str, Any] = {"data": args.data, "n": len(examples), "pipeline": label, "overrides": args.set}
        if args.static_table:
            record["static_table"] = args.static_table
        if args.latency:
            with use_store(models(static)):  # fresh models: nothing memoized from an earlier pipeline
                p50, p95 = latency(pipe, examples, args.latency)
            record.update(latency_ms_p50=round(p50, 2), latency_ms_p95=round(p95, 2), latency_n=min(args.latency, len(examples)))
        if not args.no_recall:
            with use_store(memo_store):
                pipe.warm_up()
                for key in memo_store.keys():
                    item = memo_store.get(key, lambda: None)
                    if key[0] == "embedder" and not isinstance(item, _Memo):
                        memo_store.put(key, _Memo(item))
                t = time.perf_counter()
                record["rows"] = measure(pipe, examples, budgets, args.latency)
                record["seconds"] = round(time.perf_counter() - t, 1)
        out.append(record)
        cells = " | ".join(
            f"{r['budget']:g}: AR {r['answer_recall']:.3f} ER {r['evidence_recall']:.3f} tok {r['tokens_mean']:.0f}"
            for r in record.get("rows", [])
        )
        lat = f" | p50 {record['latency_ms_p50']} ms p95 {record['latency_ms_p95']} ms" if "latency_ms_p50" in record else ""
        print(f"{args.data} n={len(examples)} {label:<28} {cells}{lat}", flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
