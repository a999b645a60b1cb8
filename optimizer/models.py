"""One explicit place for loaded models: :class:`ModelStore`, with a replaceable process default.

Loading a model (MiniLM, the static model, the int8 MiniLM, a llama.cpp model) is slow, so
each is loaded once and kept in a store. Stages and readers ask
``default_store()`` unless they are given a store; tests, notebooks and the service swap in
their own with :func:`use_store` (scoped to the current thread or task, nothing to patch) and
free it with :meth:`ModelStore.close`.

A store never *builds* a model. Building the static and int8 models is an explicit step:
``ragtrim models build``, :func:`optimizer.embeddings.build_models`, or ``Pipeline.warm_up()``.

>>> store = ModelStore()
>>> store.get(("demo", 1), lambda: object()) is store.get(("demo", 1), lambda: object())
True
>>> with use_store(ModelStore()) as scoped:
...     default_store() is scoped
True
>>> default_store() is scoped
False
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class StoreClosedError(RuntimeError):
    """A :class:`ModelStore` was asked for a model after :meth:`ModelStore.close`."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        super().__init__(
            f"this ModelStore is closed (close() ran, e.g. at the end of its `with` block), so it loads nothing more "
            f"(asked for {key!r}); finish the runs that use a store before closing it, and give later runs an open "
            "store: `with ModelStore() as store, use_store(store): ...`"
        )


def _close_item(item: Any) -> None:
    """Call ``item.close()`` if it has one (llama.cpp models and the int8 MiniLM do)."""
    close = getattr(item, "close", None)
    if callable(close):
        close()


class ModelStore:
    """Loaded models and per-model memos, keyed by anything hashable (e.g. ``("embedder", "static")``).

    After :meth:`close` the store is done: :meth:`get` and :meth:`put` raise :class:`StoreClosedError`,
    and a model whose loading was under way when it closed is closed as soon as it is loaded.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._items: dict[Hashable, Any] = {}
        self._building: dict[Hashable, threading.Lock] = {}
        self._put: set[Hashable] = set()  # keys given by hand (put), not loaded here
        self._borrowed: set[Hashable] = set()  # keys whose items another store owns (see fresh)
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The item under ``key``, loading it with ``load()`` the first time (once, even across threads).

        Raises :class:`StoreClosedError` once the store is closed, also when it closed while ``load()`` ran
        (the item just loaded is closed then, not kept).
        """
        with self._lock:
            self._check_open(key)
            if key in self._items:
                return self._items[key]
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # one loader per key; other keys load in parallel
            with self._lock:
                self._check_open(key)
                if key in self._items:
                    return self._items[key]
            item = load()
            with self._lock:
                closed = self._closed
                if not closed:
                    self._items[key] = item
                    self._building.pop(key, None)
            if closed:
                _close_item(item)
                raise StoreClosedError(key)
            return item

    def _check_open(self, key: Hashable) -> None:
        """Raise :class:`StoreClosedError` if the store is closed (call with the lock held)."""
        if self._closed:
            raise StoreClosedError(key)

    def put(self, key: Hashable, item: Any) -> None:
        """Store ``item`` under ``key`` (e.g. a small test double instead of a real model)."""
        with self._lock:
            self._check_open(key)
            self._items[key] = item
            self._put.add(key)
            self._borrowed.discard(key)

    def fresh(self) -> ModelStore:
        """A new store with the items :meth:`put` into this one by hand, and nothing it loaded or memoized.

        For measuring one pipeline as a new process would run it, while keeping the models
        you chose (test doubles, your own embedder). Closing the new store leaves those
        items open: this store owns them.

        >>> store = ModelStore(); store.put("mine", object()); store.get("loaded", dict)
        {}
        >>> sorted(store.fresh().keys())
        ['mine']
        """
        store = ModelStore()
        with self._lock:
            store._items = {k: self._items[k] for k in self._put if k in self._items}
        store._put = set(store._items)
        store._borrowed = set(store._items)
        return store

    def memo(self, key: Hashable) -> dict[Any, Any]:
        """A dict kept with the store (per-model caches such as token surprisals)."""
        return self.get(("memo", key), dict)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def close(self) -> None:
        """Forget every item, calling ``close()`` on those that have one (llama.cpp models do), except
        the ones a :meth:`fresh` store borrowed from the store that owns them. The store loads
        nothing afterwards (:class:`StoreClosedError`); closing it again does nothing."""
        with self._lock:
            items = [v for k, v in self._items.items() if k not in self._borrowed]
            self._items, self._put, self._borrowed = {}, set(), set()
            self._building.clear()
            self._closed = True
        for item in items:
            _close_item(item)

    def __enter__(self) -> ModelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PROCESS_STORE = ModelStore()
_CURRENT: contextvars.ContextVar[ModelStore | None] = contextvars.ContextVar("ragtrim_model_store", default=None)


def default_store() -> ModelStore:
    """The store in use here: the one set by :func:`use_store`, else the process default."""
    store = _CURRENT.get()
    return store if store is not None else _PROCESS_STORE


@contextlib.contextmanager
def use_store(store: ModelStore) -> Iterator[ModelStore]:
    """Use ``store`` as the default in this thread or task for the ``with`` block."""
    if not isinstance(store, ModelStore):
        raise TypeError(f"use_store needs a ModelStore, got {type(store).__name__}")
    token = _CURRENT.set(store)
    try:
        yield store
    finally:
        _CURRENT.reset(token)


class ModelNotBuiltError(RuntimeError):
    """A model that is built once (``ragtrim models build``) is not in the cache yet."""

    def __init__(self, name: str, path: object):
        self.name = name
        self.path = path
        super().__init__(
            f"the {name} model is not built (looked in {str(path)!r}); build it once with "
            f"`ragtrim models build --only {name}` (or call warm_up() on the pipeline, stage or LlamaIndex/LangChain "
            "wrapper, which builds it); "
            "set RAGTRIM_CACHE to keep models elsewhere"
        )
