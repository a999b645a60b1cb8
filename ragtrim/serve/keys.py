"""Tenants and API keys. Keys are random, shown once, and stored only as a keyed hash.

A key looks like ``rtk_<id>_<secret>``: ``id`` (12 hex characters) finds the row, the whole
key is hashed with HMAC-SHA256 under a server pepper (never stored in the database) and
compared in constant time. An admin key has no tenant and may call the admin routes.

>>> pepper = b"p" * 32
>>> key = new_key_text()
>>> key.startswith("rtk_") and len(key) > 50
True
>>> hash_key(key, pepper) == hash_key(key, pepper), hash_key(key, pepper) == hash_key(key, b"q" * 32)
(True, False)
>>> key_id(key) == key.split("_")[1]
True
>>> key_id("nonsense") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtrim.serve.db import reading, writing
from ragtrim.serve.schema import api_keys, tenants

_KEY_RE = re.compile(r"^rtk_([0-9a-f]{12})_([A-Za-z0-9\-_]{40,})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant key or an admin key."""

    key_id: str
    tenant_id: str | None
    admin: bool


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created: float
    disabled: bool


def new_key_text() -> str:
    """A fresh random key (``secrets``): 48 bits of id, 256 bits of secret."""
    return f"rtk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def key_id(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    m = _KEY_RE.match(key or "")
    return m.group(1) if m else None


def hash_key(key: str, pepper: bytes) -> str:
    """HMAC-SHA256 of the whole key under the pepper, hex."""
    return hmac.new(pepper, key.encode("utf-8"), hashlib.sha256).hexdigest()


def load_pepper(env_name: str, fallback_dir: Path, env: dict[str, str] | None = None) -> bytes:
    """The server pepper: the environment variable ``env_name`` if set, else a 0600 file in ``fallback_dir``.

    Several replicas on different hosts must share it: set the variable on all of them.
    """
    env = dict(os.environ) if env is None else env
    value = env.get(env_name)
    if value:
        if len(value) < 16:
            raise ValueError(f"{env_name} must be at least 16 characters of secret, got {len(value)}")
        return value.encode("utf-8")
    path = fallback_dir / "serve-pepper"
    if not path.exists():
        fallback_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        try:
            os.write(fd, secrets.token_hex(32).encode("ascii"))
        finally:
            os.close(fd)
    return path.read_bytes().strip()


def create_tenant(engine: Any, name: str, *, now: float | None = None) -> Tenant:
    """Add a tenant named ``name`` (letters, digits, ``.-_``); its id is the name."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"tenant name must be 1-64 letters, digits, '.', '-' or '_' starting with a letter or digit, got {name!r}")
    t = Tenant(id=name, name=name, created=time.time() if now is None else now, disabled=False)
    with writing(engine) as conn:
        if conn.execute(tenants.select().where(tenants.c.id == name)).first() is not None:
            raise ValueError(f"tenant {name!r} already exists")
        conn.execute(tenants.insert().values(id=t.id, name=t.name, created=t.created, disabled=False))
    return t


def list_tenants(engine: Any) -> list[Tenant]:
    with reading(engine) as conn:
        rows = conn.execute(tenants.select().order_by(tenants.c.id)).all()
    return [Tenant(id=r.id, name=r.name, created=r.created, disabled=bool(r.disabled)) for r in rows]


def tenant_exists(engine: Any, tenant_id: str) -> bool:
    with reading(engine) as conn:
        return conn.execute(tenants.select().where(tenants.c.id == tenant_id)).first() is not None


def create_key(engine: Any, pepper: bytes, *, tenant_id: str | None, admin: bool = False, label: str = "") -> tuple[str, str]:
    """Make a key; returns ``(key_id, key)``. The key itself is not stored: show it once."""
    if admin == (tenant_id is not None):
        raise ValueError("a key is either an admin key (no tenant) or belongs to exactly one tenant; pass --tenant NAME or --admin")
    if tenant_id is not None and not tenant_exists(engine, tenant_id):
        raise ValueError(f"unknown tenant {tenant_id!r}; create it first with 'ragtrim tenants create {tenant_id}'")
    key = new_key_text()
    kid = key_id(key)
    with writing(engine) as conn:
        conn.execute(api_keys.insert().values(
            id=kid, tenant_id=tenant_id, admin=admin, hash=hash_key(key, pepper), label=label[:200], created=time.time(), revoked=None,
        ))
    return kid, key  # type: ignore[return-value]


def revoke_key(engine: Any, kid: str, *, tenant_id: str | None = None) -> bool:
    """Revoke key ``kid`` (only within ``tenant_id`` when given). True if it was active."""
    with writing(engine) as conn:
        q = api_keys.update().where(api_keys.c.id == kid, api_keys.c.revoked.is_(None))
        if tenant_id is not None:
            q = q.where(api_keys.c.tenant_id == tenant_id)
        return conn.execute(q.values(revoked=time.time())).rowcount == 1


def list_keys(engine: Any, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Key ids, tenants, labels and dates (never hashes)."""
    with reading(engine) as conn:
        q = api_keys.select().order_by(api_keys.c.created)
        if tenant_id is not None:
            q = q.where(api_keys.c.tenant_id == tenant_id)
        rows = conn.execute(q).all()
    return [
        {"id": r.id, "tenant": r.tenant_id, "admin": bool(r.admin), "label": r.label, "created": r.created, "revoked": r.revoked}
        for r in rows
    ]


def authenticate(engine: Any, pepper: bytes, key: str) -> Principal | None:
    """The principal of a presented key, or None (unknown, malformed, revoked or disabled tenant)."""
    kid = key_id(key)
    if kid is None:
        return None
    with reading(engine) as conn:
        row = conn.execute(
            api_keys.select().where(api_keys.c.id == kid).with_only_columns(
                api_keys.c.id, api_keys.c.tenant_id, api_keys.c.admin, api_keys.c.hash, api_keys.c.revoked
            )
        ).first()
        disabled = False
        if row is not None and row.tenant_id is not None:
            t = conn.execute(tenants.select().where(tenants.c.id == row.tenant_id)).first()
            disabled = t is None or bool(t.disabled)
    expected = row.hash if row is not None else hash_key("rtk_000000000000_" + "x" * 43, pepper)
    ok = hmac.compare_digest(expected, hash_key(key, pepper))
    if row is None or not ok or row.revoked is not None or disabled:
        return None
    return Principal(key_id=row.id, tenant_id=row.tenant_id, admin=bool(row.admin))
