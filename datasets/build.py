"""Build ragtrim's bundled eval sets from the raw public data, with their cards.

Usage (from the repository root)::

    python datasets/build.py                     # all sets
    python datasets/build.py --only nq-multidoc  # one set
    python datasets/build.py --raw /path/to/raw  # raw data elsewhere (default: ../shared/datasets)

Writes ``datasets/<name>.jsonl``, ``datasets/cards/<name>.md`` and ``datasets/README.md``.
Every choice is seeded, so a rebuild gives byte-identical files. ``--check`` rebuilds in
memory and fails if a bundled file would change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a file: make `optimizer` and `evals` importable from a checkout
    sys.path.append(str(ROOT))

import build_2wiki  # noqa: E402
import build_hotpotqa  # noqa: E402
import build_nq_multidoc  # noqa: E402
import build_squad2_pools  # noqa: E402
from _common import measure, validate_rows, write_jsonl  # noqa: E402

BUILDERS = {m.NAME: m for m in (build_hotpotqa, build_2wiki, build_squad2_pools, build_nq_multidoc)}
DEFAULT_RAW = ROOT.parent / "shared" / "datasets"
SUMMARY = HERE / "stats.json"


def _command(name: str) -> str:
    return f"python datasets/build.py --only {name}   # from the repository root; --raw DIR for the raw data"


def _serialize(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _gold_has_answer(rows: list[dict[str, Any]]) -> int:
    from evals.metrics import contains_answer

    return sum(
        bool(r["answers"]) and any(c.get("gold") and contains_answer(c["title"] + "\n" + c["text"], r["answers"]) for c in r["chunks"])
        for r in rows
    )


def build_one(name: str, raw: Path, *, check: bool = False) -> dict[str, Any]:
    """Build one set; write it (or, with ``check``, compare with the bundled file). Returns its stats."""
    module = BUILDERS[name]
    for rel in module.FILES:
        if not (raw / rel).is_file():
            raise SystemExit(f"raw file {raw / rel} not found; pass --raw DIR pointing at the folder that holds {rel}")
    rows = module.build(raw)
    validate_rows(name, rows)
    path = HERE / f"{name}.jsonl"
    data = _serialize(rows)
    digest = hashlib.sha256(data).hexdigest()
    if check:
        current = path.read_bytes() if path.is_file() else b""
        if current != data:
            raise SystemExit(f"{path} differs from a fresh build (sha256 {digest}); rebuild with {_command(name)}")
        print(f"{name}: {len(rows)} examples, identical to {path.name} (sha256 {digest[:16]})")
        return {}
    write_jsonl(path, rows)
    stats = measure(rows)
    stats["gold_has_answer"] = _gold_has_answer(rows)
    stats["bytes"] = len(data)
    stats["sha256"] = digest
    card = HERE / "cards" / f"{name}.md"
    card.parent.mkdir(exist_ok=True)
    card.write_text(module.card(stats, _command(name)), encoding="utf-8", newline="\n")
    print(
        f"{name}: {stats['n']} examples, tokens mean {stats['tokens_mean']} median {stats['tokens_median']}, "
        f"chunks mean {stats['chunks_mean']}, {stats['bytes'] / 1e6:.1f} MB -> {path.relative_to(ROOT)}"
    )
    return stats


def write_index(all_stats: dict[str, dict[str, Any]]) -> None:
    """Update stats.json and the README table from the stats of the sets just built."""
    summary = json.loads(SUMMARY.read_text(encoding="utf-8")) if SUMMARY.is_file() else {}
    summary.update(all_stats)
    summary = {name: summary[name] for name in BUILDERS if name in summary}
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8", newline="\n")
    rows = []
    for name, s in summary.items():
        doc = (BUILDERS[name].__doc__ or "").strip().splitlines()[0]
        rows.append(
            f"| [{name}](cards/{name}.md) | {doc} | {s['n']} | {s['tokens_mean']} / {s['tokens_median']} "
            f"| {s['chunks_mean']} | {s['gold_mean']} | {s['with_gold_spans']} | {s['answerable'] / s['n']:.0%} "
            f"| {s['bytes'] / 1e6:.1f} MB |"
        )
    (HERE / "README.md").write_text(_README.format(table="\n".join(rows)), encoding="utf-8", newline="\n")


_README = """# Bundled eval sets

Prepared question-answering sets in ragtrim's common schema (see `evals/datasets.py` and the
design notes): one JSON object per line with `id`, `question`, `answers` (may be empty),
`chunks` (`id`, `title`, `text`, `gold`, and on some gold chunks `gold_spans`: `[start, end]`
character offsets of the supporting sentences in that chunk's text) and `meta`.

| set | what | n | tokens mean / median | chunks | gold chunks | with `gold_spans` | answerable | size |
|---|---|---|---|---|---|---|---|---|
{table}

Tokens: `cl100k_base` count of the full rendered context (all chunks with `[n]` markers and
titles), i.e. `optimizer.Pipeline.preset("full").run(question, chunks).tokens`. Each card in
`cards/` gives source and commit, license, how gold is marked and how the set was built.
Licenses: see [LICENSES.md](LICENSES.md); three of the four are **CC BY-SA 4.0 (share-alike)**.

Load them from Python:

```python
from evals.datasets import list_datasets, load_dataset
ds = load_dataset("hotpotqa", limit=50)      # or any .jsonl / .jsonl.gz path in the schema
ex = ds.examples[0]; ex.question, ex.answers, ex.gold_ids
```

or evaluate one: `ragtrim eval --data hotpotqa` (any file in the schema works too).

## Rebuild

From the repository root, with the raw data in `../shared/datasets` (or pass `--raw DIR`):

```
python datasets/build.py                  # all four; byte-identical to the bundled files
python datasets/build.py --only squad2-pools
python datasets/build.py --check          # rebuild in memory, fail if any bundled file would change
```

Build code: `build.py` (driver, cards, this index), one `build_<set>.py` per set and
`_common.py` (sentence offsets, the BM25 used to pick distractors, stats). Numbers in this
table and in the cards are written by the build (also kept in `stats.json`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append", help="build just this set (repeatable)")
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW, help=f"raw data folder (default: {DEFAULT_RAW})")
    parser.add_argument("--check", action="store_true", help="rebuild in memory and fail if a bundled file would change")
    args = parser.parse_args(argv)
    names = args.only if args.only else list(BUILDERS)
    all_stats = {name: build_one(name, args.raw.resolve(), check=args.check) for name in names}
    if not args.check:
        write_index(all_stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
