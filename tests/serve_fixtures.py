"""Shared set-up for the service tests: a fake upstream on loopback and a gateway in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.schema import ledger
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


def gateway_config(base_url: str, upstream: dict[str, Any] | None = None, **overrides: Any) -> ServeConfig:
    """The gateway's config: two models on the upstream at ``base_url`` (its ``[upstreams.fake]`` plus ``upstream``)."""
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
    data.update(overrides)
    return ServeConfig.from_dict(data)


@contextmanager
def gateway(base_url: str, db_url: str | None = None, **overrides: Any) -> Iterator[tuple[Any, Service]]:
    """A TestClient on the gateway (lifespan run) and its Service, on a fresh SQLite file unless ``db_url``."""
    import tempfile

    from starlette.testclient import TestClient

    from ragtrim.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        url = db_url if db_url is not None else f"sqlite:///{tmp}/serve.sqlite"
        service = Service(gateway_config(base_url, **overrides), db_url=url, pepper=PEPPER)
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
