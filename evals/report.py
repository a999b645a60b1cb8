"""Write a finished sweep: ``results.json``, ``examples.jsonl``, ``report.md``, ``report.html``.

Computing is :mod:`evals.sweep` and :mod:`evals.aggregate`; this module only formats. The
report shows every metric as ``full → value`` with the paired delta and its 95 % interval
(baseline → optimized, as sentence-transformers' reranking evaluator prints it), the cost
table, and a quality-versus-tokens plot (matplotlib, Agg backend) inlined in the HTML.

>>> fmt_delta({"delta": 0.05, "ci95": [-0.02, 0.11], "n": 40})
'+0.050 [-0.020, +0.110]'
>>> fmt(None), fmt(0.5), fmt(1443.0, 1)
('–', '0.500', '1443.0')
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.metrics import MISS_KINDS
from evals.tables import Table, to_html, to_markdown, to_rich
from optimizer.budget import budget_label

METRIC_TITLES: dict[str, str] = {
    "answer_recall": "Answer recall (context holds a gold answer)",
    "evidence_recall": "Evidence recall (share of gold chunks with a whole sentence kept)",
    "tokens_mean": "Context tokens",
    "accuracy": "Reader accuracy (answer in the reader's output)",
    "em": "Reader exact match",
    "f1": "Reader token F1",
}


def fmt(x: float | int | None, digits: int = 3) -> str:
    """A number for a table (an en dash when there is none)."""
    if x is None:
        return "–"
    return f"{x:.{digits}f}"


def fmt_delta(d: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``+0.050 [-0.020, +0.110]``: the delta and its 95 % interval."""
    if d is None:
        return "–"
    lo, hi = d["ci95"]
    return f"{d['delta']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _budget(b: Any) -> str:
    return budget_label(b)


def summary_table(results: Mapping[str, Any]) -> Table:
    """One row per arm: tokens, recall, reader scores, cost, optimizer latency."""
    has_reader = any(r["metrics"].get("reader_calls") for r in results["runs"])
    headers = ["pipeline", "budget", "tokens", "answer recall", "evidence recall"]
    if has_reader:
        headers += ["accuracy", "EM", "F1", "reader n", "failed"]
    headers += ["$ / 1k queries", "latency p50 ms", "p95 ms"]
    rows = []
    for run in results["runs"]:
        m = run["metrics"]
        row = [
            run["pipeline"],
            _budget(run["budget"]),
            f"{fmt(m['tokens_mean'], 1)} ({fmt(m['token_share'] * 100 if m['token_share'] is not None else None, 0)}%)",
            fmt(m["answer_recall"]),
            fmt(m["evidence_recall"]),
        ]
        if has_reader:
            row += [
                fmt(m["accuracy"]),
                fmt(m["em"]),
                fmt(m["f1"]),
                str(m["n_reader"]) if m["reader_calls"] else "–",
                str(m["reader_failures"]) if m["reader_calls"] else "–",
            ]
        row += [fmt(m["cost_per_1k_queries"], 4), fmt(m["latency_ms_p50"], 1), fmt(m["latency_ms_p95"], 1)]
        rows.append(tuple(row))
    ref = results["runs"][0]["metrics"] if results["runs"] else {}
    note = (
        f"n = {results['n']} examples; answer recall is over the {ref.get('n_answer_recall', '?')} whose answers are "
        f"not all yes/no or empty, evidence recall over the {ref.get('n_evidence_recall', '?')} with gold chunks. "
        "Tokens: mean rendered context (share of the full context). Latency: the optimizer's, per question, models "
        "loaded; each pipeline and budget runs with models of its own and no memos from another, so every budget "
        "pays for its own embeddings."
    )
    return Table("Summary", tuple(headers), tuple(rows), note)


def metric_tables(results: Mapping[str, Any]) -> list[Table]:
    """Per metric: each arm as ``full → value`` with the paired delta and its 95 % CI."""
    tables = []
    for metric, title in METRIC_TITLES.items():
        rows = []
        for run in results["runs"]:
            d = (run.get("vs_full") or {}).get(metric)
            if d is None:
                continue
            digits = 1 if metric == "tokens_mean" else 3
            rows.append(
                (
                    run["pipeline"],
                    _budget(run["budget"]),
                    f"{fmt(d['baseline'], digits)} → {fmt(d['value'], digits)}",
                    fmt_delta(d, digits),
                    str(d["n"]),
                )
            )
        if rows:
            tables.append(
                Table(
                    title,
                    ("pipeline", "budget", "full → value", "delta vs full [95% CI]", "n (paired)"),
                    tuple(rows),
                )
            )
    return tables


