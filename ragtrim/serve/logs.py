"""Structured JSON logs on the ``ragtrim.serve`` logger (never the root logger), without secrets.

Nothing is configured on import: ``ragtrim serve`` calls :func:`setup_json_logging` once.
Only fields a caller passes explicitly are written; keys, Authorization headers, prompts and
documents are never passed.

>>> import io, logging
>>> stream = io.StringIO()
>>> logger = setup_json_logging(stream=stream, name="ragtrim.serve.doctest")
>>> log_event(logger, "request", status=200, tenant="acme")
>>> import json; json.loads(stream.getvalue())["event"]
'request'
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOGGER = "ragtrim.serve"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name}
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_json_logging(*, stream: TextIO | None = None, level: int = logging.INFO, name: str = LOGGER) -> logging.Logger:
    """Attach one JSON handler to the ``ragtrim.serve`` logger (idempotent)."""
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        if getattr(h, "_ragtrim_json", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._ragtrim_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON line: ``{"event": ..., **fields}``."""
    logger.log(level, event, extra={"fields": {"event": event, "t": round(time.time(), 3), **fields}})


def log_request(logger: logging.Logger, entry: Any) -> None:
    """One line per finished request, from its ledger entry (ids, tags, tokens, money, timing; no content, no keys)."""
    log_event(logger, "request", level=logging.WARNING if entry.status >= 500 else logging.INFO,
              request_id=entry.id, tenant=entry.tenant_id, user=entry.user, feature=entry.feature, endpoint=entry.endpoint,
              model=entry.model_used, action=entry.action, status=entry.status, tokens_full=entry.tokens_full,
              tokens_sent=entry.tokens_sent, prompt_tokens=entry.prompt_tokens, completion_tokens=entry.completion_tokens,
              cost_micro=entry.cost_micro, saved_micro=entry.saved_micro, latency_ms=round(entry.latency_ms, 2),
              upstream_ms=round(entry.upstream_ms, 2), degrade=entry.detail, error=entry.error[:300])
