"""Where the service keeps its files when nothing else is configured.

``RAGTRIM_CACHE`` if set, else ``$XDG_CACHE_HOME/ragtrim``, else ``~/.cache/ragtrim``.

>>> str(cache_dir({"RAGTRIM_CACHE": "/tmp/rt"}))
'/tmp/rt'
>>> str(cache_dir({"XDG_CACHE_HOME": "/x"}))
'/x/ragtrim'
>>> default_db_url({"RAGTRIM_CACHE": "/tmp/rt"})
'sqlite:////tmp/rt/serve.sqlite'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The ragtrim cache directory (not created here)."""
    env = os.environ if env is None else env
    if env.get("RAGTRIM_CACHE"):
        return Path(env["RAGTRIM_CACHE"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ragtrim"


def default_db_url(env: Mapping[str, str] | None = None) -> str:
    """The embedded default database: a SQLite file in the cache directory."""
    return f"sqlite:///{cache_dir(env) / 'serve.sqlite'}"
