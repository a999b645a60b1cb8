"""Load test of ``ragtrim serve`` on loopback: quota invariants under concurrency, and gateway overhead.

Starts a fake OpenAI-compatible upstream (with latency), the gateway (``--workers`` uvicorn
workers per replica, ``--replicas`` replicas sharing one database: SQLite in a temp dir, or a
throwaway PostgreSQL cluster with ``--db postgres``), three tenants (no budget, a daily $
budget and a daily token budget, both sized to run out about halfway), and ``--concurrency``
asyncio clients that send ``--requests`` requests with HotpotQA documents (10 paragraphs): chat completions, or
with ``--mix chat,responses,embeddings,messages`` spread over those routes by request index (round robin): a Responses
request (the same question and documents), an embeddings request (the 10 paragraphs as inputs, an indexing job, on
an embedding model the config then serves), an Anthropic Messages request (the same question and documents, on a
Claude model of an ``anthropic`` upstream the config then points at the fake's ``/v1/messages``).
Optionally SIGKILLs one worker after ``--kill-at`` of the requests. Everything is bounded:
a request count, a wall-clock limit, and every process it started is stopped at the end.

It then checks, from the database and the client's own counts:

* overspend: per budget, ``spent - limit`` (must be <= 0) in $ and tokens; and the ledger's
  sum of charged usage equals the counters (no double charge, no lost charge);
* ledger rows = requests answered (+ requests lost with a killed worker, which must be
  ``failed`` rows), every answered request id has its row, no reservation left ``held``,
  and no live request settled after its hold had lapsed (``rows_settled_late``);
* ``GET /v1/usage?by=endpoint`` (each tenant's key) equals the ledger, per endpoint (requests, actions, tokens,
  cost), and each budget's counter (``usage_mismatch``, ``usage_minus_counter``);
* degraded and refused counts; gateway overhead p50/p99 (latency minus upstream time, from
  the ledger and from the client's view); and all of it per route (``routes``).

    python bench/load_serve.py --requests 10000 --concurrency 64 --workers 2
    python bench/load_serve.py --db postgres --replicas 2 --workers 1 --requests 10000
    python bench/load_serve.py --requests 10000 --kill-at 0.4
    python bench/load_serve.py --requests 3000 --concurrency 32 --mix chat,responses,embeddings,messages
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragtrim.serve.budgets import set_budget  # noqa: E402
from ragtrim.serve.db import make_engine  # noqa: E402
from ragtrim.serve.keys import create_key, create_tenant  # noqa: E402
from ragtrim.serve.schema import budget_usage, budgets, ledger, reservations  # noqa: E402
from ragtrim.serve.testing import free_port, temp_postgres  # noqa: E402

PEPPER = "load-test-pepper-0123456789abcdef"
METRICS_TOKEN = "load-test-metrics-token-0123456789"  # /metrics needs it (or an admin key)
TENANTS = ("steady", "capped-usd", "capped-tokens")
EMBEDDING_MODEL = "text-embedding-3-small"
CLAUDE_MODEL = "claude-sonnet-4-5"
# route: (path, ledger endpoint, model, USD per million input tokens, per million output tokens); gpt-4o's are the
# gateway's price table's, the embedding and Claude models' the config's
ROUTES = {"chat": ("/v1/chat/completions", "chat", "gpt-4o", Decimal("2.5"), Decimal(10)),
          "responses": ("/v1/responses", "responses", "gpt-4o", Decimal("2.5"), Decimal(10)),
          "embeddings": ("/v1/embeddings", "embeddings", EMBEDDING_MODEL, Decimal("0.02"), Decimal(0)),
          "messages": ("/v1/messages", "messages", CLAUDE_MODEL, Decimal(3), Decimal(15))}
USAGE_FIELDS = ("requests", "ok", "degraded", "refused", "failed", "pending", "prompt_tokens", "completion_tokens", "cost_micro")


def parse_mix(text: str) -> tuple[str, ...]:
    """``--mix``: route names, comma-separated, each once.

    >>> parse_mix("chat,embeddings")
    ('chat', 'embeddings')
    >>> parse_mix("chat, responses,embeddings,messages")
    ('chat', 'responses', 'embeddings', 'messages')
    >>> parse_mix("chat,images")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: --mix takes routes among chat, responses, embeddings, messages (comma-separated), got 'images'
    >>> parse_mix("messages,messages")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: --mix takes each route once, at least one, e.g. chat,responses,embeddings,messages; got 'messages,messages'
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in ROUTES:
            raise argparse.ArgumentTypeError(f"--mix takes routes among {', '.join(ROUTES)} (comma-separated), got {n!r}")
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--mix takes each route once, at least one, e.g. chat,responses,embeddings,messages; got {text!r}")
    return names


