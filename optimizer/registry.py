"""The stage registry: explicit, lazy, no import-time side effects.

Built-in stages are listed by import path and imported on first use. Third-party packages
add stages through the ``ragtrim.stages`` entry-point group (``name = "pkg.module:Class"``)
or by calling :func:`register_stage`. Registering a name twice raises.

>>> "bm25" in list_stages()
True
>>> make_stage("truncate").name
'truncate'
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "ragtrim.stages"

# name -> "module:attribute"; imported only when asked for.
_BUILTIN: dict[str, str] = {
    "truncate": "optimizer.stages.basic:Truncate",
    "top-k": "optimizer.stages.basic:TopK",
    "whole-chunks": "optimizer.stages.basic:WholeChunks",
    "score-threshold": "optimizer.stages.basic:ScoreThreshold",
    "bm25": "optimizer.stages.rerank:BM25Rerank",
    "dense": "optimizer.stages.rerank:DenseRerank",
    "static": "optimizer.stages.rerank:StaticRerank",
    "hybrid": "optimizer.stages.rerank:HybridRerank",
    "mmr": "optimizer.stages.rerank:MMRRerank",
    "dedupe-exact": "optimizer.stages.dedupe:ExactDedupe",
    "dedupe-near": "optimizer.stages.dedupe:NearDedupe",
    "dedupe-semantic": "optimizer.stages.dedupe:SemanticDedupe",
    "merge-overlaps": "optimizer.stages.dedupe:MergeOverlaps",
    "sentences": "optimizer.stages.compress:SentenceExtract",
    "lm-prune": "optimizer.stages.lm_prune:LMPrune",
    "order": "optimizer.stages.order:Order",
}

_registered: dict[str, Callable[..., Any]] = {}
_entry_points_loaded = False


def register_stage(name: str, factory: Callable[..., Any]) -> None:
    """Register a stage class (or factory) under ``name``. Names are unique.

    >>> from optimizer.stage import Stage
    >>> class Noop(Stage):
    ...     name = "doc-noop"
    ...     def __call__(self, query, chunks, context):
    ...         return list(chunks)
    >>> register_stage("doc-noop", Noop)
    >>> make_stage("doc-noop").name
    'doc-noop'
    >>> unregister_stage("doc-noop")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"stage name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"stage factory for {name!r} must be callable, got {factory!r}")
    _load_entry_points()
    if name in _BUILTIN or name in _registered:
        raise ValueError(f"a stage named {name!r} is already registered; pick another name")
    _registered[name] = factory


def unregister_stage(name: str) -> None:
    """Remove a stage registered with :func:`register_stage` (built-ins cannot be removed)."""
    if name not in _registered:
        raise KeyError(f"no user-registered stage named {name!r}")
    del _registered[name]


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTIN or ep.name in _registered:
            raise ValueError(
                f"entry point {ep.value!r} registers stage {ep.name!r}, which is already registered; "
                "rename it in that package's entry points"
            )
        _registered[ep.name] = _EntryPointFactory(ep)


class _EntryPointFactory:
    def __init__(self, ep: Any) -> None:
        self.ep = ep

    def __call__(self, **params: Any) -> Any:
        return self.ep.load()(**params)


def list_stages() -> list[str]:
    """Names of all known stages, built-in and registered."""
    _load_entry_points()
    return sorted({*_BUILTIN, *_registered})


def stage_factory(name: str) -> Callable[..., Any]:
    """The class or factory registered under ``name``."""
    _load_entry_points()
    if name in _registered:
        factory = _registered[name]
        return factory.ep.load() if isinstance(factory, _EntryPointFactory) else factory
    if name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        return getattr(importlib.import_module(module), attr)
    close = difflib.get_close_matches(name, list_stages(), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"unknown stage {name!r}{hint} Known stages: {', '.join(list_stages())}")


def make_stage(name: str, **params: Any) -> Any:
    """Build the stage registered under ``name`` with ``params``.

    Unknown parameters raise a TypeError that names the stage and its valid parameters.
    """
    factory = stage_factory(name)
    try:
        return factory(**params)
    except TypeError as exc:
        import inspect

        try:
            valid = [p for p in inspect.signature(factory).parameters if p != "self"]
        except (TypeError, ValueError):
            valid = []
        raise TypeError(f"stage {name!r}: {exc}. Valid parameters: {', '.join(valid) or 'none'}") from exc