def cost_table(results: Mapping[str, Any]) -> Table:
    """$ per 1,000 queries and $ saved versus full context, at the chosen model's input price."""
    price = results.get("price") or {}
    rows = []
    for run in results["runs"]:
        m = run["metrics"]
        full_cost = (m["cost_per_1k_queries"] or 0) + (m["cost_saved_per_1k"] or 0)
        share = (m["cost_saved_per_1k"] / full_cost * 100) if (m["cost_saved_per_1k"] is not None and full_cost) else None
        rows.append(
            (
                run["pipeline"],
                _budget(run["budget"]),
                fmt(m["prompt_tokens_mean"], 1),
                fmt(m["cost_per_1k_queries"], 4),
                fmt(m["cost_saved_per_1k"], 4),
                f"{fmt(share, 1)}%" if share is not None else "–",
            )
        )
    note = (
        f"Priced as {price.get('model', '?')} at ${price.get('input_per_million', '?')} per million input tokens "
        f"(list price, {price.get('date', 'undated')}; {price.get('source', '')}). "
        f"{results.get('cost_note', '')}."
    )
    return Table(
        "Cost",
        ("pipeline", "budget", "input tokens / query", "$ / 1k queries", "$ saved / 1k vs full", "saved"),
        tuple(rows),
        note,
    )


def compact_table(results: Mapping[str, Any]) -> Table:
    """One row per arm with each quality metric's delta and CI in the cell (for BENCHMARKS-style notes)."""
    has_reader = any(r["metrics"].get("reader_calls") for r in results["runs"])
    metrics = ["answer_recall", "evidence_recall"] + (["accuracy", "f1"] if has_reader else [])
    headers = ["pipeline", "budget", "tokens"] + [m.replace("_", " ") + " (Δ [95% CI])" for m in metrics]
    headers += ["$ / 1k q", "$ saved / 1k", "p50 ms"]
    rows = []
    for run in results["runs"]:
        m, vs = run["metrics"], run.get("vs_full") or {}
        cells = [run["pipeline"], _budget(run["budget"]), fmt(m["tokens_mean"], 0)]
        for name in metrics:
            d = vs.get(name)
            cells.append(fmt(m[name]) if d is None else f"{fmt(m[name])} ({fmt_delta(d, 2)})")
        cells += [fmt(m["cost_per_1k_queries"], 3), fmt(m["cost_saved_per_1k"], 3), fmt(m["latency_ms_p50"], 1)]
        rows.append(tuple(cells))
    return Table(f"{results['dataset']} (n={results['n']})", tuple(headers), tuple(rows))


def miss_table(results: Mapping[str, Any]) -> Table | None:
    """Per arm, the answer-recall examples that lost the answer, split by where (None if no run has the split)."""
    runs = [r for r in results["runs"] if r["metrics"].get("miss_cut") is not None]
    if not runs:
        return None
    rows = []
    for run in runs:
        m = run["metrics"]
        lost = sum(m[f"miss_{k}"] for k in MISS_KINDS)
        rows.append((run["pipeline"], _budget(run["budget"]), fmt(m["answer_recall"]), fmt(lost),
                     fmt(m["miss_cut"]), fmt(m["miss_dropped"]), fmt(m["miss_absent"])))
    note = (
        "Shares of the answer-recall examples. Cut: a chunk holding the answer kept some text but not the answer "
        "(the compression chose other sentences, or the budget ended inside it). Dropped: chunks hold the answer "
        "and none kept any text (ranking, near-duplicate removal or the budget). Not in any chunk: no single chunk "
        "holds it (retrieval missed it, or it is split across chunks), so no selection could keep it. Many cuts "
        "point at the compression step or a tighter budget than the data allows; many drops at the ranking."
    )
    return Table("Where the answer was lost",
                 ("pipeline", "budget", "answer recall", "lost", "cut in a kept chunk", "its chunks dropped", "not in any chunk"),
                 tuple(rows), note)


