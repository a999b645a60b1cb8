"""Shared set-up for the service tests: a fake upstream on loopback and a gateway in-process, or a scripted
upstream and a gateway both on loopback (:func:`stack`)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.schema import budget_usage, budgets, ledger, reservations
from ragtrim.serve.service import Service

PEPPER = b"test-pepper-0123456789abcdef"

DOCS = [
    {"id": "d1", "title": "Paris", "text": "Paris is the capital of France. It has about 2.1 million inhabitants. "
     "The Seine flows through the city. The Louvre is the most visited museum in the world."},
    {"id": "d2", "title": "Lyon", "text": "Lyon is the third-largest city of France. It is known for its cuisine and "
     "its silk industry. The Rhone and the Saone meet in Lyon."},
    {"id": "d3", "title": "Marseille", "text": "Marseille is a port city on the Mediterranean coast of France. "
     "It is the second-largest city of France. Its old port dates from antiquity."},
    {"id": "d4", "title": "Bordeaux", "text": "Bordeaux is a port city on the Garonne in southwestern France. "
     "It is famous for its wine. The city centre is a UNESCO World Heritage site."},
]


def gateway_config(base_url: str, upstream: dict[str, Any] | None = None, *, extra_models: dict[str, Any] | None = None,
                   **overrides: Any) -> ServeConfig:
    """The gateway's config: two models on the upstream at ``base_url`` (its ``[upstreams.fake]`` plus ``upstream``),
    and ``extra_models`` beside them."""
    data: dict[str, Any] = {
        "preset": "bm25-pack",
        "default_model": "gpt-4o",
        "lease_seconds": 30,
        "upstreams": {"fake": {"kind": "openai", "base_url": f"{base_url}/v1", "api_key_env": "RAGTRIM_TEST_UPSTREAM_KEY",
                               **(upstream or {})}},
        "models": {
            "gpt-4o": {"upstream": "fake", "tokenizer": "cl100k_base", "cheaper": "gpt-4o-mini"},
            "gpt-4o-mini": {"upstream": "fake", "tokenizer": "cl100k_base"},
        },
        "degrade": {"floor": 40},
    }
    data["models"].update(extra_models or {})
    data.update(overrides)
    return ServeConfig.from_dict(data)


@contextmanager
def gateway(base_url: str, db_url: str | None = None, clock: Callable[[], float] | None = None,
            **overrides: Any) -> Iterator[tuple[Any, Service]]:
    """A TestClient on the gateway (lifespan run) and its Service, on a fresh SQLite file unless ``db_url``; its budget
    periods taken at ``clock`` when given."""
    import tempfile

    from starlette.testclient import TestClient

    from ragtrim.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        url = db_url if db_url is not None else f"sqlite:///{tmp}/serve.sqlite"
        service = Service(gateway_config(base_url, **overrides), db_url=url, pepper=PEPPER, **({"clock": clock} if clock else {}))
        with TestClient(create_app(service)) as client:
            yield client, service


def tenant_with_key(service: Service, name: str) -> str:
    create_tenant(service.engine, name)
    return create_key(service.engine, service.pepper, tenant_id=name)[1]


def admin_key(service: Service) -> str:
    return create_key(service.engine, service.pepper, tenant_id=None, admin=True)[1]


def budget(service: Service, tenant: str, unit: str, limit: int, period: str = "day", **kw: Any) -> None:
    set_budget(service.engine, tenant_id=tenant, unit=unit, period=period, limit=limit, **kw)


def chat_body(question: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": question}], "documents": DOCS, "max_tokens": 20, **extra}


def auth(key: str) -> dict[str, str]:
    """The header that presents ``key`` to the gateway."""
    return {"Authorization": f"Bearer {key}"}


def ledger_rows(service: Service) -> list[dict[str, Any]]:
    """Every ledger row of ``service``'s database, oldest first, as dicts."""
    with service.engine.connect() as c:
        return [r._asdict() for r in c.execute(ledger.select().order_by(ledger.c.ts)).all()]


# A scripted upstream and the gateway, both on loopback (uvicorn), for tests that talk HTTP to both.


