"""Shared plumbing of the framework integrations: items in, pipeline run, kept text out.

A framework object (a LlamaIndex node, a LangChain document) becomes an :class:`Item`
with a position-unique chunk id; :func:`run_items` runs the pipeline and says, for each
kept item in rendered order, which text and which original character ranges survived.
Items without text never reach the pipeline; they are reported as a ``skip-non-text``
step at the head of the trace, so ``Result.dropped`` lists them too.

>>> from optimizer import Pipeline
>>> items = [Item(0, "a", "Paris is the capital of France."), Item(1, "b", "")]
>>> run = run_items(Pipeline(budget=50), "capital?", items)
>>> [(k.item.id, k.text) for k in run.kept], run.skipped
([('a', 'Paris is the capital of France.')], (1,))
>>> run.result.dropped[0].reason
'no text (non-text node or empty text); skipped'
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from optimizer.budget import parse_budget, resolve_budget, smallest_share
from optimizer.pipeline import Pipeline, score_mode
from optimizer.score_reading import check_score_direction
from optimizer.records import Chunk, Drop, Result, StageTrace
from optimizer.render import Renderer

logger = logging.getLogger("optimizer.integrations")

SPANS_KEY = "ragtrim_spans"
FRAME_KEY = "ragtrim_frame"  # chunk metadata: the [head, tail] a framework prints around the text
SKIP_STEP = "skip-non-text"
SKIP_REASON = "no text (non-text node or empty text); skipped"
PASS_REASON = ("no text (non-text node or empty text); passed through unchanged after the kept ones, what the framework "
               "prints for it (its metadata) counted in the budget")
PASS_DROP_REASON = "no text, and what the framework prints for it (its metadata) does not fit the budget; dropped"
IDS_STEP = "unique-ids"
IDS_REASON = ("chunk ids must be unique within a call: a repeated id gets '#n', a missing one its input position; "
              "each entry maps a chunk id of this result back to the input's id and position (index)")


@dataclass(frozen=True)
class Item:
    """One framework object as ragtrim sees it; ``index`` is its position in the caller's list."""

    index: int
    id: str
    text: str
    title: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] | None = None
    embedding: Any = None
    frame: tuple[str, str] | None = None  # printed around the text by the framework (see Renderer.frames)
    original_id: Any = None  # the input's own id (``id`` is made unique within the call)
    shown: str = ""  # what the framework prints for an item without text (its metadata), counted when passed through


@dataclass(frozen=True)
class Kept:
    """An item that survived: its kept text and kept ``(start, end)`` ranges of its original text."""

    item: Item
    text: str
    spans: tuple[tuple[int, int], ...]
    relevance: float | None


@dataclass(frozen=True)
class Run:
    result: Result
    kept: tuple[Kept, ...]  # rendered order
    skipped: tuple[int, ...]  # indices of items without text


def make_pipeline(
    pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str, renderer: Renderer | None = None,
    score_direction: str = "auto",
) -> tuple[Pipeline, Any]:
    """The pipeline to run and the budget override (``None`` keeps the pipeline's own).

    ``budget`` alone builds preset ``preset``; with ``pipeline`` it overrides that
    pipeline's budget. One of the two is required. ``renderer``: run with it instead of the
    pipeline's own (on a copy; the caller's pipeline is left alone). ``score_direction``
    (``Pipeline(score_direction=...)``): the preset's, or, when not ``"auto"``, the given pipeline's
    on a copy (refused when that pipeline says the other direction).
    """
    check_score_direction(score_direction, f"{owner}: score_direction")
    built, override = _pick_pipeline(pipeline, preset=preset, budget=budget, tokenizer=tokenizer, owner=owner,
                                     score_direction=score_direction)
    if renderer is not None:
        built = copy.copy(built)
        built.renderer = renderer
    return built, override