def all_tables(results: Mapping[str, Any]) -> list[Table]:
    misses = miss_table(results)
    return [summary_table(results), *([misses] if misses else []), *metric_tables(results), cost_table(results)]


# -- plot --------------------------------------------------------------------------------
def pareto_plot(results: Mapping[str, Any], path: str | Path) -> Path:
    """Quality versus mean context tokens, one line per pipeline, ``full`` as a star; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    panels = [("answer_recall", "answer recall")]
    if any(r["metrics"].get("accuracy") is not None for r in runs):
        panels.append(("accuracy", "reader accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    pipelines = list(dict.fromkeys(r["pipeline"] for r in runs if r["budget"] is not None))
    colors = plt.get_cmap("tab10")
    for ax, (metric, label) in zip(axes[0], panels):
        for i, name in enumerate(pipelines):
            points = sorted(
                (r["metrics"]["tokens_mean"], r["metrics"][metric], r["budget"])
                for r in runs
                if r["pipeline"] == name and r["budget"] is not None and r["metrics"].get(metric) is not None
            )
            if not points:
                continue
            xs, ys, bs = zip(*points)
            ax.plot(xs, ys, marker="osD^vP<>"[i % 8], color=colors(i % 10), label=name, alpha=0.85)
            for x, y, b in points:
                ax.annotate(_budget(b), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colors(i % 10))
        for r in runs:
            if r["budget"] is None and r["metrics"].get(metric) is not None:
                ax.scatter([r["metrics"]["tokens_mean"]], [r["metrics"][metric]], marker="*", s=180, color="black", zorder=5, label="full")
        ax.set_xlabel("mean context tokens")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs tokens ({results['dataset']}, n={results['n']})", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- writing ------------------------------------------------------------------------------
def _header_lines(results: Mapping[str, Any]) -> list[str]:
    reader = results["reader"] if results.get("reader_model") is None else f"{results['reader']} ({results['reader_model']})"
    lines = [
        f"Dataset **{results['dataset']}**, n = {results['n']} examples, tokenizer `{results['tokenizer']}`, reader **{reader}**"
        + (f" on the first {results['sample']} examples" if results.get("sample") else "")
        + ".",
        "Deltas are versus `full` (all chunks, no budget) on the same examples, with 95 % paired bootstrap intervals "
        f"({results.get('bootstrap', {}).get('resamples', '?')} resamples, seed {results.get('bootstrap', {}).get('seed', '?')}).",
    ]
    meta = results.get("meta") or {}
    if meta.get("command"):
        lines.append(f"Command: `{meta['command']}`")
    if meta.get("created"):
        lines.append(f"Created {meta['created']} on {meta.get('machine', '?')}.")
    return lines


def render_markdown(results: Mapping[str, Any], plot_name: str | None = "pareto.png") -> str:
    parts = [f"# ragtrim eval: {results['dataset']}", "", *_header_lines(results), ""]
    if plot_name:
        parts += [f"![quality vs tokens]({plot_name})", ""]
    for t in all_tables(results):
        parts += [to_markdown(t), ""]
    if results.get("prompt_template") and results.get("reader") != "none":
        parts += ["### Reader prompt", "", "```", results["prompt_template"], "```", ""]
    return "\n".join(parts)


def render_html(results: Mapping[str, Any], png: bytes | None) -> str:
    header = "".join(f"<p>{_inline_md(line)}</p>" for line in _header_lines(results))
    img = (
        f"<img alt='quality vs tokens' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
        if png
        else ""
    )
    tables = "".join(to_html(t) for t in all_tables(results))
    prompt = ""
    if results.get("prompt_template") and results.get("reader") != "none":
        prompt = f"<h3>Reader prompt</h3><pre>{html.escape(results['prompt_template'])}</pre>"
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}td:first-child,td:nth-child(2)"
        "{text-align:left}.note{color:#555;font-size:.9em}img{max-width:100%}pre{background:#f6f6f6;padding:.8em}"
    )
    title = html.escape(f"ragtrim eval: {results['dataset']}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body><h1>{title}</h1>{header}{img}{tables}{prompt}</body></html>\n"
    )


def _inline_md(line: str) -> str:
    """The few inline marks the header uses (** and `), escaped for HTML."""
    out, bold, code = [], False, False
    i = 0
    text = html.escape(line)
    while i < len(text):
        if text.startswith("**", i):
            out.append("</b>" if bold else "<b>")
            bold, i = not bold, i + 2
        elif text[i] == "`":
            out.append("</code>" if code else "<code>")
            code, i = not code, i + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def machine() -> str:
    """``Linux x86_64, 2 cores, Python 3.12.3`` (for the report)."""
    import os
    import platform

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run_meta(started: float, *, command: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """What varies between identical runs (``results.json``'s ``meta``): date, command, machine, wall time.

    ``started`` is a :func:`time.perf_counter` reading; ``command`` the arguments after
    ``ragtrim`` (this process's when None).
    """
    import shlex
    import sys
    import time
    from datetime import datetime, timezone

    args = list(command) if command is not None else sys.argv[1:]
    return {
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "command": shlex.join(["ragtrim", *args]),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
    }


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)


def write_results(run: Any, out_dir: str | Path, *, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``results.json`` and ``examples.jsonl``; return the results document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = run.to_results()
    if meta is not None:
        results["meta"] = dict(meta)
    (out / "results.json").write_text(_dumps(results, indent=2) + "\n", encoding="utf-8")
    with open(out / "examples.jsonl", "w", encoding="utf-8") as f:
        for row in run.rows:
            f.write(_dumps(row.to_dict()) + "\n")
    return results


def write_report(run: Any, out_dir: str | Path, *, meta: Mapping[str, Any] | None = None, plot: bool = True) -> Path:
    """Write all outputs of ``run`` into ``out_dir``; return the path of ``report.html``."""
    out = Path(out_dir)
    results = write_results(run, out, meta=meta)
    png = None
    if plot:
        png = pareto_plot(results, out / "pareto.png").read_bytes()
    (out / "report.md").write_text(render_markdown(results, "pareto.png" if plot else None), encoding="utf-8")
    (out / "report.html").write_text(render_html(results, png), encoding="utf-8")
    return out / "report.html"


def main(argv: list[str] | None = None) -> None:
    """``python -m evals.report DIR``: print DIR/results.json as one compact markdown table."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m evals.report DIR (a ragtrim eval --out folder)")
    results = json.loads((Path(args[0]) / "results.json").read_text(encoding="utf-8"))
    print(to_markdown(compact_table(results)))


def terminal_table(results: Mapping[str, Any]) -> Table:
    """The summary printed after a run: each quality metric with its delta versus full and 95 % CI."""
    has_reader = any(r["metrics"].get("reader_calls") for r in results["runs"])
    cols = ["pipeline", "budget", "tokens", "answer recall (Δ)", "evidence"]
    if has_reader:
        cols += ["accuracy (Δ)", "failed"]
    cols += ["$/1k q", "p50 ms"]

    def cell(value: Any, delta: Any) -> str:
        return fmt(value) if delta is None else f"{fmt(value)}\n{fmt_delta(delta, 2)}"

    rows = []
    for run in results["runs"]:
        m, vs = run["metrics"], run.get("vs_full") or {}
        row = [run["pipeline"], _budget(run["budget"]), fmt(m["tokens_mean"], 0),
               cell(m["answer_recall"], vs.get("answer_recall")), fmt(m["evidence_recall"], 2)]
        if has_reader:
            row += [cell(m["accuracy"], vs.get("accuracy")), str(m["reader_failures"]) if m["reader_calls"] else "–"]
        row += [fmt(m["cost_per_1k_queries"], 3), fmt(m["latency_ms_p50"], 1)]
        rows.append(tuple(row))
    return Table(
        f"ragtrim eval: {results['dataset']} (n={results['n']}, {results['tokenizer']}, reader {results['reader']})",
        tuple(cols),
        tuple(rows),
        "Δ = paired delta versus full on the same examples [95% bootstrap CI]",
    )


def print_summary(results: Mapping[str, Any], console: Any = None) -> None:
    """Print :func:`terminal_table` with rich (150 columns wide when not on a terminal)."""
    from rich.console import Console

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 150))
    console.print(to_rich(terminal_table(results)))


if __name__ == "__main__":
    main()
