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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtrim.serve.db import insert_ignore, reading, writing
from ragtrim.serve.schema import api_keys, tenants

_KEY_RE = re.compile(r"^rtk_([0-9a-f]{12})_([A-Za-z0-9\-_]{40,})$")
_PEPPER_MIN = 16
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
    disabled_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        """As ``GET /v1/admin/tenants`` and ``ragtrim tenants list -f json`` show it."""
        return {"id": self.id, "name": self.name, "created": self.created, "disabled": self.disabled,
                "disabled_reason": self.disabled_reason}


def _tenant(row: Any) -> Tenant:
    return Tenant(id=row.id, name=row.name, created=row.created, disabled=bool(row.disabled),
                  disabled_reason=row.disabled_reason or "")


# The most characters ``tenants disable --reason`` keeps (the column's size).
MAX_REASON = 500


def new_key_text() -> str:
    """A fresh random key (``secrets``): 48 bits of id, 256 bits of secret."""
    return f"rtk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def key_id(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    m = _KEY_RE.match(key or "")
    return m.group(1) if m else None


def id_of(text: str) -> str:
    """The key id ``text`` names: itself, or the id part of a whole key (``rtk_<id>_<secret>``) pasted in its place, so
    revoking by the whole key works and an error about it echoes the id only, never the secret.

    >>> id_of("0123456789ab"), id_of("rtk_0123456789ab_" + "s" * 43), id_of("rtk_short_secret")
    ('0123456789ab', '0123456789ab', 'short')
    """
    return key_id(text) or (text.split("_", 2)[1] if text.startswith("rtk_") else text)


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
        if len(value) < _PEPPER_MIN:
            raise ValueError(f"{env_name} must be at least {_PEPPER_MIN} characters of secret, got {len(value)}")
        return value.encode("utf-8")
    path = fallback_dir / "serve-pepper"
    if not path.exists():
        _make_pepper_file(path)
    return _read_pepper_file(path, env_name)


def _make_pepper_file(path: Path) -> None:
    """Write a fresh secret to ``path`` (0600) unless a process starting at the same time made it first.

    The secret is written and synced in a temporary file beside it, then linked to ``path`` (which fails if the file is
    there): the file appears whole, so no process reads it empty, and the loser of the race keeps the winner's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".serve-pepper.")  # 0600
    try:
        os.write(fd, secrets.token_hex(32).encode("ascii"))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it: use that one
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)


def _read_pepper_file(path: Path, env_name: str, *, wait: float = 1.0) -> bytes:
    """The secret in the pepper file ``path``; refused when shorter than 16 bytes (as ``env_name`` is), after waiting up
    to ``wait`` seconds for a process still writing it (an older ragtrim wrote the file in place)."""
    deadline = time.monotonic() + wait
    while True:
        value = path.read_bytes().strip()
        if len(value) >= _PEPPER_MIN or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if len(value) < _PEPPER_MIN:
        raise ValueError(f"the server pepper file {path} holds {len(value)} bytes, fewer than {_PEPPER_MIN}: set {env_name} to a "
                         f"secret of {_PEPPER_MIN}+ characters, or replace the file with one (keys made under it then stop working)")
    return value


def create_tenant(engine: Any, name: str, *, now: float | None = None) -> Tenant:
    """Add a tenant named ``name`` (letters, digits, ``.-_``); its id is the name.

    The insert does nothing on the name's key when the tenant is there, so of concurrent calls for one name one
    makes it and the rest get "already exists" (a check before the insert let two pass it: a database error)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"tenant name must be 1-64 letters, digits, '.', '-' or '_' starting with a letter or digit, got {name!r}")
    t = Tenant(id=name, name=name, created=time.time() if now is None else now, disabled=False)
    with writing(engine) as conn:
        made = conn.execute(insert_ignore(engine, tenants).values(id=t.id, name=t.name, created=t.created, disabled=False)
                            .returning(tenants.c.id)).first()  # RETURNING: psycopg's rowcount here is -1, not 0
        if made is None:
            raise ValueError(f"tenant {name!r} already exists")
    return t


def list_tenants(engine: Any) -> list[Tenant]:
    with reading(engine) as conn:
        rows = conn.execute(tenants.select().order_by(tenants.c.id)).all()
    return [_tenant(r) for r in rows]


