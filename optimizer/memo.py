"""A bounded memo of text embeddings that concurrent calls may share.

An embedder that is slow per text (MiniLM) remembers the vectors of recent texts, so a sweep
over several budgets, or a service that sees the same passages again, embeds each text once
per process. Pipelines run in several threads at once (``ragtrim serve``), so the memo is
never cleared under a call in flight: when it is full, a new one replaces it, and every call
reads only its own snapshot and what it embedded itself.

>>> import numpy as np
>>> class Toy:
...     MEMO_SIZE = 2
...     calls = 0
...     def embed(self, texts):
...         Toy.calls += len(texts)
...         return np.array([[float(len(t))] for t in texts], dtype=np.float32)
>>> toy = Toy()
>>> remembered(toy, ["ab", "abc", "ab"], toy.embed).ravel().tolist(), Toy.calls
([2.0, 3.0, 2.0], 2)
>>> remembered(toy, ["abc"], toy.embed).ravel().tolist(), Toy.calls
([3.0], 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def remembered(owner: Any, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``embed``'s rows for ``texts`` (float32), each distinct text embedded once per ``owner``.

    The memo is ``owner._memo`` (created on first use), holding at most ``owner.MEMO_SIZE``
    texts: when a call would go past that, it starts a new memo instead of clearing the
    one other calls may be reading.
    """
    memo: dict[str, np.ndarray] = owner.__dict__.setdefault("_memo", {})
    rows = {t: memo.get(t) for t in dict.fromkeys(texts)}
    missing = [t for t, v in rows.items() if v is None]
    if missing:
        new = dict(zip(missing, embed(missing)))
        rows.update(new)
        if len(memo) + len(new) > owner.MEMO_SIZE:
            memo = owner._memo = {}
        memo.update(new)
    return np.stack([rows[t] for t in texts]).astype(np.float32, copy=False)