def request_body(route: str, question: str, chunks: list[dict[str, Any]], max_tokens: int, i: int) -> dict[str, Any]:
    """Request ``i``'s body on ``route``: the question and its documents (chat, Responses, Messages), or the documents'
    texts as inputs (embeddings, an indexing job); tagged with one of 7 users and 2 features (a Messages request's
    user as Anthropic's ``metadata.user_id``)."""
    tags = {"user": f"u{i % 7}", "feature": "qa" if i % 2 else "search"}
    if route == "messages":
        return {"model": CLAUDE_MODEL, "max_tokens": max_tokens, "system": "Answer from the documents.",
                "messages": [{"role": "user", "content": question}], "documents": chunks,
                "metadata": {"user_id": tags["user"]}, "feature": tags["feature"]}
    if route == "embeddings":
        return {"model": EMBEDDING_MODEL, "input": [c["text"] for c in chunks], **tags}
    if route == "responses":
        return {"model": "gpt-4o", "instructions": "Answer from the documents.", "input": question, "documents": chunks,
                "max_output_tokens": max_tokens, **tags}
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": question}], "documents": chunks,
            "max_tokens": max_tokens, **tags}


def request_headers(route: str, key: str) -> dict[str, str]:
    """The tenant key as the route's SDK sends it: ``x-api-key`` (the anthropic SDK) on Messages, else a bearer token.

    >>> request_headers("messages", "rtk_1"), request_headers("chat", "rtk_1")
    ({'x-api-key': 'rtk_1'}, {'Authorization': 'Bearer rtk_1'})
    """
    return {"x-api-key": key} if route == "messages" else {"Authorization": f"Bearer {key}"}