@dataclass
class Stack:
    """The gateway's URL, its Service, a tenant key (with a token budget) and the bodies the upstream was sent."""

    url: str
    service: Any
    key: str
    calls: list[dict[str, Any]]

    def post(self, **extra: Any) -> Any:
        import httpx

        return httpx.post(f"{self.url}/v1/chat/completions", json=chat(**extra), headers=self.auth(), timeout=30)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50, **extra}


@contextmanager
def stack(tmp_path: Any, answer: Callable[[dict[str, Any]], Any], *, db_url: str | None = None,
          extra_models: dict[str, Any] | None = None, **settings: Any) -> Iterator[Stack]:
    """An upstream answering each request with ``answer(body)`` (a Starlette response, or a coroutine giving one), and a
    gateway in front of it, both on loopback; ``settings`` go in the gateway's ``[upstreams.fake]``; the ledger on
    ``db_url`` (default: a SQLite file in ``tmp_path``); ``extra_models`` beside gateway_config's two."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ragtrim.serve.app import create_app
    from ragtrim.serve.testing import serve_in_thread

    calls: list[dict[str, Any]] = []

    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        calls.append(body)
        out = answer(body)
        return await out if inspect.isawaitable(out) else out

    upstream = Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                                 Route("/v1/responses", chat_completions, methods=["POST"])])  # Responses: body["input"]
    with serve_in_thread(upstream) as up:
        config = gateway_config(up, settings, extra_models=extra_models)
        service = Service(config, db_url=db_url or f"sqlite:///{tmp_path}/serve.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            key = tenant_with_key(service, "acme")
            budget(service, "acme", "tokens", 100_000)
            yield Stack(base, service, key, calls)


def final_rows(service: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The ledger rows, once none is pending (a stream settles just after its last byte is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        with service.engine.connect() as c:
            rows = [r._asdict() for r in c.execute(ledger.select().order_by(ledger.c.ts)).all()]
        if all(r["action"] != "pending" for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def readme_service_block(after: str) -> str:
    """The first Python block of the README's "Run it as a service" section after the text ``after``."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run it as a service", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section.split(after, 1)[1], flags=re.S)[0]


def run_readme_block(block: str, client: Any, service: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """Run a README ``block`` with ``client`` and the documents (``chunks``); its ``reply`` and the one ledger row."""
    scope = {"client": client, "chunks": DOCS, "print": lambda *a: None}
    exec(compile(block, f"README.md ({name} example)", "exec"), scope)
    [row] = final_rows(service)
    return scope["reply"], row


def endpoints_seen(url: str, key: str, admin: str) -> tuple[list[str], str]:
    """The endpoints ``GET /v1/usage?by=endpoint`` groups a tenant's usage by, and the ``/metrics`` text."""
    import httpx

    usage = httpx.get(f"{url}/v1/usage?by=endpoint", headers={"Authorization": f"Bearer {key}"}).json()
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    return [g["endpoint"] for g in usage["rows"]], metrics


def spent_and_reserved(service: Any) -> tuple[int, int]:
    """The tenant's token budget this period: (spent, reserved); and no reservation may still be held."""
    with service.engine.connect() as c:
        q = budget_usage.join(budgets, budgets.c.id == budget_usage.c.budget_id).select()
        [usage] = c.execute(q).all()
        assert c.execute(reservations.select().where(reservations.c.state == "held")).all() == []
    return int(usage.spent), int(usage.reserved)


def assert_estimated(stack: Stack, status: int, error: str) -> dict[str, Any]:
    """One row settled at its reservation as an estimate (``ok``, with the client's ``status`` and ``error`` in its error;
    the budget spent that much, nothing held); the row."""
    [row] = final_rows(stack.service)
    assert (row["action"], row["status"], row["usage_source"]) == ("ok", status, "estimated") and error in row["error"], row
    assert "charged its reservation as an estimate" in row["error"], row
    assert row["prompt_tokens"] + row["completion_tokens"] == row["reserved_tokens"] > 0 and row["cost_micro"] == row["reserved_micro"]
    assert spent_and_reserved(stack.service) == (row["reserved_tokens"], 0)
    return row


async def wait_for(gate: threading.Event, seconds: float) -> bool:
    """Wait (in a scripted upstream, without blocking its loop) until ``gate`` is set; False when ``seconds`` passed first."""
    deadline = time.monotonic() + seconds
    while not gate.is_set():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
