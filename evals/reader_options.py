"""Build a reader and its cache from the options a user gives (``--reader``, ``--model``...).

The command line and scripts both go through :func:`build_reader`, so the checks on which
option applies to which reader live in one place.

>>> build_reader("none", cache_path=None)
(None, None)
>>> build_reader("none", cache_path=None, model="m")
Traceback (most recent call last):
...
ValueError: --model only apply with --reader openai or local; got --reader none
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CACHE_FILE = "reader-cache.sqlite"
"""The reader cache's file name inside an eval's output folder."""


def build_reader(
    name: str,
    *,
    cache_path: Path | None,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
) -> tuple[Any, Any]:
    """The reader called ``name`` and its :class:`~evals.readers.ReaderCache` at ``cache_path``.

    ``name`` is one of :data:`evals.readers.READER_NAMES`; ``"none"`` gives ``(None, None)``
    and creates no cache. ``base_url`` and ``api_key_env`` apply to ``openai``; ``model`` is
    the openai model name or the local reader's GGUF path.
    """
    from evals.readers import READER_NAMES, ReaderCache, make_reader

    if name not in READER_NAMES:
        raise ValueError(f"unknown reader {name!r}; choose one of: {', '.join(READER_NAMES)}")
    if name == "none":
        given = [flag for flag, v in (("--base-url", base_url), ("--model", model), ("--api-key-env", api_key_env)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --reader openai or local; got --reader none")
        return None, None
    options = _reader_options(name, base_url=base_url, model=model, api_key_env=api_key_env)
    if cache_path is None:
        raise ValueError(f"--reader {name} needs a cache file; pass --cache PATH")
    cache = ReaderCache(cache_path)
    return make_reader(name, cache=cache, **options), cache


def _reader_options(name: str, *, base_url: str | None, model: str | None, api_key_env: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if name == "openai":
        for key, value in (("base_url", base_url), ("model", model), ("api_key_env", api_key_env)):
            if value is not None:
                options[key] = value
    elif name == "local":
        if base_url is not None or api_key_env is not None:
            raise ValueError("--base-url and --api-key-env apply to --reader openai, not local")
        if model is not None:
            options["model_path"] = model
    return options


__all__ = ["CACHE_FILE", "build_reader"]