def prompt_tokens_of(route: str, usage: dict[str, Any]) -> int:
    """The prompt tokens of a ``route`` answer's ``usage``: Responses' ``input_tokens``; Anthropic's ``input_tokens``
    plus its cache writes and reads (each billed, each part of the prompt); else ``prompt_tokens``.

    >>> prompt_tokens_of("messages", {"input_tokens": 90, "cache_creation_input_tokens": 7, "cache_read_input_tokens": None,
    ...                               "output_tokens": 12})
    97
    >>> prompt_tokens_of("responses", {"input_tokens": 90, "output_tokens": 12})
    90
    """
    if route == "messages":
        return sum(usage.get(k) or 0 for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return usage["input_tokens"] if route == "responses" else usage["prompt_tokens"]


def completion_tokens_of(route: str, usage: dict[str, Any]) -> int:
    """The completion tokens of a ``route`` answer's ``usage`` (0 for embeddings).

    >>> completion_tokens_of("messages", {"input_tokens": 90, "output_tokens": 12})
    12
    """
    if route == "embeddings":
        return 0
    return usage["output_tokens"] if route in ("messages", "responses") else usage["completion_tokens"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def load_documents(n: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """(question, chunks) pairs from the bundled HotpotQA set."""
    out = []
    with open(ROOT / "datasets" / "hotpotqa.jsonl", encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            out.append((ex["question"], [{"id": c["id"], "title": c.get("title"), "text": c["text"]} for c in ex["chunks"]]))
            if len(out) >= n:
                break
    return out


def write_config(path: Path, upstream: str, preset: str, lease: float, connection_max_age: float = 15.0,
                 optimizer_threads: int = 2, tenant_optimizer_runs: int = 64, embeddings: bool = False,
                 messages: bool = False) -> None:
    """The gateway's config: two chat models on the fake upstream, an embedding model when ``embeddings``, and two
    Claude models on an anthropic upstream (the fake's ``/v1/messages``) when ``messages``."""
    embedding = f"""[models."{EMBEDDING_MODEL}"]
upstream = "fake"
kind = "embedding"
tokenizer = "cl100k_base"
input_per_million = {ROUTES["embeddings"][3]}
price_date = "2026-12-01"
""" if embeddings else ""
    claude = f"""[upstreams.claude]
kind = "anthropic"
base_url = "{upstream}"
max_connections = 512
[models."{CLAUDE_MODEL}"]
upstream = "claude"
tokenizer = "cl100k_base"
cheaper = "claude-haiku"
input_per_million = {ROUTES["messages"][3]}
output_per_million = {ROUTES["messages"][4]}
cached_input_per_million = 0.3
cache_write_per_million = 3.75
price_date = "2026-12-01"
[models."claude-haiku"]
upstream = "claude"
tokenizer = "cl100k_base"
input_per_million = 1.0
output_per_million = 5.0
price_date = "2026-12-01"
""" if messages else ""
    path.write_text(f"""
preset = "{preset}"
default_model = "gpt-4o"
lease_seconds = {lease}
connection_max_age = {connection_max_age}
optimizer_threads = {optimizer_threads}
budget = 0.5
[limits]
tenant_optimizer_runs = {tenant_optimizer_runs}
[degrade]
floor = 0.15
[upstreams.fake]
kind = "openai"
base_url = "{upstream}/v1"
max_connections = 512
[models."gpt-4o"]
upstream = "fake"
tokenizer = "cl100k_base"
cheaper = "gpt-4o-mini"
[models."gpt-4o-mini"]
upstream = "fake"
tokenizer = "cl100k_base"
{embedding}{claude}""")


def wait_http(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:g} s")


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in its own process group; stop that group (SIGTERM, then SIGKILL) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def worker_pids(supervisor: int) -> list[int]:
    pids = []
    for pid in children(supervisor):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
            pids.append(pid)
    return pids


class KillWatch:
    """After a worker is killed: when the supervisor started its replacement, and when that one was serving.

    Polls the supervisor's children and its log (uvicorn writes "Application startup complete."
    once per worker) every 0.1 s for at most ``limit`` seconds, in a daemon thread.
    """

    def __init__(self, supervisor: int, log: Path, limit: float = 120.0) -> None:
        self.supervisor, self.log, self.limit = supervisor, log, limit
        self.killed_at: float | None = None  # seconds since the client run began
        self.respawned_s: float | None = None  # kill -> replacement process exists
        self.ready_s: float | None = None  # kill -> replacement logged startup complete
        self.killed_wall = 0.0

    def _ready_lines(self) -> int:
        try:
            return self.log.read_text(errors="replace").count("Application startup complete")
        except OSError:
            return 0

    def start(self, before: list[int], at: float) -> None:
        self.killed_at, self.killed_wall = at, time.time()
        t0, lines = time.perf_counter(), self._ready_lines()

        def poll() -> None:
            while time.perf_counter() - t0 < self.limit and self.ready_s is None:
                if self.respawned_s is None and set(worker_pids(self.supervisor)) - set(before):
                    self.respawned_s = time.perf_counter() - t0
                if self._ready_lines() > lines:
                    self.ready_s = time.perf_counter() - t0
                time.sleep(0.1)

        threading.Thread(target=poll, daemon=True).start()

    def report(self, results: list[dict[str, Any]], db_url: str) -> dict[str, Any]:
        """The timeline; answered requests per second in the 20 s before the kill and after it; the
        ledger rows each worker wrote in the 20 s windows after the kill (is the replacement used?)."""
        if self.killed_at is None:
            return {}
        engine = make_engine(db_url, create=False)
        with engine.connect() as c:
            rows = c.execute(ledger.select().with_only_columns(ledger.c.ts, ledger.c.worker_id)
                             .where(ledger.c.ts >= self.killed_wall - 20)).all()
        engine.dispose()
        per_worker: dict[str, dict[str, int]] = {}
        for ts, worker in rows:
            w = f"{int((ts - self.killed_wall) // 20) * 20:+d}s"
            pid = worker.split(":")[1] if worker.count(":") >= 2 else worker
            per_worker.setdefault(w, {}).setdefault(pid, 0)
            per_worker[w][pid] += 1
        k = self.killed_at
        done = [r["t"] for r in results if r.get("status") is not None]
        window = 20.0
        before = sum(1 for t in done if k - window <= t < k) / window
        after = [sum(1 for t in done if k + a <= t < k + a + window) / window for a in (0.0, window, 2 * window)]
        return {"killed_at_s": round(k, 2), "replacement_started_s": self.respawned_s, "replacement_ready_s": self.ready_s,
                "rps_20s_before": before, "rps_after_0_20_40s": after,
                "ledger_rows_by_worker_per_20s": dict(sorted(per_worker.items(), key=lambda kv: int(kv[0][:-1])))}


def setup_tenants(db_url: str) -> dict[str, str]:
    """The tenants and a key of each (their budgets come after the probes: :func:`resize_budgets`)."""
    engine = make_engine(db_url)
    keys = {}
    for t in TENANTS:
        create_tenant(engine, t)
        keys[t] = create_key(engine, PEPPER.encode(), tenant_id=t)[1]
    engine.dispose()
    return keys


async def client_run(bases: list[str], keys: dict[str, str], docs: list, n: int, concurrency: int, max_tokens: int,
                     time_limit: float, kill: Any, mix: tuple[str, ...] = ("chat",)) -> list[dict[str, Any]]:
    import httpx

    results: list[dict[str, Any]] = []
    began = time.perf_counter()
    counter = iter(range(n))
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2, keepalive_expiry=10)

    async def one(client: Any, i: int) -> None:
        route = mix[i % len(mix)]
        tenant = TENANTS[(i // len(mix)) % len(TENANTS)]  # every tenant gets every route (as i % 3 for chat alone)
        question, chunks = docs[i % len(docs)]
        body = request_body(route, question, chunks, max_tokens, i)
        start = time.perf_counter()
        row: dict[str, Any] = {"i": i, "tenant": tenant, "route": route}
        try:
            r = await client.post(f"{bases[i % len(bases)]}{ROUTES[route][0]}", json=body,
                                  headers=request_headers(route, keys[tenant]))
            row.update(status=r.status_code, id=r.headers.get("x-ragtrim-request-id"), action=r.headers.get("x-ragtrim-action"),
                       model=r.headers.get("x-ragtrim-model"), upstream_ms=float(r.headers.get("x-ragtrim-upstream-ms", "nan")))
        except httpx.HTTPError as exc:
            row.update(status=None, error=type(exc).__name__)
        row["ms"] = (time.perf_counter() - start) * 1000
        row["t"] = time.perf_counter() - began
        results.append(row)

    async def worker(client: Any) -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            if kill is not None and i == kill[0]:
                kill[1]()
            await one(client, i)

    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=30), limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def probe_request(base: str, key: str, doc: tuple, max_tokens: int, route: str = "chat") -> dict[str, Any]:
    """One request on ``route`` (the ``steady`` tenant's): its prompt tokens size the budgets."""
    import httpx

    body = {k: v for k, v in request_body(route, doc[0], doc[1], max_tokens, 0).items()
            if k not in ("user", "feature", "metadata")}
    r = httpx.post(f"{base}{ROUTES[route][0]}", headers=request_headers(route, key), timeout=60, json=body)
    r.raise_for_status()
    usage = r.json()["usage"]
    return {"route": route, "prompt_tokens": prompt_tokens_of(route, usage), "completion_tokens": completion_tokens_of(route, usage),
            "max_tokens": 0 if route == "embeddings" else max_tokens, "id": r.headers["x-ragtrim-request-id"]}


def busiest_worker(db_url: str, pids: list[int]) -> int:
    """The worker pid holding the most reservations right now (requests in flight), else the first.

    Keep-alive connections can all land on one worker; killing an idle one would test nothing.
    """
    engine = make_engine(db_url, create=False)
    with engine.connect() as c:
        held = c.exec_driver_sql("SELECT worker_id, COUNT(*) FROM rt_reservations WHERE state = 'held' GROUP BY worker_id").all()
    engine.dispose()
    counts = {int(w.split(":")[1]): n for w, n in held if w.count(":") >= 2 and w.split(":")[1].isdigit()}
    return max(pids, key=lambda pid: counts.get(pid, 0))


def read_db(db_url: str, endpoints: set[str], probe_ids: set[str]) -> dict[str, Any]:
    """The ledger (``every`` row; ``rows``: the run's, on the mix's endpoints, the sizing probes left out), the budgets,
    their counters and the reservations."""
    engine = make_engine(db_url, create=False)
    with engine.connect() as c:
        every = [r._asdict() for r in c.execute(ledger.select()).all()]
        usage = {r.budget_id: r for r in c.execute(budget_usage.select()).all()}
        blist = c.execute(budgets.select()).all()
        held = c.execute(reservations.select().where(reservations.c.state == "held")).all()
        states = dict(c.exec_driver_sql("SELECT state, COUNT(*) FROM rt_reservations GROUP BY state").all())
    engine.dispose()
    rows = [r for r in every if r["endpoint"] in endpoints and r["id"] not in probe_ids]
    return {"every": every, "rows": rows, "usage": usage, "budgets": blist, "held": held, "states": states}


def charged_sum(rows: list[dict[str, Any]], unit: str) -> int:
    """What ``rows`` charged a budget of ``unit``: micro-dollars, or prompt plus completion tokens (of ok and degraded rows)."""
    charged = [r for r in rows if r["action"] in ("ok", "degraded")]
    if unit == "usd":
        return sum(r["cost_micro"] for r in charged)
    return sum(r["prompt_tokens"] + r["completion_tokens"] for r in charged)


def check(db_url: str, results: list[dict[str, Any]], probe_ids: str | set[str], usage_reports: dict[str, Any] | None = None,
          mix: tuple[str, ...] = ("chat",)) -> dict[str, Any]:
    """The invariants, from the database (the sizing probes' rows left out) and, given ``usage_reports`` (each tenant's
    ``GET /v1/usage?by=endpoint``), that the usage the API reports is the ledger's."""
    ids = {probe_ids} if isinstance(probe_ids, str) else set(probe_ids)
    db = read_db(db_url, {ROUTES[r][1] for r in mix}, ids)
    rows = db["rows"]
    answered = [r for r in results if r["status"] is not None]
    out = counts(rows, results, answered)
    out.update(reservations_held=len(db["held"]), reservation_states=db["states"])
    out["budgets"] = budget_report(db, rows, usage_reports)
    out["overhead_ms"] = overhead(rows, answered)
    out["routes"] = {route: route_report(route, rows, results) for route in mix}
    if usage_reports is not None:
        out["usage_mismatch"] = usage_mismatch(db["every"], usage_reports)
    return out


def counts(rows: list[dict[str, Any]], results: list[dict[str, Any]], answered: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests sent, answered and lost; ledger rows, and those missing, late, pending or of no answer; statuses and actions."""
    by_id = {r["id"]: r for r in rows}
    lost = [r for r in results if r["status"] is None]
    missing = [r for r in answered if r.get("id") and r["id"] not in by_id]
    unlabeled = [r for r in answered if not r.get("id")]
    return {
        "requests_sent": len(results), "answered": len(answered), "lost_connection": len(lost),
        "lost_errors": {e: sum(1 for r in lost if r.get("error") == e) for e in sorted({r.get("error") for r in lost})},
        "ledger_rows": len(rows), "answered_without_ledger_row": len(missing) + len(unlabeled),
        "rows_failed_worker_died": sum(1 for r in rows if "worker stopped" in r["error"]),
        "rows_settled_late": sum(1 for r in rows if "settled after its reservation had expired" in r["error"]),
        "rows_not_answered": _not_answered(rows, answered),
        "rows_pending": sum(1 for r in rows if r["action"] == "pending"),
        "status": status_counts(results),
        "degraded": sum(1 for r in rows if r["action"] == "degraded"),
        "degraded_to_cheaper_model": sum(1 for r in rows if r["action"] == "degraded" and r["model_used"] != r["model_asked"]),
        "refused": sum(1 for r in rows if r["action"] == "refused"),
    }


def status_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    return {str(k): sum(1 for r in results if r["status"] == k) for k in sorted({r["status"] for r in results}, key=str)}


def budget_report(db: dict[str, Any], rows: list[dict[str, Any]], usage_reports: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per budget: limit, spent, reserved, overspend; the ledger's sum and, given the reports, ``/v1/usage``'s, each
    minus the counter (the probes are ``steady``'s, which has no budget)."""
    out = []
    for b in db["budgets"]:
        u = db["usage"].get(b.id)
        spent = int(u.spent) if u else 0
        ledger_sum = charged_sum([r for r in rows if r["tenant_id"] == b.tenant_id], b.unit)
        item = {"tenant": b.tenant_id, "unit": b.unit, "limit": int(b.limit_amount), "spent": spent,
                "reserved": int(u.reserved) if u else 0, "overspend": max(0, spent - int(b.limit_amount)),
                "ledger_sum": ledger_sum, "ledger_minus_counter": ledger_sum - spent}
        if usage_reports is not None:
            totals = usage_reports[b.tenant_id]["totals"]
            usage_sum = totals.get("cost_micro", 0) if b.unit == "usd" else totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0)
            item.update(usage_sum=usage_sum, usage_minus_counter=usage_sum - spent)
        out.append(item)
    return out


def overhead(rows: list[dict[str, Any]], answered: list[dict[str, Any]]) -> dict[str, Any]:
    """Gateway overhead (latency minus upstream time) p50/p99 from the ledger and the client; refusals' latency."""
    served = [r for r in rows if r["action"] in ("ok", "degraded")]
    server = [r["latency_ms"] - r["upstream_ms"] for r in served]
    refused = [r["latency_ms"] for r in rows if r["action"] == "refused"]
    early = [r["latency_ms"] for r in rows if r["action"] == "refused" and (r["detail"] or "").startswith("refused before optimizing")]
    client = [r["ms"] - r["upstream_ms"] for r in answered if r["status"] == 200 and r["upstream_ms"] == r["upstream_ms"]]
    return {"server_p50": percentile(server, 0.5), "server_p99": percentile(server, 0.99),
            "client_p50": percentile(client, 0.5), "client_p99": percentile(client, 0.99),
            "refusal_p50": percentile(refused, 0.5), "refusal_p99": percentile(refused, 0.99),
            "early_refusals": len(early), "early_refusal_p50": percentile(early, 0.5),
            "early_refusal_p99": percentile(early, 0.99),
            "upstream_p50": percentile([r["upstream_ms"] for r in served], 0.5)}


def route_report(route: str, rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """One route's share: requests sent and their statuses, its ledger rows by action, what they charged, its overhead."""
    mine = [r for r in rows if r["endpoint"] == ROUTES[route][1]]
    sent = [r for r in results if r.get("route", "chat") == route]
    served = [r for r in mine if r["action"] in ("ok", "degraded")]
    server = [r["latency_ms"] - r["upstream_ms"] for r in served]
    return {"sent": len(sent), "status": status_counts(sent), "ledger_rows": len(mine),
            **{a: sum(1 for r in mine if r["action"] == a) for a in ("ok", "degraded", "refused", "failed", "pending")},
            "prompt_tokens": sum(r["prompt_tokens"] for r in served), "completion_tokens": sum(r["completion_tokens"] for r in served),
            "cost_micro": sum(r["cost_micro"] for r in served),
            "server_overhead_p50_ms": percentile(server, 0.5), "server_overhead_p99_ms": percentile(server, 0.99),
            "upstream_p50_ms": percentile([r["upstream_ms"] for r in served], 0.5)}


def ledger_by_endpoint(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """What ``GET /v1/usage?by=endpoint`` should say of ``rows``: requests, by action, and the charged rows' sums."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        e = out.setdefault(r["endpoint"], dict.fromkeys(USAGE_FIELDS, 0))
        e["requests"] += 1
        e[r["action"]] = e.get(r["action"], 0) + 1
        if r["action"] in ("ok", "degraded"):
            for f in ("prompt_tokens", "completion_tokens", "cost_micro"):
                e[f] += r[f]
    return out


def usage_mismatch(every: list[dict[str, Any]], usage_reports: dict[str, Any]) -> list[str]:
    """Where a tenant's ``/v1/usage?by=endpoint`` differs from its ledger rows (the probes' too): ``[]`` when it agrees."""
    out = []
    for tenant, report in usage_reports.items():
        want = ledger_by_endpoint([r for r in every if r["tenant_id"] == tenant])
        got = {row["endpoint"]: row for row in report["rows"]}
        for endpoint in sorted(set(want) | set(got)):
            for f in USAGE_FIELDS:
                w, g = want.get(endpoint, {}).get(f, 0), got.get(endpoint, {}).get(f, 0)
                if w != g:
                    out.append(f"{tenant} {endpoint} {f}: ledger {w}, /v1/usage {g}")
    return out


def _not_answered(rows: list[dict[str, Any]], answered: list[dict[str, Any]]) -> dict[str, int]:
    """Ledger rows of requests the client got no answer for (a killed worker's), by action."""
    ids = {r.get("id") for r in answered}
    out: dict[str, int] = {}
    for r in rows:
        if r["id"] not in ids:
            out[r["action"]] = out.get(r["action"], 0) + 1
    return out

def start_gateways(stack: ExitStack, args: argparse.Namespace, env: dict[str, str], tmp: Path) -> tuple[str, list[str], list[int]]:
    """The database, the fake upstream, the config and ``--replicas`` gateways of ``--workers`` workers, all stopped
    when ``stack`` closes: ``(db_url, base URLs, supervisor pids)``."""
    db_url = stack.enter_context(temp_postgres(max_connections=400)) if args.db == "postgres" else f"sqlite:///{tmp}/serve.sqlite"
    up_port = free_port()
    stack.enter_context(process([sys.executable, "-m", "ragtrim.serve.fake_upstream", str(up_port), str(args.upstream_ms),
                                 str(args.upstream_jitter_ms)], env, tmp / "upstream.log"))
    wait_http(f"http://127.0.0.1:{up_port}/v1/models")
    write_config(tmp / "serve.toml", f"http://127.0.0.1:{up_port}", args.preset, args.lease, args.connection_max_age,
                 args.optimizer_threads, args.tenant_optimizer_runs, embeddings="embeddings" in args.mix, messages="messages" in args.mix)
    make_engine(db_url).dispose()
    bases, supervisors = [], []
    for r in range(args.replicas):
        port = free_port()
        if args.workers > 1:
            (tmp / f"prom{r}").mkdir()
        proc = stack.enter_context(process(
            [sys.executable, "-m", "ragtrim.serve", "serve", "--config", str(tmp / "serve.toml"), "--db", db_url,
             "--workers", str(args.workers), "--port", str(port)], {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"prom{r}")} if args.workers > 1 else env,
            tmp / f"gateway{r}.log"))
        supervisors.append(proc.pid)
        bases.append(f"http://127.0.0.1:{port}")
    for b in bases:
        wait_http(f"{b}/healthz", timeout=120)
    return db_url, bases, supervisors


def usage_reports(base: str, keys: dict[str, str]) -> dict[str, Any]:
    """Each tenant's ``GET /v1/usage?by=endpoint``, with its own key."""
    import httpx

    out = {}
    for tenant, key in keys.items():
        r = httpx.get(f"{base}/v1/usage", params={"by": "endpoint"}, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        r.raise_for_status()
        out[tenant] = r.json()
    return out


def metrics_by_endpoint(base: str, mix: tuple[str, ...]) -> dict[str, float]:
    """``ragtrim_requests_total`` per endpoint of the mix, from ``/metrics`` (the first replica's workers)."""
    import httpx

    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    lines = [line for line in text.splitlines() if line.startswith("ragtrim_requests_total{")]
    return {ROUTES[r][1]: sum(float(line.rsplit(" ", 1)[1]) for line in lines if f'endpoint="{ROUTES[r][1]}"' in line)
            for r in mix}


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGTRIM_SERVE_PEPPER": PEPPER, "RAGTRIM_SERVE_METRICS_TOKEN": METRICS_TOKEN, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    docs = load_documents(200)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragtrim-load-")))
        env["RAGTRIM_CACHE"] = os.environ.get("RAGTRIM_CACHE", str(Path.home() / ".cache" / "ragtrim"))
        db_url, bases, supervisors = start_gateways(stack, args, env, tmp)
        keys = setup_tenants(db_url)
        probes = [probe_request(bases[0], keys["steady"], docs[0], args.max_tokens, route) for route in args.mix]
        sized = resize_budgets(db_url, args.requests // len(TENANTS), probes)
        killed: list[int] = []
        watch = KillWatch(supervisors[0], tmp / "gateway0.log")

        def do_kill() -> None:
            pids = worker_pids(supervisors[0])
            if pids:
                victim = busiest_worker(db_url, pids)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                watch.start(pids, time.perf_counter() - t0)

        kill = (int(args.requests * args.kill_at), do_kill) if args.kill_at is not None else None
        t0 = time.perf_counter()
        results = asyncio.run(client_run(bases, keys, docs, args.requests, args.concurrency, args.max_tokens,
                                         args.time_limit, kill, args.mix))
        wall = time.perf_counter() - t0
        if killed:  # let a live worker's lease keeper expire the dead worker's reservations
            time.sleep(args.lease * 2 + 1)
        metrics = metrics_by_endpoint(bases[0], args.mix)
        report = check(db_url, results, {p["id"] for p in probes}, usage_reports(bases[0], keys), args.mix)
        timeline = watch.report(results, db_url)
    report.update(wall_s=wall, throughput_rps=len(results) / wall, killed_workers=killed, kill_timeline=timeline,
                  limits=sized, probe=probes[0] if len(probes) == 1 else probes,
                  metrics_requests_total=sum(metrics.values()), metrics_requests_by_endpoint=metrics,
                  settings={k: (",".join(v) if k == "mix" else v) for k, v in vars(args).items()})
    return report


def resize_budgets(db_url: str, n_each: int, probes: list[dict[str, Any]]) -> dict[str, int]:
    """The capped tenants' budgets, sized from the probes (one per route of the mix, each sent to a tenant's share of
    requests alike) so that they run out about halfway: a request's worst case (prompt plus cap) in tokens and in $."""
    per_tokens = sum(p["prompt_tokens"] + p["max_tokens"] for p in probes)
    per_micro = sum(int(Decimal(p["prompt_tokens"]) * ROUTES[p["route"]][3] + Decimal(p["max_tokens"]) * ROUTES[p["route"]][4])
                    for p in probes)
    share = 2 * len(probes)
    limits = {"usd": per_micro * n_each // share, "tokens": per_tokens * n_each // share}
    engine = make_engine(db_url, create=False)
    set_budget(engine, tenant_id="capped-usd", unit="usd", period="day", limit=limits["usd"])
    set_budget(engine, tenant_id="capped-tokens", unit="tokens", period="day", limit=limits["tokens"])
    engine.dispose()
    return limits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--preset", default="default")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--upstream-ms", type=float, default=40.0, help="fake upstream latency (plus up to --upstream-jitter-ms)")
    p.add_argument("--upstream-jitter-ms", type=float, default=40.0)
    p.add_argument("--lease", type=float, default=5.0, help="reservation lease seconds (a dead worker's holds expire after it)")
    p.add_argument("--connection-max-age", type=float, default=15.0,
                   help="the gateway's connection_max_age (0: keep-alive connections are never closed by the gateway)")
    p.add_argument("--optimizer-threads", type=int, default=2,
                   help="the gateway's optimizer_threads (optimizer runs at once per worker; 64 is about the old shared pool)")
    p.add_argument("--tenant-optimizer-runs", type=int, default=64,
                   help="the gateway's [limits] tenant_optimizer_runs (default 64 here: a few tenants at --concurrency "
                        "64 measure the quota's accounting; the gateway's own default, optimizer_threads, would refuse "
                        "most of them with a 429 rate_limit_exceeded)")
    p.add_argument("--mix", type=parse_mix, default=("chat",),
                   help="routes the requests go to, round robin by request index: chat, responses, embeddings, messages "
                        "(comma-separated; default chat)")
    p.add_argument("--kill-at", type=float, default=None, help="SIGKILL one worker after this share of the requests")
    p.add_argument("--time-limit", type=float, default=480.0, help="stop sending after this many seconds")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = p.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    bad = [b for b in report["budgets"] if b["overspend"] or b["ledger_minus_counter"] or b["reserved"] or b.get("usage_minus_counter")]
    if (bad or report["answered_without_ledger_row"] or report["rows_pending"] or report["reservations_held"]
            or report.get("usage_mismatch")):
        sys.exit(1)


if __name__ == "__main__":
    main()
