"""The Stage protocol: one small interface every rerank, dedupe, compress or order step follows.

A stage is a class whose constructor takes keyword-only, serializable settings and stores
them unchanged (``get_params()`` returns them), and whose ``__call__`` takes the query, the
chunks and a :class:`StageContext` and returns new chunks. It never mutates its input.
Heavy resources load lazily (or in ``warm_up()``).

>>> from optimizer import Chunk
>>> class KeepFirst(Stage):
...     name = "keep-first"
...     def __init__(self, *, n: int = 1):
...         self.n = n
...     def __call__(self, query, chunks, context):
...         return list(chunks[: self.n])
>>> KeepFirst(n=1)("q", [Chunk(id="a", text="x"), Chunk(id="b", text="y")], StageContext.default())[0].id
'a'
>>> KeepFirst(n=2).get_params()
{'n': 2}

To say *why* something was dropped, return a :class:`StageOutput` with ``reasons``
(chunk id -> reason). Whatever a stage removes without a reason is still recorded in the
trace, as "removed by <stage>".

A stage may drop chunks, cut them (:meth:`Chunk.keep`) and set their ``relevance``; the
pipeline checks each step's output (:func:`optimizer.records.kept_problem`) and raises
naming the step and the chunk when a text, the caller's score, title or metadata changed,
or when the caller's own chunk changed in place (a list in its metadata appended to, its
embedding array normalised: :func:`optimizer.records.chunk_states`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FunctionType, MappingProxyType
from typing import Any, ClassVar

from optimizer.deadline import Deadline
from optimizer.overhead_tally import RecountTally, Tally
from optimizer.records import Chunk
from optimizer.score_reading import ScoreReading, read_scores
from optimizer.tokenizer import Tokenizer, get_tokenizer


class RunCache:
    """Per-run scratch space stages share: token counts and named memos.

    One is made per :meth:`~optimizer.Pipeline.run` and handed to every stage through
    :attr:`StageContext.cache`. It is the only mutable part of a run: stages may memoize
    in it (e.g. embeddings computed once by a reranker and reused by a deduper), never
    change the run's settings.

    >>> cache = RunCache()
    >>> memo = cache.memo("embeddings:static")
    >>> memo["Paris"] = 1
    >>> cache.memo("embeddings:static")
    {'Paris': 1}
    """

    __slots__ = ("_memos", "_counts")

    def __init__(self) -> None:
        self._memos: dict[str, dict[Any, Any]] = {}
        self._counts: dict[str, int] = {}

    def memo(self, name: str) -> dict[Any, Any]:
        """The dict named ``name`` for this run (created empty on first use)."""
        return self._memos.setdefault(name, {})

    def setdefault(self, name: str, default: dict[Any, Any]) -> dict[Any, Any]:
        """Dict-style access kept for stages written against ragtrim 0.1 (``cache.setdefault(key, {})``)."""
        return self._memos.setdefault(name, default)

    def count(self, tokenizer: Tokenizer, text: str) -> int:
        """Token count of ``text`` with ``tokenizer``, memoized for the run."""
        n = self._counts.get(text)
        if n is None:
            n = tokenizer.count(text)
            self._counts[text] = n
        return n

    def remember(self, text: str, n: int) -> None:
        """Record ``text``'s token count, known already for this run's tokenizer (no recount)."""
        self._counts[text] = n

    def __repr__(self) -> str:
        return f"RunCache(memos={sorted(self._memos)}, counts={len(self._counts)})"


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about the run besides query and chunks; read-only.

    ``budget`` is the token budget the pipeline resolved for this call (``None`` for
    unlimited), ``tokenizer`` the target tokenizer, ``overhead(chunks)`` the tokens the
    renderer adds around those chunks (titles, separators, markers), ``input_order`` each
    chunk id's position in the caller's list, ``cache`` a :class:`RunCache` for what
    stages share within the run, and ``deadline`` the run's time limit
    (:class:`~optimizer.deadline.Deadline`, None without one), which a stage's long loops check
    with :meth:`check_deadline`. ``scores`` is how the run reads the caller's ``Chunk.score``
    (:class:`~optimizer.score_reading.ScoreReading`: a similarity or a distance, decided once
    on every chunk the run was given); stages rank by :meth:`relevances`, which uses it. The
    context is frozen: a stage cannot change the budget the pipeline packs with.

    >>> ctx = StageContext.default(budget=100)
    >>> ctx.budget, ctx.count("two words")
    (100, 2)
    >>> ctx.budget = 10_000
    Traceback (most recent call last):
    ...
    dataclasses.FrozenInstanceError: cannot assign to field 'budget'
    """

    tokenizer: Tokenizer
    budget: int | None = None
    render_overhead: Callable[[Sequence[Chunk]], int] | None = None
    render_tokens: Callable[[Sequence[Chunk]], int] | None = None
    input_order: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    cache: RunCache = field(default_factory=RunCache, repr=False, compare=False)
    deadline: Deadline | None = field(default=None, repr=False, compare=False)
    scores: ScoreReading | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input_order, MappingProxyType):
            object.__setattr__(self, "input_order", MappingProxyType(dict(self.input_order)))

    @classmethod
    def default(cls, budget: int | None = None, tokenizer: str | Tokenizer = "cl100k_base") -> StageContext:
        """A context without a renderer (overhead 0), e.g. to call a stage directly."""
        return cls(tokenizer=get_tokenizer(tokenizer), budget=budget)

    @classmethod
    def for_chunks(
        cls,
        chunks: Sequence[Chunk],
        *,
        tokenizer: Tokenizer,
        budget: int | None = None,
        render_overhead: Callable[[Sequence[Chunk]], int] | None = None,
        render_tokens: Callable[[Sequence[Chunk]], int] | None = None,
        cache: RunCache | None = None,
        deadline: Deadline | None = None,
        score_mode: str = "auto",
    ) -> StageContext:
        """A context whose ``input_order`` is the order of ``chunks``, and whose ``scores`` are read from them.

        ``score_mode``: ``"similarity"`` or ``"distance"`` to say how, else the scores are read as distances
        when they rise along that order (:func:`~optimizer.score_reading.read_scores`).
        """
        order = {c.id: i for i, c in enumerate(chunks)}
        return cls(
            tokenizer=tokenizer,
            budget=budget,
            render_overhead=render_overhead,
            render_tokens=render_tokens,
            input_order=order,
            cache=cache if cache is not None else RunCache(),
            deadline=deadline,
            scores=read_scores(chunks, score_mode, order),
        )

    def score_reading(self, chunks: Sequence[Chunk]) -> ScoreReading:
        """How this run reads ``Chunk.score``: the run's :attr:`scores`; for a context without them (a stage
        called on its own with :meth:`default`), read from ``chunks`` in their :attr:`input_order`."""
        return self.scores if self.scores is not None else read_scores(chunks, "auto", self.input_order)

    def relevances(self, chunks: Sequence[Chunk]) -> list[float]:
        """:func:`relevance_of` each chunk with this run's :meth:`score_reading`: higher is better, distances included.

        >>> from optimizer import Chunk
        >>> l2 = [Chunk(id=k, text=k, score=s) for k, s in zip("abcd", [0.2, 0.5, 0.9, 1.4])]
        >>> StageContext.default().relevances(l2)
        [-0.2, -0.5, -0.9, -1.4]
        """
        reading = self.score_reading(chunks)
        return [relevance_of(c, reading) for c in chunks]

    def check_deadline(self, where: str) -> None:
        """Raise :class:`~optimizer.deadline.OptimizerTimeout` when the run is past its time limit, or
        :class:`~optimizer.deadline.OptimizerStopped` once its deadline was stopped (nothing without one).

        Call it between the slices of a long loop (every few milliseconds of work, not per item):
        ``where`` says what the run was doing, e.g. ``f"scoring sentences ({i} of {n})"``.

        >>> from optimizer.deadline import Deadline
        >>> StageContext.default().check_deadline("anywhere")   # no deadline: never raises
        >>> import dataclasses
        >>> dataclasses.replace(StageContext.default(), deadline=Deadline(0)).check_deadline("scoring")
        Traceback (most recent call last):
        ...
        optimizer.deadline.OptimizerTimeout: the optimizer stopped after 0.00 s, past its time limit of 0 s (scoring); send a smaller context, use a faster preset (bm25-pack is linear in the input), or raise the limit
        """
        if self.deadline is not None:
            self.deadline.check(where)

    def count(self, text: str) -> int:
        """Token count of ``text``, memoized for the run."""
        return self.cache.count(self.tokenizer, text)

    def overhead(self, chunks: Sequence[Chunk], *, grouped: bool = False) -> int:
        """Tokens the renderer adds around ``chunks`` in this order (0 when no renderer is attached).

        ``grouped``: the chunks will be rendered with those that share a title together
        (:func:`optimizer.render.group_by_title`), so each title is counted once.
        """
        if self.render_overhead is None:
            return 0
        return self.render_overhead(chunks, grouped=True) if grouped else self.render_overhead(chunks)

    def overhead_tally(self, *, grouped: bool = False) -> Tally:
        """A :class:`~optimizer.overhead_tally.Tally` of :meth:`overhead` (``grouped`` as there) for a stage that
        takes chunks one at a time: ``tally.added(chunk)`` is ``overhead(taken + [chunk]) - overhead(taken)``,
        ``tally.take(chunk)`` takes it. It counts only what the new chunk changes when the run's overhead
        can say so (``render_overhead.tally``, see :class:`~optimizer.overhead_tally.RenderOverhead`), else
        the whole layout again: counting every chunk taken per chunk tried made a selection quadratic.

        >>> from optimizer import Chunk
        >>> tally = StageContext.default().overhead_tally()
        >>> tally.take(Chunk(id="a", text="x")), tally.added(Chunk(id="b", text="y"))
        (0, 0)
        """
        make = getattr(self.render_overhead, "tally", None)
        if make is not None:
            return make(grouped)
        return RecountTally(lambda chunks: self.overhead(chunks, grouped=grouped))

    def rendered(self, chunks: Sequence[Chunk], *, grouped: bool = False) -> int | None:
        """Exact tokens of ``chunks`` rendered as the packer will render them (None without a renderer).

        ``grouped`` as in :meth:`overhead`. :meth:`overhead` plus the texts' own counts is an upper
        bound (a separator or marker alone is counted apart from the text it merges with); this
        is the count of the rendered text itself, so a stage can check what it will really cost.
        """
        if self.render_tokens is None:
            return None
        return self.render_tokens(chunks, grouped=True) if grouped else self.render_tokens(chunks)


