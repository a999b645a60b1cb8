"""Where the service keeps its files when nothing else is configured: the ragtrim cache folder
(``RAGTRIM_CACHE`` if set, else ``$XDG_CACHE_HOME/ragtrim``, else ``~/.cache/ragtrim``;
:func:`optimizer.cache.cache_dir`).

>>> str(cache_dir({"RAGTRIM_CACHE": "/tmp/rt"}))
'/tmp/rt'
>>> str(cache_dir({"XDG_CACHE_HOME": "/x"}))
'/x/ragtrim'
>>> default_db_url({"RAGTRIM_CACHE": "/tmp/rt"})
'sqlite:////tmp/rt/serve.sqlite'
"""

from __future__ import annotations

from collections.abc import Mapping

from optimizer.cache import cache_dir

__all__ = ["cache_dir", "default_db_url"]


def default_db_url(env: Mapping[str, str] | None = None) -> str:
    """The embedded default database: a SQLite file in the cache folder."""
    return f"sqlite:///{cache_dir(env) / 'serve.sqlite'}"
