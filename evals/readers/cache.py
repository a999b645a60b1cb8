"""A SQLite cache of reader answers, so a rerun (or a resumed, killed sweep) redoes no call.

The key is the sha256 of (reader name, model, generation params, full prompt text). Each
answer is committed as soon as it arrives (WAL mode), so a sweep killed at any point loses
nothing it finished. One connection per thread; several processes may share the file.
Only successful answers are stored: failures are retried on the next run.

>>> import tempfile, pathlib
>>> from evals.readers.base import ReaderOutput
>>> cache = ReaderCache(pathlib.Path(tempfile.mkdtemp()) / "reader-cache.sqlite")
>>> cache.get("local", "gemma", "Q?", {"max_tokens": 32}) is None
True
>>> cache.put("local", "gemma", "Q?", {"max_tokens": 32}, ReaderOutput("Paris", True, None, 812.0, False))
>>> hit = cache.get("local", "gemma", "Q?", {"max_tokens": 32})
>>> hit.text, hit.cached, hit.latency_ms, (cache.hits, cache.misses)
('Paris', True, 812.0, (1, 1))
>>> cache.get("local", "gemma", "Q?", {"max_tokens": 64}) is None  # other params, other key
True
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evals.readers.base import ReaderOutput, params_as_json
from optimizer.cache import cache_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    reader TEXT NOT NULL,
    model TEXT NOT NULL,
    params TEXT NOT NULL,
    text TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """``reader-cache.sqlite`` in ragtrim's cache folder (:func:`optimizer.cache.cache_dir`)."""
    return cache_dir() / "reader-cache.sqlite"


def cache_key(reader: str, model: str, prompt: str, params: Mapping[str, Any]) -> str:
    """sha256 hex of the reader name, model, generation params and full prompt text.

    >>> cache_key("a", "m", "p", {"t": 0}) == cache_key("a", "m", "p", {"t": 0})
    True
    >>> cache_key("a", "m", "p", {"t": 0}) == cache_key("a", "m", "p ", {"t": 0})
    False
    """
    payload = json.dumps(
        [reader, model, params_as_json(params), prompt], sort_keys=True, ensure_ascii=False, default=str
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def reader_identity(reader: Any) -> str:
    """What, besides the prompt's question and context, makes :func:`cache_key` differ between two readers: their
    name, model, generation params and template (sha256 hex). Equal identities answer every question alike; as in
    the cache, where the model is served from (``base_url``) is left out.

    >>> from evals.readers.fake import FakeReader
    >>> reader_identity(FakeReader()) == reader_identity(FakeReader())
    True
    >>> reader_identity(FakeReader()) == reader_identity(FakeReader(template="Q: {question}\\n{context}\\nA:"))
    False
    """
    params = reader.generation_params() if hasattr(reader, "generation_params") else {}
    return cache_key(reader.name, getattr(reader, "model_id", getattr(reader, "model", None)), reader.template, params)


class ReaderCache:
    """SQLite cache of successful reader outputs at ``path`` (created with its folder).

    ``hits`` and ``misses`` count this process's look-ups.
    """

    def __init__(self, path: str | Path):
        if not isinstance(path, (str, Path)) or str(path) in ("", ":memory:"):
            raise ValueError(
                f"ReaderCache needs a file path (e.g. DIR/reader-cache.sqlite), got {path!r}; "
                "an in-memory database would not survive a rerun"
            )
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._open()

    def _open(self) -> None:
        """Create the table, or raise a ValueError naming the file when SQLite cannot use it (a folder, a
        half-copied or foreign file), instead of a raw sqlite3 traceback."""
        if self.path.is_dir():
            raise ValueError(f"the reader cache {str(self.path)!r} is a folder; pass --cache a file path such as "
                             f"{str(self.path / 'reader-cache.sqlite')!r}")
        try:
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise ValueError(
                f"the reader cache {str(self.path)!r} is not a usable SQLite database ({exc}); delete it (it only holds "
                "cached reader answers, which are asked again) or pass --cache with another file"
            ) from None

    def __repr__(self) -> str:
        return f"ReaderCache({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit: every put is durable on return; wait for other writers instead of failing
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def get(self, reader: str, model: str, prompt: str, params: Mapping[str, Any]) -> ReaderOutput | None:
        """The stored output (``cached=True``, original latency) or None."""
        row = (
            self._conn()
            .execute(
                "SELECT text, latency_ms, prompt_tokens, completion_tokens FROM answers WHERE key = ?",
                (cache_key(reader, model, prompt, params),),
            )
            .fetchone()
        )
        with self._lock:
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        if row is None:
            return None
        text, latency_ms, prompt_tokens, completion_tokens = row
        return ReaderOutput(
            text=text,
            ok=True,
            error=None,
            latency_ms=latency_ms,
            cached=True,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def put(self, reader: str, model: str, prompt: str, params: Mapping[str, Any], output: ReaderOutput) -> None:
        """Store a successful output (failed ones are ignored, so they are retried)."""
        if not output.ok or output.text is None:
            return
        self._conn().execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cache_key(reader, model, prompt, params),
                reader,
                model,
                json.dumps(params_as_json(params), sort_keys=True, default=str),
                output.text,
                float(output.latency_ms),
                output.prompt_tokens,
                output.completion_tokens,
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        """Close every connection this cache opened (it reopens on next use)."""
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