def _with_direction(pipeline: Pipeline, direction: str, owner: str) -> Pipeline:
    """``pipeline``, or a copy of it reading the scores as ``direction`` (a ValueError when it says the other one)."""
    own = getattr(pipeline, "score_direction", "auto")
    if direction == "auto" or direction == own:
        return pipeline
    if own != "auto":
        raise ValueError(
            f"{owner}: score_direction={direction!r} disagrees with its pipeline's score_direction={own!r}; "
            f"pass one of them, e.g. leave the {owner}'s score_direction at 'auto'"
        )
    score_mode(pipeline.steps, direction)  # a step's retriever setting that says otherwise is refused here
    built = copy.copy(pipeline)
    built.score_direction = direction
    return built


def pipeline_settings(pipeline: Pipeline | None) -> tuple[Any, ...]:
    """What a run of ``pipeline`` depends on, for :class:`PipelineCache` to notice a change made in place.

    Objects are compared by identity (:func:`_same`) and held, so a freed one's ``id`` reused by a new
    object cannot pass for it; the budget and name by value.
    """
    if pipeline is None:
        return (None,)
    steps = tuple(getattr(pipeline, "steps", ()))
    fields = (getattr(pipeline, name, None) for name in ("budget", "name", "tokenizer", "renderer", "adaptive", "score_direction"))
    return (pipeline, *fields, tuple(n for n, _ in steps), tuple(s for _, s in steps))


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Element-wise: numbers and strings equal, everything else the very same object (no ``__eq__`` of stages or arrays)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, tuple) and isinstance(y, tuple):
            if not _same(x, y):
                return False
        elif isinstance(x, (str, int, float)) and isinstance(y, (str, int, float)):
            if type(x) is not type(y) or x != y:
                return False
        elif x is not y:
            return False
    return True


class PipelineCache:
    """A wrapper's pipeline for its current settings, built again when one of them has changed.

    Framework objects are pydantic models whose fields a user may set after construction
    (``post.budget = 200``, ``post.pipeline = Pipeline.preset(...)``, ``model_copy(update=...)``);
    the next call runs with the new values. The key holds the pipeline object itself, not its
    ``id``: after ``post.pipeline = None`` the old pipeline is freed and a new one may get its id,
    which ran the wrong preset. The key also holds the pipeline's own settings, so ``p.budget = 30``
    on the pipeline you passed reaches the copy run with the framework's layout.
    """

    def __init__(self) -> None:
        # (key, built), read and replaced as one value: two attributes let a thread read a new key with the old pipeline
        self._entry: tuple[tuple[Any, ...], tuple[Pipeline, Any]] | None = None
        self._wrapper: Any = None

    def own(self, wrapper: Any) -> PipelineCache:
        """This cache if it serves ``wrapper`` (or no one yet), else a new one for it.

        ``model_copy`` shares private attributes with the original (pydantic copies them
        shallowly); the copy then takes a cache of its own on its first call.
        """
        if self._wrapper is None:
            self._wrapper = wrapper
        return self if self._wrapper is wrapper else PipelineCache().own(wrapper)

    def get(self, pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str,
            renderer: Renderer | None, score_direction: str = "auto") -> tuple[Pipeline, Any]:
        """:func:`make_pipeline` of these settings, reused while they stay the same."""
        key = (*pipeline_settings(pipeline), preset, repr(budget), tokenizer, renderer, score_direction)
        entry = self._entry
        if entry is not None and _same(key, entry[0]):
            return entry[1]
        built = make_pipeline(pipeline, preset=preset, budget=budget, tokenizer=tokenizer, owner=owner, renderer=renderer,
                              score_direction=score_direction)
        self._entry = (key, built)
        return built


def _pick_pipeline(pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str,
                   score_direction: str = "auto") -> tuple[Pipeline, Any]:
    budget = parse_budget(budget)
    if pipeline is None:
        if budget is None:
            raise ValueError(
                f"{owner} needs a budget or a pipeline, got neither; pass e.g. budget=300 (tokens), "
                "budget=0.25 (a share of the retrieved context) or pipeline=Pipeline.preset('default', budget=300)"
            )
        return Pipeline.preset(preset, budget=budget, tokenizer=tokenizer, score_direction=score_direction), None
    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            f"{owner}: pipeline must be an optimizer.Pipeline, got {type(pipeline).__name__}: {pipeline!r:.80}; "
            "build one with Pipeline.preset('default', budget=300) or Pipeline([...], budget=300)"
        )
    return _with_direction(pipeline, score_direction, owner), budget


