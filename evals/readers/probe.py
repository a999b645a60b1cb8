"""How much does a reader gain from a clean context? Its accuracy with only the gold chunks,
with all chunks, and with none, on a dataset in the common schema.

Run it before a sweep to know the reader's ceiling (gold) and floor (all / none)::

    python -m evals.readers.probe --reader local --data hotpotqa --n 40 --cache /tmp/rc.sqlite

>>> from evals.readers.fake import FakeReader
>>> from evals.datasets import Example
>>> from optimizer import Chunk
>>> ex = Example(id="q1", question="Which river flows through Paris?", answers=("Seine",),
...     chunks=(Chunk(id="a", text="Lyon is big.", metadata={"gold": False}),
...             Chunk(id="b", text="The Seine flows through Paris.", metadata={"gold": True})), meta={})
>>> rows = probe(FakeReader(), [ex], settings=("gold", "none"))
>>> [(r["setting"], r["accuracy"]) for r in summarize(rows)]
[('gold', 1.0), ('none', 0.0)]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from evals.metrics import accuracy, normalize
from optimizer.render import Renderer

SETTINGS = ("gold", "all", "none")


def _context(example: Any, setting: str, renderer: Renderer) -> str:
    if setting == "gold":
        chunks = [c for c in example.chunks if c.metadata.get("gold") is True]
    elif setting == "all":
        chunks = list(example.chunks)
    elif setting == "none":
        chunks = []
    else:
        raise ValueError(f"unknown context setting {setting!r}; choose from {SETTINGS}")
    return renderer.render(chunks).text


def probe(reader: Any, examples: Iterable[Any], *, settings: Sequence[str] = SETTINGS) -> list[dict[str, Any]]:
    """One row per (example, setting): the prediction, its accuracy, latency, cached flag."""
    renderer = Renderer()
    examples = list(examples)
    rows: list[dict[str, Any]] = []
    for setting in settings:
        items = [(ex.question, _context(ex, setting, renderer)) for ex in examples]
        for ex, out in zip(examples, reader.answer_many(items)):
            rows.append(
                {
                    "id": ex.id,
                    "setting": setting,
                    "prediction": out.text,
                    "ok": out.ok,
                    "error": out.error,
                    "accuracy": accuracy(out.text if out.text is not None else "", ex.answers),
                    "latency_ms": out.latency_ms,
                    "cached": out.cached,
                    "prompt_tokens": out.prompt_tokens,
                }
            )
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: n, accuracy (mean over counted examples), failures, latency of uncached calls."""
    out = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        accs = [r["accuracy"] for r in mine if r["accuracy"] is not None]
        fresh = [r["latency_ms"] for r in mine if not r["cached"] and r["ok"]]
        toks = [r["prompt_tokens"] for r in mine if r["prompt_tokens"] is not None]
        out.append(
            {
                "setting": setting,
                "n": len(accs),
                "accuracy": round(float(statistics.mean(accs)), 3) if accs else None,
                "failures": sum(not r["ok"] for r in mine),
                "latency_ms_mean": round(statistics.mean(fresh), 1) if fresh else None,
                "latency_ms_p50": round(statistics.median(fresh), 1) if fresh else None,
                "prompt_tokens_mean": round(statistics.mean(toks), 1) if toks else None,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from evals.datasets import load_dataset
    from evals.readers import READER_NAMES, make_reader

    ap = argparse.ArgumentParser(prog="python -m evals.readers.probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", default="local", choices=[n for n in READER_NAMES if n != "none"])
    ap.add_argument("--model", default=None, help="model name (openai reader)")
    ap.add_argument("--base-url", default=None, help="endpoint root (openai reader)")
    ap.add_argument("--data", default="hotpotqa", help="bundled dataset name or .jsonl path")
    ap.add_argument("--n", type=int, default=40, help="number of examples")
    ap.add_argument("--skip-yes-no", action="store_true", help="leave out examples whose answers are all yes/no")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma list of gold,all,none")
    ap.add_argument("--cache", default=None, help="reader cache file (SQLite)")
    ap.add_argument("--rows", default=None, help="write per-example rows to this .jsonl")
    args = ap.parse_args(argv)

    options: dict[str, Any] = {}
    if args.model is not None:
        options["model"] = args.model
    if args.base_url is not None:
        options["base_url"] = args.base_url
    reader = make_reader(args.reader, cache=args.cache, **options)
    examples = []
    for ex in load_dataset(args.data):
        if args.skip_yes_no and all(normalize(a) in ("yes", "no") for a in ex.answers):
            continue
        examples.append(ex)
        if len(examples) >= args.n:
            break
    rows = probe(reader, examples, settings=[s for s in args.settings.split(",") if s])
    if args.rows is not None:
        with open(args.rows, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"reader={reader.name} model={reader.model} data={args.data} n={len(examples)}")
    for s in summarize(rows):
        print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
