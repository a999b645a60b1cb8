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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from evals.cost import encoding_note
from evals.metrics import MISS_KINDS
from evals.records import is_reference
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


def _run_budget(run: Mapping[str, Any]) -> str:
    """A run's budget column: ``full`` for the reference (written ``1.0``, or ``null`` before), else its label.

    >>> _run_budget({"pipeline": "full", "budget": 1.0}), _run_budget({"pipeline": "default", "budget": 1.0})
    ('full', '100%')
    """
    return budget_label(None) if is_reference(run) else budget_label(run["budget"])


IN_SAMPLE_MARK = "*"
IN_SAMPLE_FOOTNOTE = "* settings chosen on this set (in-sample: expect less on other data)"


def run_label(run: Mapping[str, Any]) -> str:
    """A run's pipeline name, with a trailing ``*`` when its settings were chosen on this dataset (``in_sample``).

    >>> run_label({"pipeline": "default", "in_sample": True}), run_label({"pipeline": "truncate"})
    ('default*', 'truncate')
    """
    return run["pipeline"] + (IN_SAMPLE_MARK if run.get("in_sample") else "")


def _with_footnote(note: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """``note`` plus the in-sample footnote when one of ``runs`` is marked."""
    if not any(r.get("in_sample") for r in runs):
        return note
    return f"{note} {IN_SAMPLE_FOOTNOTE}." if note else f"{IN_SAMPLE_FOOTNOTE}."


def pipeline_failed(results: Mapping[str, Any]) -> bool:
    """Whether a row of some arm failed in its pipeline (then the tables show a ``pipeline errors`` column).

    >>> pipeline_failed({"runs": [{"metrics": {"pipeline_failures": 0}}, {"metrics": {}}]})
    False
    """
    return any(r["metrics"].get("pipeline_failures") for r in results["runs"])


def summary_table(results: Mapping[str, Any]) -> Table:
    """One row per arm: tokens, recall, reader scores, cost, optimizer latency (and pipeline errors, if any)."""
    has_reader = any(r["metrics"].get("reader_calls") for r in results["runs"])
    errors = pipeline_failed(results)
    headers = ["pipeline", "budget", "tokens", "answer recall", "evidence recall"] + (["pipeline errors"] if errors else [])
    if has_reader:
        headers += ["accuracy", "EM", "F1", "scored n", "failed"]
    headers += ["$ / 1k queries", "latency p50 ms", "p95 ms"]
    rows = []
    for run in results["runs"]:
        m = run["metrics"]
        row = [
            run_label(run),
            _run_budget(run),
            f"{fmt(m['tokens_mean'], 1)} ({fmt(m['token_share'] * 100 if m['token_share'] is not None else None, 0)}%)",
            fmt(m["answer_recall"]),
            fmt(m["evidence_recall"]),
        ] + ([str(m.get("pipeline_failures", 0))] if errors else [])
        if has_reader:
            row += [
                fmt(m["accuracy"]),
                fmt(m["em"]),
                fmt(m["f1"]),
                str(m.get("n_accuracy", m["n_reader"])) if m["reader_calls"] else "–",  # the n of the means
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
        + (" Scored n: the answers accuracy, EM and F1 are averaged over (calls that failed, and questions with no "
           "gold answer, are left out)." if has_reader else "")
        + (" Pipeline errors: examples the pipeline raised on (pipeline_error in examples.jsonl), left out of "
           "every mean." if errors else "")
    )
    return Table("Summary", tuple(headers), tuple(rows), _with_footnote(note, results["runs"]))


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
                    run_label(run),
                    _run_budget(run),
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
                    _with_footnote("", results["runs"]),
                )
            )
    return tables