def title_from(metadata: Mapping[str, Any] | None, keys: str | Sequence[str] | None) -> str | None:
    """The first non-empty string value among ``keys`` of ``metadata``.

    >>> title_from({"file_name": "a.txt"}, ["title", "file_name"])
    'a.txt'
    >>> title_from({"title": ""}, "title") is None
    True
    """
    if not metadata or keys is None:
        return None
    for key in [keys] if isinstance(keys, str) else keys:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def unique_ids(ids: Sequence[str | None]) -> list[str]:
    """Make chunk ids unique within one call: a missing id becomes the position, a repeat gets ``#n``.

    >>> unique_ids(["a", None, "a", "a#2"])
    ['a', '1', 'a#2', 'a#2#2']
    """
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(ids):
        base = str(raw) if raw is not None and str(raw) != "" else str(i)
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}#{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def run_items(pipeline: Pipeline, query: str, items: Sequence[Item], *, budget: Any = None, non_text: str = "skip",
              separator: str = "\n\n") -> Run:
    """Run ``pipeline`` on the items that have text; map the kept chunks back to items.

    Items without text are reported in a ``skip-non-text`` trace step: dropped with a warning
    (``non_text="skip"``) or, with ``"keep"``, noted as passed through (the caller returns them).
    With ``"keep"``, what the framework prints for them (``Item.shown``, joined to the context by
    ``separator``) counts in the budget: they come first, one that does not fit is dropped, and the
    text items get the rest; ``Result.text``/``tokens`` are then the whole context.

    Items whose id was made unique (a repeat, a missing id) are listed in a ``unique-ids`` step near
    the head of the trace (after ``skip-non-text``): ``{"chunk_id", "id", "index"}`` per item, so drops map back to the input.

    >>> run = run_items(Pipeline(budget=50), "q?", [Item(0, "a", "Paris.", original_id="a"), Item(1, "a#2", "Lyon.", original_id="a")])
    >>> run.result.trace[0].name, run.result.trace[0].notes["renamed"]
    ('unique-ids', [{'chunk_id': 'a#2', 'id': 'a', 'index': 1}])
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}: {query!r:.80}")
    with_text = [it for it in items if it.text and it.text.strip()]
    no_text = [it for it in items if not (it.text and it.text.strip())]
    by_id = {it.id: it for it in with_text}
    chunks = [
        Chunk(id=it.id, text=it.text, title=it.title, score=it.score, embedding=it.embedding,
              metadata={FRAME_KEY: list(it.frame)} if it.frame else None)
        for it in with_text
    ]
    passed = non_text == "keep"
    shown = [it for it in no_text if passed and it.shown and it.shown.strip()]
    if shown:
        result, fits, too_big = _run_with_shown(pipeline, query, chunks, shown, budget=budget, separator=separator)
    else:
        result, fits, too_big = pipeline.run(query, chunks, budget=budget), [], []
    head: list[StageTrace] = []
    if no_text:
        head.append(_no_text_step(items, no_text, passed=passed, too_big=too_big,
                                  shown_tokens=pipeline.tokenizer.count(separator.join(it.shown.strip() for it in fits)) if fits else 0))
    renamed = [{"chunk_id": it.id, "id": it.original_id, "index": it.index} for it in items
               if it.original_id is None or str(it.original_id) != it.id]
    if renamed:
        head.append(StageTrace(name=IDS_STEP, tokens_in=0, tokens_out=0, ms=0.0, chunks_in=len(items), chunks_out=len(items),
                               notes={"renamed": renamed, "reason": IDS_REASON}))
    if head:
        result = replace(result, trace=(*head, *result.trace))
    kept = tuple(
        Kept(item=by_id[c.id], text=c.text, spans=c.kept_pieces, relevance=c.relevance)
        for c in result.chunks
        if c.text
    )
    out_of_budget = {it.index for it in too_big}
    return Run(result=result, kept=kept, skipped=tuple(it.index for it in no_text if it.index not in out_of_budget))


def _run_with_shown(pipeline: Pipeline, query: str, chunks: list[Chunk], shown: Sequence[Item], *, budget: Any,
                    separator: str) -> tuple[Result, list[Item], list[Item]]:
    """Run with what the framework prints for passed-through items counted: the result (its text, tokens and
    tokens_full the whole context, text items then those), the items that fit and those that did not.

    A share is of that whole context, not of the text items alone: the passed-through items' metadata is
    sent too, so ``budget=1.0`` keeps every item and ``0.5`` is half of everything the caller retrieved.
    """
    count = pipeline.tokenizer.count
    asked = parse_budget(budget) if budget is not None else pipeline.budget
    every = separator.join(it.shown.strip() for it in shown)
    tokens_full = count(separator.join(t for t in (pipeline.renderer.render(chunks).text, every) if t))
    if asked is None or (isinstance(asked, float) and asked == 1.0):  # everything, the text as the pipeline keeps it all
        result = pipeline.run(query, chunks, budget=budget)
        if asked is not None or result.budget is None:
            text = separator.join(t for t in (result.text, every) if t)
            whole = None if asked is None else max(tokens_full, count(text))
            return replace(result, text=text, tokens=count(text), budget=whole, tokens_full=tokens_full), list(shown), []
        asked = result.budget  # no budget of its own but an adaptive one: fit into what it chose
    elif isinstance(asked, float):
        asked = _share_of_whole(asked, tokens_full)
    fits, too_big = _fitting(shown, asked, count, separator)
    tail = separator.join(it.shown.strip() for it in fits)
    result = _run_text(pipeline, query, chunks, tail, asked, separator)
    text = separator.join(t for t in (result.text, tail) if t)
    return replace(result, text=text, tokens=count(text), budget=asked, tokens_full=tokens_full), fits, too_big


def _share_of_whole(share: float, tokens_full: int) -> int:
    """``share`` of the whole context's ``tokens_full`` tokens, warning (as a pipeline run does) when that is 0 tokens."""
    asked = resolve_budget(share, tokens_full)
    if asked == 0 and tokens_full > 0:
        warnings.warn(
            f"budget share {share!r} of the whole context's {tokens_full} tokens (text and passed-through metadata) rounds "
            f"down to 0 tokens, so nothing is kept; use a share of at least {smallest_share(tokens_full)!r} or a number "
            "of tokens (e.g. budget=300)", UserWarning, stacklevel=2)
    return asked