@dataclass(frozen=True)
class StageOutput:
    """A stage's return value when it wants to explain drops or leave notes in the trace.

    ``chunks`` is a list (not a generator); ``reasons`` map a dropped chunk's id to why, a
    string (anything else is an error naming the step when the pipeline runs it); ``notes``
    hold plain values: numpy numbers and arrays, sets and tuples become JSON in
    :meth:`~optimizer.records.StageTrace.to_dict`, anything else is an error there naming the step.
    ``range_reasons`` map a partly kept chunk's id to ``(start, end, reason)`` ranges of its
    original text removed for another reason than its ``reasons`` entry (a repeat beside a cut
    for the budget): the trace gives each removed range the reason of the range it lies in.
    """

    chunks: Sequence[Chunk]
    reasons: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, Any] = field(default_factory=dict)
    range_reasons: Mapping[str, Sequence[tuple[int, int, str]]] = field(default_factory=dict)

    # behaves like its list of chunks, so calling a stage directly stays convenient
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self.chunks[index]


class Stage:
    """Base class for stages. Subclasses set ``name`` and implement ``__call__``.

    Subclassing is optional: any object with a ``name``, ``get_params()`` and a matching
    ``__call__`` works in a :class:`~optimizer.Pipeline`.
    """

    name: ClassVar[str] = "stage"

    def __call__(
        self, query: str, chunks: Sequence[Chunk], context: StageContext
    ) -> Sequence[Chunk] | StageOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load heavy resources now instead of on the first call."""

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments, as stored (scikit-learn style)."""
        return constructor_params(self)

    def __repr__(self) -> str:
        """``Name(setting=value, ...)``; never raises (unreadable settings are said so instead).

        >>> class FirstN(Stage):
        ...     name = "first-n"
        ...     def __init__(self, *, n: int = 1):
        ...         self._n = n
        >>> FirstN(n=2)
        FirstN(<settings unreadable: AttributeError>)
        """
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        except Exception as exc:
            args = f"<settings unreadable: {type(exc).__name__}>"
        return f"{type(self).__name__}({args})"