def cost_table(results: Mapping[str, Any]) -> Table:
    """$ per 1,000 queries and $ saved versus full context, at the chosen model's input price."""
    price = results.get("price") or {}
    rows = []
    for run in results["runs"]:
        m = run["metrics"]
        share = _saved_share(m)
        rows.append(
            (
                run_label(run),
                _run_budget(run),
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
    counted = encoding_note(results.get("tokenizer_encoding"), price)
    if counted:
        note += f" {counted}"
    partial = partial_saving_note(results)
    if partial:
        note += f" {partial}"
    return Table(
        "Cost",
        ("pipeline", "budget", "input tokens / query", "$ / 1k queries", "$ saved / 1k vs full", "saved"),
        tuple(rows),
        _with_footnote(note, results["runs"]),
    )


def _saved_share(m: Mapping[str, Any]) -> float | None:
    """Percent of full's cost saved, on the examples the saving is over (older results: from the arm's own cost)."""
    if m.get("cost_saved_share") is not None:
        return m["cost_saved_share"] * 100
    full_cost = (m["cost_per_1k_queries"] or 0) + (m["cost_saved_per_1k"] or 0)
    return (m["cost_saved_per_1k"] / full_cost * 100) if (m["cost_saved_per_1k"] is not None and full_cost) else None


def partial_saving_note(results: Mapping[str, Any]) -> str:
    """Which arms' $ saved is over fewer examples than the arm has (a pipeline raised there or in full), else "".

    >>> partial_saving_note({"runs": [{"label": "x@50%", "metrics": {"n": 5, "n_cost_saved": 4}},
    ...                               {"label": "full", "metrics": {"n": 5, "n_cost_saved": 5}}]})
    '$ saved is paired: over the examples both the arm and full ran on (x@50%: 4 of 5; the pipeline raised on the others).'
    """
    parts = [f"{r['label']}: {r['metrics']['n_cost_saved']} of {r['metrics']['n']}"
             for r in results["runs"]
             if r["metrics"].get("n_cost_saved") is not None and r["metrics"]["n_cost_saved"] < r["metrics"]["n"]]
    if not parts:
        return ""
    return ("$ saved is paired: over the examples both the arm and full ran on (" + ", ".join(parts)
            + "; the pipeline raised on the others).")


def compact_table(results: Mapping[str, Any]) -> Table:
    """One row per arm with each quality metric's delta and CI in the cell (for BENCHMARKS-style notes)."""
    has_reader = any(r["metrics"].get("reader_calls") for r in results["runs"])
    metrics = ["answer_recall", "evidence_recall"] + (["accuracy", "f1"] if has_reader else [])
    headers = ["pipeline", "budget", "tokens"] + [m.replace("_", " ") + " (Δ [95% CI])" for m in metrics]
    headers += ["$ / 1k q", "$ saved / 1k", "p50 ms"]
    rows = []
    for run in results["runs"]:
        m, vs = run["metrics"], run.get("vs_full") or {}
        cells = [run_label(run), _run_budget(run), fmt(m["tokens_mean"], 0)]
        for name in metrics:
            d = vs.get(name)
            cells.append(fmt(m[name]) if d is None else f"{fmt(m[name])} ({fmt_delta(d, 2)})")
        cells += [fmt(m["cost_per_1k_queries"], 3), fmt(m["cost_saved_per_1k"], 3), fmt(m["latency_ms_p50"], 1)]
        rows.append(tuple(cells))
    return Table(f"{results['dataset']} (n={results['n']})", tuple(headers), tuple(rows), _with_footnote("", results["runs"]))


def miss_table(results: Mapping[str, Any]) -> Table | None:
    """Per arm, the answer-recall examples that lost the answer, split by where (None if no run has the split)."""
    runs = [r for r in results["runs"] if r["metrics"].get("miss_cut") is not None]
    if not runs:
        return None
    rows = []
    for run in runs:
        m = run["metrics"]
        lost = sum(m[f"miss_{k}"] for k in MISS_KINDS)
        rows.append((run_label(run), _run_budget(run), fmt(m["answer_recall"]), fmt(lost),
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
                 tuple(rows), _with_footnote(note, runs))


def all_tables(results: Mapping[str, Any]) -> list[Table]:
    misses = miss_table(results)
    return [summary_table(results), *([misses] if misses else []), *metric_tables(results), cost_table(results)]


# -- plot --------------------------------------------------------------------------------
NOTHING_MEASURED = {"answer_recall": "(every example's answers are yes/no or empty, e.g. all unanswerable)"}
"""Why a metric can have no value in any run (said in the plot and the report)."""


def plot_text(text: str) -> str:
    """``text`` for a matplotlib label, shown as written: ``$`` would start mathtext (a name like ``cap$x$``).

    >>> print(plot_text("budget$_cap$"))
    budget\\$_cap\\$
    """
    return text.replace("$", r"\$")


def pareto_plot(results: Mapping[str, Any], path: str | Path) -> Path:
    """Quality versus mean context tokens, one line per pipeline, ``full`` as a star; a PNG.

    Names (pipelines, dataset) are drawn as written (:func:`plot_text`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    panels = [("answer_recall", "answer recall")]
    if any(r["metrics"].get("accuracy") is not None for r in runs):
        panels.append(("accuracy", "reader accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    pipelines = list(dict.fromkeys(r["pipeline"] for r in runs if not is_reference(r)))
    marked = {r["pipeline"] for r in runs if r.get("in_sample")}
    colors = plt.get_cmap("tab10")
    for ax, (metric, label) in zip(axes[0], panels):
        if not any(r["metrics"].get(metric) is not None for r in runs):
            ax.text(0.5, 0.5, f"nothing measured: no example counts for {label}\n{NOTHING_MEASURED.get(metric, '')}",
                    ha="center", va="center", fontsize=9, transform=ax.transAxes, wrap=True)
            ax.set_axis_off()
            continue
        for i, name in enumerate(pipelines):
            points = sorted(
                (r["metrics"]["tokens_mean"], r["metrics"][metric], r["budget"])
                for r in runs
                if r["pipeline"] == name and not is_reference(r) and r["metrics"].get(metric) is not None
            )
            if not points:
                continue
            xs, ys, bs = zip(*points)
            shown = plot_text(name) + (IN_SAMPLE_MARK + " (tuned on this set)" if name in marked else "")
            ax.plot(xs, ys, marker="osD^vP<>"[i % 8], color=colors(i % 10), label=shown, alpha=0.85)
            for x, y, b in points:
                ax.annotate(plot_text(_budget(b)), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colors(i % 10))
        for r in runs:
            if is_reference(r) and r["metrics"].get(metric) is not None:
                ax.scatter([r["metrics"]["tokens_mean"]], [r["metrics"][metric]], marker="*", s=180, color="black", zorder=5, label="full")
        ax.set_xlabel("mean context tokens")
        ax.set_ylabel(label)
        ax.set_title(plot_text(f"{label} vs tokens ({results['dataset']}, n={results['n']})"), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    try:
        with replace_atomically(path, "wb") as f:
            fig.savefig(f, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


# -- writing ------------------------------------------------------------------------------
def _header_lines(results: Mapping[str, Any]) -> list[str]:
    reader = results["reader"] if results.get("reader_model") is None else f"{results['reader']} ({results['reader_model']})"
    lines = [
        f"Dataset **{results['dataset']}**, n = {results['n']} examples, tokenizer {_tokenizer_label(results)}, reader **{reader}**"
        + (f" on the first {results['sample']} examples" if results.get("sample") else "")
        + ".",
        "Deltas are versus `full` (all chunks, no budget) on the same examples, with 95 % paired bootstrap intervals "
        f"({results.get('bootstrap', {}).get('resamples', '?')} resamples, seed {results.get('bootstrap', {}).get('seed', '?')}).",
    ]
    lines += _in_sample_lines(results)
    meta = results.get("meta") or {}
    lines += _retrieval_lines(meta.get("retrieval"))
    if meta.get("command"):
        lines.append(f"Command: `{meta['command']}`")
    if meta.get("created"):
        lines.append(f"Created {meta['created']} on {meta.get('machine', '?')}.")
    return lines


def _tokenizer_label(results: Mapping[str, Any]) -> str:
    """The tokenizer as given, with the encoding it resolved to when that is another name (``gpt-4o``: ``o200k_base``).

    ``tokenizer`` is the encoding and ``tokenizer_given`` the name given; a file written before has the name given
    in ``tokenizer`` and the encoding in ``tokenizer_encoding``.

    >>> _tokenizer_label({"tokenizer": "o200k_base", "tokenizer_given": "gpt-4o", "tokenizer_encoding": "o200k_base"})
    '`gpt-4o` (encoding `o200k_base`)'
    >>> _tokenizer_label({"tokenizer": "gpt-4o", "tokenizer_encoding": "o200k_base"}), _tokenizer_label({"tokenizer": "cl100k_base"})
    ('`gpt-4o` (encoding `o200k_base`)', '`cl100k_base`')
    """
    given = results.get("tokenizer_given") or results["tokenizer"]
    encoding = results.get("tokenizer_encoding") or results["tokenizer"]
    return f"`{given}` (encoding `{encoding}`)" if encoding and encoding != given else f"`{given}`"


def _in_sample_lines(results: Mapping[str, Any]) -> list[str]:
    """Which pipelines were tuned on this dataset (their runs are marked ``*``), and on what."""
    marked = {r["pipeline"]: r for r in results["runs"] if r.get("in_sample")}
    if not marked:
        return []

    def which(name: str, run: Mapping[str, Any]) -> str:
        preset = run.get("tuned_preset")
        return f"`{name}`" + (f" (the steps of `{preset}`)" if preset and preset != name else "")

    listed = "; ".join(f"{which(name, run)}: {run.get('in_sample_note', '').removeprefix('settings chosen on this set: ')}"
                       for name, run in marked.items())
    return [f"Pipelines marked {IN_SAMPLE_MARK} are in-sample: their settings were chosen on {results['dataset']}, so their "
            f"numbers here are optimistic; judge them on a set they were not tuned on. {listed}."]


def _retrieval_lines(retrieval: Mapping[str, Any] | None) -> list[str]:
    """How the chunks were retrieved and how much gold the retriever found (recall@k), when ``--retrieve`` was used."""
    if not retrieval:
        return []
    how = retrieval.get("retriever", "?") + (f" ({retrieval['embedder']})" if retrieval.get("embedder") else "")
    asked = retrieval.get("top_k", "?")
    k = retrieval.get("top_k_used", asked)
    clipped = f" ({asked} asked, clipped to the corpus)" if k != asked else ""
    size = retrieval.get("corpus_passages")
    corpus = f"{size:,} distinct passages" if isinstance(size, int) else "every passage"
    line = (f"Chunks retrieved with {how}, top {k} per question{clipped}, from a corpus of {corpus} of the whole "
            "dataset (whatever --limit).")
    recall = retrieval.get("retrieval_recall")
    if recall is not None:
        line += (f" Retrieval recall@{k} {fmt(recall)} (share of each question's gold passages retrieved; "
                 f"{retrieval.get('gold_retrieved', '?')} of {retrieval.get('gold_total', '?')}, "
                 f"{retrieval.get('questions_without_gold_retrieved', '?')} questions with none). Evidence recall counts "
                 "unretrieved gold as lost, so no pipeline, `full` included, can exceed it.")
    return [line]


def _nothing_measured_lines(results: Mapping[str, Any]) -> list[str]:
    """Say so when answer recall has no value in any run (the plot's panel is then empty)."""
    if any(r["metrics"].get("answer_recall") is not None for r in results["runs"]):
        return []
    return [f"Nothing measured for answer recall: no example counts for it {NOTHING_MEASURED['answer_recall']}; "
            "only tokens, evidence recall and cost are compared."]


def render_markdown(results: Mapping[str, Any], plot_name: str | None = "pareto.png", *, plot_note: str | None = None) -> str:
    parts = [f"# ragtrim eval: {results['dataset']}", "", *_header_lines(results), ""]
    parts += [line + "\n" for line in _nothing_measured_lines(results)]
    if plot_name:
        parts += [f"![quality vs tokens]({plot_name})", ""]
    elif plot_note:
        parts += [f"({plot_note}.)", ""]
    for t in all_tables(results):
        parts += [to_markdown(t), ""]
    if results.get("prompt_template") and results.get("reader") != "none":
        parts += ["### Reader prompt", "", "```", results["prompt_template"], "```", ""]
    return "\n".join(parts)


def render_html(results: Mapping[str, Any], png: bytes | None, *, plot_note: str | None = None) -> str:
    header = "".join(f"<p>{_inline_md(line)}</p>" for line in [*_header_lines(results), *_nothing_measured_lines(results)])
    img = (
        f"<img alt='quality vs tokens' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
        if png
        else (f"<p class='note'>({html.escape(plot_note)}.)</p>" if plot_note else "")
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
    """Write ``results.json`` and ``examples.jsonl`` together (both replaced, or neither); return the results document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _results_document(run, meta)
    with replace_together(out) as staged:
        _stage_examples(staged, run)
        _stage_results(staged, results)
    return results


def write_report(run: Any, out_dir: str | Path, *, meta: Mapping[str, Any] | None = None, plot: bool = True) -> Path:
    """Write all outputs of ``run`` into ``out_dir``; return the path of ``report.html``.

    The files are replaced as one set (:func:`replace_together`): a write that fails (a full disk) leaves every
    previous output as it was, never a new ``results.json`` next to an older run's examples or report. Without
    matplotlib the report has no plot and says how to get one (:func:`plot_dependency_missing`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _results_document(run, meta)
    png, plot_note = _plot_png(results, out) if plot else (None, None)
    with replace_together(out) as staged:
        _stage_examples(staged, run)
        if png is None:
            staged.drop(PLOT_FILE)  # an earlier run's plot would not match these results
        else:
            with staged.write(PLOT_FILE, "wb") as f:
                f.write(png)
        with staged.write("report.md") as f:
            f.write(render_markdown(results, PLOT_FILE if png is not None else None, plot_note=plot_note))
        with staged.write("report.html") as f:
            f.write(render_html(results, png, plot_note=plot_note))
        _stage_results(staged, results)  # last: a results.json names a whole set
    return out / "report.html"


def _results_document(run: Any, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    results = run.to_results()
    if meta is not None:
        results["meta"] = dict(meta)
    return results


def _stage_examples(staged: StagedFiles, run: Any) -> None:
    with staged.write("examples.jsonl") as f:
        for row in run.rows:
            f.write(_dumps(row.to_dict()) + "\n")


def _stage_results(staged: StagedFiles, results: Mapping[str, Any]) -> None:
    with staged.write("results.json") as f:
        f.write(_dumps(results, indent=2) + "\n")


def _plot_png(results: Mapping[str, Any], out: Path) -> tuple[bytes | None, str | None]:
    """The plot's PNG bytes (drawn in a scratch folder: the old plot stays until the set is replaced), or its note."""
    import tempfile

    note = plot_dependency_missing()
    if note is not None:
        return None, note
    with tempfile.TemporaryDirectory(dir=out, prefix=".plot-") as scratch:
        return draw_plot(results, Path(scratch) / PLOT_FILE)


PLOT_FILE = "pareto.png"
PLOT_EXTRA = "eval"


def draw_plot(results: Mapping[str, Any], path: Path) -> tuple[bytes | None, str | None]:
    """``(png, None)``, or ``(None, note)`` when the plot cannot be drawn: a warning says why, and the tables and the
    rest of the report are written without it (a broken plot never loses the run's outputs)."""
    import warnings

    try:
        return pareto_plot(results, path).read_bytes(), None
    except Exception as exc:  # matplotlib's errors are many and not the user's to fix: report the plot as missing
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}"
        warnings.warn(f"the quality-versus-tokens plot could not be drawn ({reason}); the report is written without it",
                      RuntimeWarning, stacklevel=2)
        return None, f"no plot: drawing it failed ({reason}); the tables are complete without it"


def plot_dependency_missing() -> str | None:
    """None when matplotlib can be imported, else what to say in place of the plot (with the install hint)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        return None
    return (f"no plot: matplotlib is not installed; install it with pip install 'ragtrim[{PLOT_EXTRA}]' and rerun "
            "to get the quality-versus-tokens plot (the tables are complete without it)")


class StagedFiles:
    """Files of one folder replaced as a set: each :meth:`write` block fills a temporary sibling; :meth:`commit` renames
    them over the old files in the order written (write the one that says the set is whole last) and deletes the
    :meth:`drop`-ped ones; :meth:`discard` removes the temporaries, leaving the old files as they were."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.doing = ""  # what is under way, for the error note
        self._staged: list[tuple[Path, Path]] = []
        self._dropped: list[Path] = []

    @contextmanager
    def write(self, name: str, mode: str = "w") -> Iterator[IO[Any]]:
        import os
        import tempfile

        self.doing = f"writing {name}"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        self._staged.append((Path(tmp), self.folder / name))
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())
        self.doing = ""

    def drop(self, name: str) -> None:
        self._dropped.append(self.folder / name)

    def commit(self) -> None:
        import os

        self.doing = "replacing the outputs"
        for path in self._dropped:
            path.unlink(missing_ok=True)
        for tmp, path in self._staged:
            os.replace(tmp, path)

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)


@contextmanager
def replace_together(folder: Path) -> Iterator[StagedFiles]:
    """A :class:`StagedFiles` committed when the block ends; on an error nothing in ``folder`` changes, and the error
    gets a note naming the file and saying the previous outputs are intact.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with replace_together(d) as staged, staged.write("a.txt") as f:
    ...     _ = f.write("new")
    >>> try:
    ...     with replace_together(d) as staged:
    ...         with staged.write("a.txt") as f:
    ...             _ = f.write("newer")
    ...         with staged.write("b.txt") as f:
    ...             raise OSError(28, "No space left on device")
    ... except OSError as exc:
    ...     print(exc.__notes__[0].replace(str(d), "DIR"))
    writing b.txt in DIR failed, so nothing there was replaced: the previous outputs are intact
    >>> (d / "a.txt").read_text(), [p.name for p in d.iterdir()]
    ('new', ['a.txt'])
    """
    staged = StagedFiles(folder)
    try:
        yield staged
        staged.commit()
    except BaseException as exc:
        staged.discard()
        if isinstance(exc, Exception):
            exc.add_note(f"{staged.doing or 'writing the outputs'} in {folder} failed, so nothing there was replaced: the previous outputs are intact"
                         if staged.doing != "replacing the outputs" else
                         f"replacing the outputs in {folder} failed part-way; rerun to write a whole set")
        raise


@contextmanager
def replace_atomically(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file handle whose content replaces ``path`` in one rename when the block ends (nothing changes on error).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"
    >>> with replace_atomically(p) as f:
    ...     _ = f.write("hello")
    >>> p.read_text(), [q.name for q in p.parent.iterdir()]
    ('hello', ['x.txt'])
    """
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


LOCK_FILE = ".ragtrim.lock"


class OutDirBusy(RuntimeError):
    """Another process holds the lock of an output folder (:func:`lock_out_dir`)."""


@contextmanager
def lock_out_dir(out: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.ragtrim.lock`` for the block, so two evals never write one folder.

    Non-blocking: when another process holds it, :class:`OutDirBusy` says so at once. No lock
    where ``fcntl`` does not exist (Windows).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    path = Path(out) / LOCK_FILE
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutDirBusy(
                f"another ragtrim eval is writing to {str(out)!r} (it holds {path}); wait for it to finish, or pass "
                "another --out folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> None:
    """``python -m evals.report DIR``: print DIR/results.json as one compact markdown table."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m evals.report DIR (a ragtrim eval --out folder)")
    try:
        results = read_results(Path(args[0]))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(to_markdown(compact_table(results)))


def read_results(folder: Path) -> dict[str, Any]:
    """``folder/results.json`` as written by ``ragtrim eval``; a one-line ValueError naming the folder otherwise."""
    expects = "pass the --out folder of a finished 'ragtrim eval' (it holds results.json)"
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder; {expects}")
    path = folder / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{str(folder)!r} has no results.json; {expects}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r} ({exc}); {expects}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc.msg}, line {exc.lineno}); {expects}, "
                         "or rerun the eval") from None
    missing = [key for key in ("dataset", "n", "runs") if not isinstance(results, dict) or key not in results]
    if missing:
        raise ValueError(f"{str(path)!r} is not a ragtrim eval results file (no {', '.join(missing)}); {expects}")
    return results