def _fitting(shown: Sequence[Item], asked: int, count: Any, separator: str) -> tuple[list[Item], list[Item]]:
    """The passed-through items whose printed metadata fits ``asked`` tokens, in order, and those that do not."""
    fits: list[Item] = []
    too_big: list[Item] = []
    for it in shown:
        trial = separator.join(x.shown.strip() for x in [*fits, it])
        (fits if count(trial) <= asked else too_big).append(it)
    return fits, too_big


def _run_text(pipeline: Pipeline, query: str, chunks: list[Chunk], tail: str, asked: int, separator: str) -> Result:
    """The text items run in what ``asked`` tokens leave after ``tail`` (the passed-through items' metadata) and its joint."""
    count = pipeline.tokenizer.count
    room = asked - (count(separator + tail) if tail else 0)
    for _ in range(8):  # tokens may merge across the joint: shrink until the exact count fits
        if room < 1:
            break
        result = pipeline.run(query, chunks, budget=room)
        over = count(separator.join(t for t in (result.text, tail) if t)) - asked
        if over <= 0:
            return result
        room = min(room, result.tokens) - over
    return pipeline.run(query, [], budget=1)  # no room, or (never seen) no fit after 8 tries: the budget is hard


def _no_text_step(items: Sequence[Item], no_text: Sequence[Item], *, passed: bool, too_big: Sequence[Item] = (),
                  shown_tokens: int = 0) -> StageTrace:
    """The trace step for items without text: dropped (logged), or passed through untouched (those whose
    printed metadata did not fit the budget dropped)."""
    ids = [it.id for it in no_text]
    if not passed:
        logger.warning("ragtrim skipped %d input(s) without text (an image node, an empty document): ids %s", len(ids), ids)
        dropped = tuple(Drop(i, SKIP_REASON) for i in ids)
        notes: dict[str, Any] = {"skipped": len(ids)}
    else:
        out = {it.id for it in too_big}
        if out:
            logger.warning("ragtrim dropped %d input(s) without text whose metadata does not fit the budget: ids %s",
                           len(out), sorted(out))
        dropped = tuple(Drop(i, PASS_DROP_REASON) for i in ids if i in out)
        notes = {"passed_through": [i for i in ids if i not in out], "reason": PASS_REASON, "tokens": shown_tokens}
    return StageTrace(
        name=SKIP_STEP,
        tokens_in=0,
        tokens_out=shown_tokens,
        ms=0.0,
        chunks_in=len(items),
        chunks_out=len(items) - len(dropped),
        dropped=dropped,
        notes=notes,
    )


