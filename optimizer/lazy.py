"""Lazy imports of optional dependencies, with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


def lazy_import(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``pip install 'ragtrim[extra]'``.

    >>> lazy_import("json", extra="dev", purpose="tests").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{purpose} needs the optional dependency {module!r}, which is not installed; "
            f"install it with: pip install 'ragtrim[{extra}]'"
        ) from exc
