"""Lazy imports of optional dependencies, with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


TORCH_EXTRAS = frozenset({"embeddings"})
"""Extras that pull in torch: pip resolves an unpinned torch to a CUDA build of several GB."""

TORCH_FIRST = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
"""The CPU build of torch, to install before an extra in :data:`TORCH_EXTRAS`."""


def install_command(extra: str) -> str:
    """The command that installs ``ragtrim[extra]`` (one or more extras, comma-separated), CPU torch first where it needs torch.

    >>> install_command("serve")
    "pip install 'ragtrim[serve]'"
    >>> install_command("embeddings,onnx")
    "pip install torch --index-url https://download.pytorch.org/whl/cpu && pip install 'ragtrim[embeddings,onnx]'"
    """
    line = f"pip install 'ragtrim[{extra}]'"
    return f"{TORCH_FIRST} && {line}" if TORCH_EXTRAS & set(extra.split(",")) else line


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
            f"install it with: {install_command(extra)}"
        ) from exc