def compose_spans(text: str, previous: Any, spans: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...] | None:
    """``spans`` of ``text`` as ranges of the text ``previous`` were kept from, or None if they do not fit it.

    ``text`` is an earlier run's output: the ``previous`` ranges of an original text, joined by
    white space. Run ragtrim on it again and the new ranges are of ``text``; this maps them back,
    so ``ragtrim_spans`` always points into the original.

    >>> original = "Paris is big. Lyon is old. Nice is sunny."
    >>> text = "Paris is big. Nice is sunny."          # an earlier run kept (0, 13) and (27, 41)
    >>> compose_spans(text, [[0, 13], [27, 41]], [(14, 28)])
    ((27, 41),)
    >>> compose_spans("edited", [[0, 13]], [(0, 6)]) is None  # the text no longer matches those ranges
    True
    """
    if not isinstance(previous, (list, tuple)) or not all(
        isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, int) for v in r) and 0 <= r[0] < r[1] for r in previous
    ):
        return None
    starts, at = [], 0
    for k, (s, e) in enumerate(previous):
        if k:
            gap = at
            while at < len(text) and text[at].isspace():
                at += 1
            if at == gap:
                return None
        piece = text[at : at + (e - s)]
        if len(piece) != e - s or piece[:1].isspace() or piece[-1:].isspace():
            return None
        starts.append(at)
        at += e - s
    if at != len(text):
        return None
    out: list[tuple[int, int]] = []
    for a, b in spans:
        for (s, e), st in zip(previous, starts):
            lo, hi = max(a, st), min(b, st + (e - s))
            if lo < hi:
                out.append((s + lo - st, s + hi - st))
    return tuple(out)


def original_spans(text: str, previous: Any, spans: Sequence[tuple[int, int]], name: str) -> tuple[tuple[int, int], ...] | None:
    """:func:`compose_spans`, with a warning naming ``name`` when ``previous`` no longer fits ``text``."""
    composed = compose_spans(text, previous, spans)
    if composed is None:
        logger.warning("%s: metadata[%r] does not match its text (edited since?); its ranges are now of the text as given",
                       name, SPANS_KEY)
    return composed


def as_float(value: Any) -> float | None:
    """A float score, or None: NaN, infinities (a log-probability of -inf, say) and non-numbers are no score."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(out):
        logger.warning("ragtrim read a retriever score of %r as no score (only finite scores rank chunks)", value)
        return None
    return out


def as_embedding(value: Any) -> Any:
    """A float32 vector from a list/array embedding, or None."""
    if value is None:
        return None
    import numpy as np

    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return vec if vec.ndim == 1 and vec.size else None
