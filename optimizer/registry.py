"""The stage registry: explicit, lazy, no import-time side effects.

Built-in stages are listed by import path and imported on first use. Your own stage is
one class and one line: ``register_stage(MyStage)`` takes the name from ``MyStage.name``
(it also works as a class decorator). Third-party packages can instead add stages through
the ``ragtrim.stages`` entry-point group (``name = "pkg.module:Class"``). Registering a
name twice raises, and so does a registry name that differs from the name of the stage it
builds (saving a pipeline writes ``stage.name``, loading looks that name up). An installed
package's entry point whose name is taken is skipped with a warning naming the package; the
other packages' stages are registered all the same.

Stage names follow one scheme, ``<family>-<method>``: ``select-*`` (keep or cut chunks by
position, score or budget), ``rerank-*``, ``dedupe-*``, ``compress-*`` (cut inside
chunks) and ``order-*``. The names of ragtrim 0.1 (``bm25``, ``sentences``, ...) still
work for this release and warn (:data:`DEPRECATED_ALIASES`).

>>> "rerank-bm25" in list_stages()
True
>>> make_stage("select-truncate").name
'select-truncate'
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import threading
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "ragtrim.stages"

OWN_STAGE_HINT = (
    "A stage of your own must be registered before a config names it: register_stage(MyStage) in Python, or, for "
    f"the command line (ragtrim optimize/eval --config), an entry point in the {ENTRY_POINT_GROUP!r} group of an "
    "installed package, e.g. in its pyproject.toml: [project.entry-points.\"ragtrim.stages\"] my-stage = \"my_pkg.stages:MyStage\""
)
"""How to make a stage of your own known, by name, to a config (see the README, "Write your own stage")."""

# name -> "module:attribute"; imported only when asked for.
_BUILTIN: dict[str, str] = {
    "select-truncate": "optimizer.stages.basic:Truncate",
    "select-top-k": "optimizer.stages.basic:TopK",
    "select-whole": "optimizer.stages.basic:WholeChunks",
    "select-threshold": "optimizer.stages.basic:ScoreThreshold",
    "rerank-bm25": "optimizer.stages.rerank:BM25Rerank",
    "rerank-dense": "optimizer.stages.rerank:DenseRerank",
    "rerank-static": "optimizer.stages.rerank:StaticRerank",
    "rerank-hybrid": "optimizer.stages.rerank:HybridRerank",
    "rerank-mmr": "optimizer.stages.rerank:MMRRerank",
    "rerank-lm": "optimizer.stages.lm_rerank:LMRerank",
    "dedupe-exact": "optimizer.stages.dedupe:ExactDedupe",
    "dedupe-near": "optimizer.stages.dedupe:NearDedupe",
    "dedupe-semantic": "optimizer.stages.dedupe:SemanticDedupe",
    "dedupe-overlaps": "optimizer.stages.dedupe:MergeOverlaps",
    "compress-sentences": "optimizer.stages.compress:SentenceExtract",
    "compress-lm-prune": "optimizer.stages.lm_prune:LMPrune",
    "order-chunks": "optimizer.stages.order:Order",
}

DEPRECATED_ALIASES: dict[str, str] = {
    "truncate": "select-truncate",
    "top-k": "select-top-k",
    "whole-chunks": "select-whole",
    "score-threshold": "select-threshold",
    "bm25": "rerank-bm25",
    "dense": "rerank-dense",
    "static": "rerank-static",
    "hybrid": "rerank-hybrid",
    "mmr": "rerank-mmr",
    "merge-overlaps": "dedupe-overlaps",
    "sentences": "compress-sentences",
    "lm-prune": "compress-lm-prune",
    "order": "order-chunks",
}
"""Stage names of ragtrim 0.1 and their new names; they work, with a FutureWarning, until 0.3."""

_registered: dict[str, Callable[..., Any]] = {}
_entry_points_loaded = False
_entry_points_lock = threading.RLock()


def register_stage(stage: Any, factory: Callable[..., Any] | None = None) -> Any:
    """Register a stage class under its ``name``; returns the class (usable as a decorator).

    ``register_stage("my-name", factory)`` (the 0.1 form) still works; when ``factory`` is a
    class, its ``name`` must equal ``"my-name"``. Names are unique; built-in names and their
    deprecated aliases are taken.

    >>> from optimizer.stage import Stage
    >>> class Noop(Stage):
    ...     name = "doc-noop"
    ...     def __call__(self, query, chunks, context):
    ...         return list(chunks)
    >>> register_stage(Noop) is Noop
    True
    >>> make_stage("doc-noop").name
    'doc-noop'
    >>> unregister_stage("doc-noop")
    """
    name, factory = _name_and_factory(stage, factory)
    _load_entry_points()
    if name in _BUILTIN or name in _registered or name in DEPRECATED_ALIASES:
        raise ValueError(f"a stage named {name!r} is already registered; pick another name")
    _registered[name] = factory
    return stage if factory is stage else factory


def _name_and_factory(stage: Any, factory: Callable[..., Any] | None) -> tuple[str, Callable[..., Any]]:
    if factory is None:
        if not isinstance(stage, type):
            raise TypeError(f"register_stage takes a stage class (or a name and a factory), got {stage!r}")
        name = getattr(stage, "name", None)
        if not isinstance(name, str) or not name or name == "stage":
            raise ValueError(f"{stage.__name__} needs its own class attribute name = '...' to be registered, got {name!r}")
        return name, stage
    if not isinstance(stage, str) or not stage:
        raise ValueError(f"stage name must be a non-empty string, got {stage!r}")
    if not callable(factory):
        raise TypeError(f"stage factory for {stage!r} must be callable, got {factory!r}")
    _check_class_name(stage, factory)
    return stage, factory


def _check_class_name(name: str, factory: Any, *, where: str | None = None) -> None:
    """A class registered as ``name`` must be called ``name`` too (saved configs use ``stage.name``).

    ``where`` names an installed package's entry point, whose name is what must change.
    """
    own = getattr(factory, "name", None) if isinstance(factory, type) else None
    if own is None or own == name:
        return
    if where is not None:
        raise ValueError(
            f"{where} names class {factory.__name__}, which is named {own!r}; saving a pipeline writes "
            f"{own!r}, so loading it would fail. Rename the entry point to {own!r} in that package's entry points"
        )
    raise ValueError(
        f"stage class {factory.__name__} is named {own!r} but registered as {name!r}; "
        f"saving a pipeline writes {own!r}, so loading it would fail. Use register_stage({factory.__name__})"
    )


def unregister_stage(name: str) -> None:
    """Remove a stage registered with :func:`register_stage` (built-ins cannot be removed)."""
    if name not in _registered:
        raise KeyError(f"no user-registered stage named {name!r}")
    del _registered[name]


def _load_entry_points() -> None:
    """Register the stages of installed packages' ``ragtrim.stages`` entry points, once per process.

    An entry point whose name is taken (a built-in stage, an old name of one, or the same name in
    another package, met first in order of package name) is skipped with a warning naming its
    package and the clash; every other entry point is registered. Nothing is imported here.
    """
    global _entry_points_loaded
    with _entry_points_lock:  # two threads' first calls must not both register (the second would see a clash)
        if _entry_points_loaded:
            return
        found: dict[str, _EntryPointFactory] = {}
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_entry_point_key):
            clash = _clash(ep.name, found)
            if clash:
                warnings.warn(
                    f"{_origin(ep)} is skipped: {clash}; rename it in that package's entry points (or uninstall one of them)",
                    UserWarning,
                    stacklevel=3,
                )
                continue
            found[ep.name] = _EntryPointFactory(ep)
        _registered.update(found)
        _entry_points_loaded = True


def _entry_point_key(ep: Any) -> tuple[str, str, str]:
    """Entry points in a fixed order (package, name, target), whatever order the file system lists packages in."""
    return (_dist_name(ep).lower().replace("_", "-"), ep.name, ep.value)


def _clash(name: str, found: dict[str, _EntryPointFactory]) -> str:
    """Why an entry point cannot register stage ``name`` ("" when it can)."""
    if name in _BUILTIN:
        return f"{name!r} is the name of a built-in stage"
    if name in DEPRECATED_ALIASES:
        return f"{name!r} is the old name of the built-in stage {DEPRECATED_ALIASES[name]!r}"
    if name in found:
        return f"{name!r} is already registered by {_origin(found[name].ep)}"
    if name in _registered:
        return f"{name!r} is already registered with register_stage"
    return ""


def _dist_name(ep: Any) -> str:
    """The name of the installed package (distribution) an entry point comes from ("" when unknown)."""
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "name", None) or "")


def _origin(ep: Any) -> str:
    """An entry point and its package, for messages: ``entry point 'x = pkg.mod:Cls' of package pkg 0.1``."""
    dist = getattr(ep, "dist", None)
    package = f"{dist.name} {dist.version}" if dist is not None else ep.module.split(".")[0]
    return f"entry point '{ep.name} = {ep.value}' of package {package}"


class _EntryPointFactory:
    """A stage of an installed package, imported the first time it is asked for."""

    def __init__(self, ep: Any) -> None:
        self.ep = ep

    def load(self) -> Any:
        """The class or factory the entry point names; an import failure or a class of another name raises, naming
        the stage, the entry point and its package."""
        try:
            factory = self.ep.load()
        except Exception as exc:
            raise ImportError(
                f"stage {self.ep.name!r} could not be loaded from {_origin(self.ep)}: {type(exc).__name__}: {exc}; "
                "reinstall that package (or uninstall it if you do not use its stages)"
            ) from exc
        _check_class_name(self.ep.name, factory, where=_origin(self.ep))
        return factory

    def __call__(self, **params: Any) -> Any:
        return self.load()(**params)


def list_stages() -> list[str]:
    """Names of all known stages, built-in and registered (deprecated aliases not included).

    >>> names = list_stages()
    >>> "compress-sentences" in names, "dedupe-near" in names, names == sorted(names)
    (True, True, True)
    """
    _load_entry_points()
    return sorted({*_BUILTIN, *_registered})


def canonical_name(name: str) -> str:
    """``name``, or the current name of a deprecated alias (with a FutureWarning).

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     canonical_name("bm25")
    'rerank-bm25'
    """
    new = DEPRECATED_ALIASES.get(name)
    if new is None or name in _registered:
        return name
    warnings.warn(
        f"stage name {name!r} is deprecated and will be removed in ragtrim 0.3; use {new!r}",
        FutureWarning,
        stacklevel=3,
    )
    return new


def stage_factory(name: str) -> Callable[..., Any]:
    """The class or factory registered under ``name`` (deprecated aliases warn)."""
    if not isinstance(name, str):
        raise TypeError(f"stage name must be a string such as 'rerank-bm25' ('ragtrim stages' lists them), got {name!r}")
    _load_entry_points()
    name = canonical_name(name)
    if name in _registered:
        factory = _registered[name]
        return factory.load() if isinstance(factory, _EntryPointFactory) else factory
    if name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        return getattr(importlib.import_module(module), attr)
    close = difflib.get_close_matches(name, list_stages(), n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"unknown stage {name!r}{hint}. Known stages: {', '.join(list_stages())}. {OWN_STAGE_HINT}")



def make_stage(name: str, **params: Any) -> Any:
    """Build the stage registered under ``name`` with ``params``.

    Unknown parameters raise a TypeError that names the stage and its valid parameters. A
    factory that builds a stage named otherwise than ``name`` raises ValueError (a saved
    pipeline would name that other stage, and not load).

    >>> make_stage("select-top-k", k=2).k
    2
    >>> make_stage("select-top-k", kk=2)
    Traceback (most recent call last):
    ...
    TypeError: stage 'select-top-k': TopK.__init__() got an unexpected keyword argument 'kk'. Valid parameters: k
    """
    factory = stage_factory(name)
    try:
        stage = factory(**params)
    except TypeError as exc:
        raise TypeError(f"stage {name!r}: {exc}. Valid parameters: {_valid_parameters(factory)}") from exc
    _check_built_name(name, factory, stage)
    return stage


def _valid_parameters(factory: Callable[..., Any]) -> str:
    """``factory``'s keyword parameters for an error message; a ``**kw`` it passes on is described, not listed."""
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return "unknown (the factory's signature cannot be read)"
    named = [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        passed_on = "those of the stage class it builds (its factory passes keyword arguments on)"
        return f"{', '.join(named)}, and {passed_on}" if named else passed_on
    return ", ".join(named) or "none"


def _check_built_name(name: str, factory: Callable[..., Any], stage: Any) -> None:
    """The stage built for ``name`` must be called ``name`` (for an old name, its new name): saving writes ``stage.name``."""
    expected = name if name in _registered else DEPRECATED_ALIASES.get(name, name)
    built = getattr(stage, "name", None)
    if built != expected:
        label = getattr(factory, "__qualname__", None) or type(factory).__name__
        raise ValueError(
            f"stage {expected!r}: its factory {label}() built {type(stage).__name__}(), a stage named {built!r}; saving a "
            f"pipeline writes the stage's name, so the config would not load. Set name = {expected!r} on "
            f"{type(stage).__name__}, or register the class itself: register_stage({type(stage).__name__})"
        )
