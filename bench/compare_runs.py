"""Check that two ``ragtrim eval`` output folders hold the same results (a refactor changed nothing).

Compares, per example, pipeline and budget (``examples.jsonl``): answer recall, evidence
recall, tokens, full tokens, prompt tokens, kept chunk ids and the context itself; and per
arm (``results.json``): every metric except the timings. Latency and ``meta`` differ between
any two runs and are ignored.

    python bench/compare_runs.py runs/before-hotpotqa runs/after-hotpotqa [more pairs ...]
    python bench/compare_runs.py --subset runs/before-hotpotqa runs/after-first-20   # rows only

``--subset``: the second folder ran on the first examples of the first (``--limit``); only
its example rows are compared (the aggregates differ with n). Prints one line per pair and
every difference; exits 1 if any pair differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROW_FIELDS = ("answer_recall", "evidence_recall", "tokens", "tokens_full", "prompt_tokens", "kept_ids", "context")
TIMING_METRICS = {"latency_ms_p50", "latency_ms_p95", "reader_latency_ms_p50", "reader_latency_ms_p95"}


def budget_of(row: dict[str, Any]) -> Any:
    """A row's or run's budget, the reference's as ``1.0`` whichever layout wrote it (``null`` before, ``1.0`` now)."""
    return 1.0 if row["pipeline"] == "full" and row["budget"] is None else row["budget"]


def load_rows(folder: Path) -> dict[tuple[str, str, Any], dict[str, Any]]:
    rows = {}
    for line in (folder / "examples.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[(row["id"], row["pipeline"], budget_of(row))] = row
    return rows


def load_runs(folder: Path) -> dict[tuple[str, Any], dict[str, Any]]:
    doc = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return {(r["pipeline"], budget_of(r)): r for r in doc["runs"]}


def row_differences(before: Path, after: Path, *, subset: bool = False) -> list[str]:
    a, b = load_rows(before), load_rows(after)
    if subset:
        a = {k: v for k, v in a.items() if k in b}
    out = [f"rows only in {before}: {sorted(set(a) - set(b))[:5]}"] if set(a) - set(b) else []
    out += [f"rows only in {after}: {sorted(set(b) - set(a))[:5]}"] if set(b) - set(a) else []
    for key in sorted(set(a) & set(b), key=str):
        for field in ROW_FIELDS:
            if a[key].get(field) != b[key].get(field):
                out.append(f"{key} {field}: {str(a[key].get(field))[:80]!r} -> {str(b[key].get(field))[:80]!r}")
    return out


def run_differences(before: Path, after: Path) -> list[str]:
    a, b = load_runs(before), load_runs(after)
    if set(a) != set(b):
        return [f"arms differ: {sorted(set(a) ^ set(b), key=str)}"]
    out = []
    for key in a:
        ma, mb = a[key]["metrics"], b[key]["metrics"]
        for name in sorted((set(ma) | set(mb)) - TIMING_METRICS):
            if ma.get(name) != mb.get(name):
                out.append(f"{key} metrics.{name}: {ma.get(name)!r} -> {mb.get(name)!r}")
        if a[key]["vs_full"] != b[key]["vs_full"]:
            out.append(f"{key} vs_full differs")
    return out


def compare(before: Path, after: Path, *, subset: bool = False) -> tuple[int, list[str]]:
    """(number of example rows compared, differences)."""
    if subset:
        return len(load_rows(after)), row_differences(before, after, subset=True)
    return len(load_rows(before)), row_differences(before, after) + run_differences(before, after)


def main(argv: list[str]) -> int:
    subset = "--subset" in argv
    argv = [a for a in argv if a != "--subset"]
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__)
        return 2
    failed = False
    for before, after in zip(argv[::2], argv[1::2]):
        n, diffs = compare(Path(before), Path(after), subset=subset)
        status = "identical" if not diffs else f"{len(diffs)} differences"
        what = "example rows" if subset else "example rows and every arm's metrics"
        print(f"{before} vs {after}: {n} {what} ({len(ROW_FIELDS)} fields per row): {status}")
        for d in diffs[:50]:
            print(f"  {d}")
        failed = failed or bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