class UnknownTenant(ValueError):
    """A tenant name no tenant has (``name`` holds it): a 404 on the admin routes, exit 2 on the command line."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown tenant {name!r}")
        self.name = name


def set_tenant_disabled(engine: Any, name: str, disabled: bool, reason: str = "") -> tuple[Tenant, bool]:
    """Disable (or enable) tenant ``name``: while disabled its keys are refused (:func:`check_key`), and none is revoked,
    so enabling it restores them. Returns the tenant as it now is and whether this call changed it (doing what is
    already done is no error); :class:`UnknownTenant` for a name no tenant has.

    ``reason`` (disabling only; at most :data:`MAX_REASON` characters) is kept for the operators who list tenants, and
    replaces an earlier one when given again; enabling clears it. It is never told to the tenant's callers."""
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable():
        raise ValueError(f"a reason must be one line of printable text, at most {MAX_REASON} characters, got {reason!r:.80}")
    if reason and not disabled:
        raise ValueError("a reason is given only when disabling a tenant (enabling clears it)")
    with writing(engine) as conn:
        changed = conn.execute(tenants.update().where(tenants.c.id == name, tenants.c.disabled == (not disabled))
                               .values(disabled=disabled, disabled_reason=reason)).rowcount == 1
        if disabled and reason:
            conn.execute(tenants.update().where(tenants.c.id == name).values(disabled_reason=reason))
        r = conn.execute(tenants.select().where(tenants.c.id == name)).first()
        if r is None:
            raise UnknownTenant(name)
    return _tenant(r), changed


def tenant_disabled(engine: Any, tenant_id: str) -> bool:
    """True when tenant ``tenant_id`` is there and disabled (its keys are refused until it is enabled)."""
    with reading(engine) as conn:
        row = conn.execute(tenants.select().where(tenants.c.id == tenant_id)).first()
    return row is not None and bool(row.disabled)


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
    """Revoke key ``kid`` (only within ``tenant_id`` when given). True if it was active.

    Callers pass what the operator typed through :func:`id_of` first: a whole key revokes its id."""
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


def key_active(engine: Any, kid: str) -> bool:
    """True while key ``kid`` is there, not revoked, and its tenant (if any) not disabled: what a usage-page link made
    with the key needs, so revoking the key ends its links too."""
    with reading(engine) as conn:
        row = conn.execute(api_keys.select().where(api_keys.c.id == kid)).first()
        if row is None or row.revoked is not None:
            return False
        t = None if row.tenant_id is None else conn.execute(tenants.select().where(tenants.c.id == row.tenant_id)).first()
    return row.tenant_id is None or (t is not None and not t.disabled)


INVALID_KEY = "invalid"
TENANT_DISABLED = "tenant_disabled"
"""Why :func:`check_key` refused a key: ``INVALID_KEY`` (unknown, malformed, a wrong secret, revoked, its tenant gone)
or ``TENANT_DISABLED`` (a key with its right secret, not revoked, whose tenant an operator disabled)."""


def check_key(engine: Any, pepper: bytes, key: str) -> Principal | tuple[str, str | None]:
    """The principal of a presented key, or why it is refused: ``(INVALID_KEY, None)`` or ``(TENANT_DISABLED, tenant)``.

    ``TENANT_DISABLED`` is given only for a key whose secret matched and that is not revoked: only its holder learns that
    its own tenant is disabled; a guessed or leaked key id with a wrong secret gets ``INVALID_KEY`` like any other."""
    kid = key_id(key)
    if kid is None:
        return INVALID_KEY, None
    with reading(engine) as conn:
        row = conn.execute(
            api_keys.select().where(api_keys.c.id == kid).with_only_columns(
                api_keys.c.id, api_keys.c.tenant_id, api_keys.c.admin, api_keys.c.hash, api_keys.c.revoked
            )
        ).first()
        tenant = None
        if row is not None and row.tenant_id is not None:
            tenant = conn.execute(tenants.select().where(tenants.c.id == row.tenant_id)).first()
    expected = row.hash if row is not None else hash_key("rtk_000000000000_" + "x" * 43, pepper)
    ok = hmac.compare_digest(expected, hash_key(key, pepper))
    if row is None or not ok or row.revoked is not None or (row.tenant_id is not None and tenant is None):
        return INVALID_KEY, None
    if tenant is not None and tenant.disabled:
        return TENANT_DISABLED, row.tenant_id
    return Principal(key_id=row.id, tenant_id=row.tenant_id, admin=bool(row.admin))


def authenticate(engine: Any, pepper: bytes, key: str) -> Principal | None:
    """The principal of a presented key, or None (unknown, malformed, revoked or disabled tenant: :func:`check_key`)."""
    found = check_key(engine, pepper, key)
    return found if isinstance(found, Principal) else None
