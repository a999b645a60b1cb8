"""Time the parts of one gateway request, one at a time (no HTTP, no concurrency):
authenticate, read budgets, reserve, settle (SQLite file), optimize (bm25-pack and default,
HotpotQA's 10 paragraphs at budget 0.5) and counting the prompt.

    python bench/serve_parts.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.pipeline import Pipeline  # noqa: E402
from ragtrim.serve.budgets import set_budget  # noqa: E402
from ragtrim.serve.db import make_engine  # noqa: E402
from ragtrim.serve.keys import authenticate, create_key, create_tenant  # noqa: E402
from ragtrim.serve.ledger import LedgerEntry  # noqa: E402
from ragtrim.serve.quota import Need, QuotaStore  # noqa: E402
from ragtrim.serve.upstream import count_chat_tokens  # noqa: E402


def timed(label: str, fn, n: int = 200) -> None:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    print(f"{label:<22} {(time.perf_counter() - start) / n * 1000:7.2f} ms")


def main() -> None:
    docs = [json.loads(line) for line, _ in zip(open(ROOT / "datasets" / "hotpotqa.jsonl", encoding="utf-8"), range(20))]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/parts.sqlite")
        create_tenant(engine, "a")
        pepper = b"p" * 32
        key = create_key(engine, pepper, tenant_id="a")[1]
        set_budget(engine, tenant_id="a", unit="usd", period="day", limit=10**12)
        store = QuotaStore(engine, worker_id="w")
        budgets = store.budgets_for("a", user="", feature="")
        ids = [uuid.uuid4().hex for _ in range(200)]
        timed("authenticate", lambda i: authenticate(engine, pepper, key))
        timed("read budgets", lambda i: store.budgets_for("a", user="", feature=""))
        timed("reserve (+pending row)", lambda i: store.reserve(ids[i], budgets, Need(100, 100), LedgerEntry(
            id=ids[i], ts=time.time(), tenant_id="a", endpoint="chat", action="pending")))
        timed("settle (+final row)", lambda i: store.settle(ids[i], Need(90, 90), LedgerEntry(
            id=ids[i], ts=time.time(), tenant_id="a", endpoint="chat", action="ok")))
        engine.dispose()
    for preset in ("bm25-pack", "default"):
        pipe = Pipeline.preset(preset)
        pipe.run(docs[0]["question"], docs[0]["chunks"], budget=0.5)
        timed(f"optimize {preset}", lambda i: pipe.run(docs[i % 20]["question"], docs[i % 20]["chunks"], budget=0.5), 40)
    text = pipe.run(docs[0]["question"], docs[0]["chunks"], budget=0.5).text
    timed("count prompt tokens", lambda i: count_chat_tokens([{"role": "system", "content": text}, {"role": "user", "content": "q"}], "cl100k_base"))


if __name__ == "__main__":
    main()
