"""Writing a reshaped copy of an eval set (``split_pools.py``, ``merge_chunks.py``): checked against the schema, then saved.

Run from the scripts as files; ``datasets/`` must be on ``sys.path`` (they put it there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import validate_rows, write_jsonl


def save_variant(rows: Sequence[dict[str, Any]], out: Path) -> str:
    """Validate ``rows`` against the common schema, write them to ``out`` as JSONL, and describe the file."""
    validate_rows(out.name, rows)
    write_jsonl(out, rows)
    n = sum(len(r["chunks"]) for r in rows) / max(len(rows), 1)
    return f"wrote {out}: {len(rows)} questions, {n:.1f} chunks on average"