def constructor_params(obj: Any) -> dict[str, Any]:
    """``obj``'s constructor arguments read back from attributes of the same names.

    A missing attribute raises AttributeError saying how to store the setting, or to
    override ``get_params()``.

    >>> class FirstN(Stage):
    ...     def __init__(self, *, n: int = 1):
    ...         self._n = n
    >>> constructor_params(FirstN(n=2))
    Traceback (most recent call last):
    ...
    AttributeError: FirstN has no attribute 'n': settings are read back from attributes named like the constructor's arguments; store it as self.n = n in __init__, or override get_params() to return {'n': ...}
    """
    params = {}
    for pname in init_arg_names(type(obj).__init__):
        if pname == "self":
            continue
        try:
            params[pname] = getattr(obj, pname)
        except AttributeError as exc:
            raise AttributeError(
                f"{type(obj).__name__} has no attribute {pname!r}: settings are read back from attributes named like "
                f"the constructor's arguments; store it as self.{pname} = {pname} in __init__, or override get_params() "
                f"to return {{{pname!r}: ...}}"
            ) from exc
    return params


def init_arg_names(init: Any) -> list[str]:
    """The names of ``init``'s parameters but ``*args`` and ``**kwargs``, in order, as :func:`inspect.signature` gives them.

    A plain function's names are read from its code object (``inspect.signature`` builds a
    ``Parameter`` per argument, about 1 ms for the sentence stage's fifty, and a run reads every
    step's settings); anything else (a wrapped or decorated function, one with a ``__signature__``,
    a builtin) goes through ``inspect.signature``.

    >>> def f(self, a, /, b, *args, c=1, **kw): ...
    >>> init_arg_names(f), init_arg_names(object.__init__)
    (['self', 'a', 'b', 'c'], ['self'])
    """
    if isinstance(init, FunctionType) and not any(hasattr(init, a) for a in ("__wrapped__", "__signature__", "_partialmethod")):
        code = init.__code__
        return list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
    return [n for n, p in inspect.signature(init).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def stage_params(stage: Any) -> dict[str, Any]:
    """Settings of any stage-like object (``get_params()`` when it has one)."""
    getter = getattr(stage, "get_params", None)
    return dict(getter()) if callable(getter) else {}


def relevance_of(chunk: Chunk, reading: ScoreReading | None = None) -> float:
    """The score ordering uses, higher is better: a rerank stage's ``relevance``, else the caller's ``score`` as
    ``reading`` reads it (a distance negated; a chunk without one gets the worst given score), else 0.

    Pass the run's reading (``context.score_reading(chunks)``), or use :meth:`StageContext.relevances`;
    without one, scores are read as similarities and an unscored chunk as 0.

    >>> from optimizer.score_reading import ScoreReading
    >>> relevance_of(Chunk(id="a", text="x", score=0.3), ScoreReading("distance")), relevance_of(Chunk(id="b", text="y"))
    (-0.3, 0.0)
    """
    if chunk.relevance is not None:
        return chunk.relevance
    value = (reading if reading is not None else _SIMILARITIES).value(chunk)
    return 0.0 if value is None else value


_SIMILARITIES = ScoreReading()