def terminal_table(results: Mapping[str, Any]) -> Table:
    """The summary printed after a run: each quality metric with its delta versus full and 95 % CI."""
    has_reader = any(r["metrics"].get("reader_calls") for r in results["runs"])
    errors = pipeline_failed(results)
    cols = ["pipeline", "budget", "tokens", "answer recall (Δ)", "evidence"] + (["pipeline errors"] if errors else [])
    if has_reader:
        cols += ["accuracy (Δ)", "failed"]
    cols += ["$/1k q", "p50 ms"]

    def cell(value: Any, delta: Any) -> str:
        return fmt(value) if delta is None else f"{fmt(value)}\n{fmt_delta(delta, 2)}"

    rows = []
    for run in results["runs"]:
        m, vs = run["metrics"], run.get("vs_full") or {}
        row = [run_label(run), _run_budget(run), fmt(m["tokens_mean"], 0),
               cell(m["answer_recall"], vs.get("answer_recall")), fmt(m["evidence_recall"], 2)]
        row += [str(m.get("pipeline_failures", 0))] if errors else []
        if has_reader:
            row += [cell(m["accuracy"], vs.get("accuracy")), str(m["reader_failures"]) if m["reader_calls"] else "–"]
        row += [fmt(m["cost_per_1k_queries"], 3), fmt(m["latency_ms_p50"], 1)]
        rows.append(tuple(row))
    return Table(
        f"ragtrim eval: {results['dataset']} (n={results['n']}, {results['tokenizer']}, reader {results['reader']})",
        tuple(cols),
        tuple(rows),
        _with_footnote(" ".join(["Δ = paired delta versus full on the same examples [95% bootstrap CI]",
                                 *_nothing_measured_lines(results)]), results["runs"]),
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
