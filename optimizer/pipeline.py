"""The Pipeline: a list of named steps, a budget, a tokenizer and a renderer.

>>> from optimizer import Pipeline
>>> chunks = [
...     {"id": "a", "title": "Paris", "text": "Paris is the capital of France. It has 2.1 million people."},
...     {"id": "b", "title": "Lyon", "text": "Lyon is a city in France. It is known for food."},
... ]
>>> result = Pipeline.preset("default", budget=20).run("What is the capital of France?", chunks)
>>> result.tokens <= 20
True
>>> "capital of France" in result.text
True
>>> result.spans[0].chunk_id
'a'

Steps are ``(name, stage)`` pairs (a bare stage is named after ``stage.name``). Pipelines
round-trip through plain dicts, YAML and TOML (:meth:`Pipeline.to_config`,
:meth:`Pipeline.from_config`, :meth:`Pipeline.save`, :meth:`Pipeline.load`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optimizer.adaptive import AdaptiveBudget
from optimizer.budget import Budget, parse_budget, resolve_budget, smallest_share, unambiguous_budget
from optimizer.deadline import Deadline
from optimizer.overhead_tally import RenderOverhead
from optimizer.packer import BLANK_REASON, Packed, _removed_ranges, pack
from optimizer.records import (
    SURROGATE_FIX,
    Chunk,
    Drop,
    Result,
    StageTrace,
    as_chunks,
    check_no_surrogate,
    chunk_states,
    kept_problem,
    state_change,
    with_article,
)
from optimizer.registry import make_stage
from optimizer.render import Renderer, group_by_title, is_blank, visible
from optimizer.score_reading import DIRECTIONS, check_score_direction, reading_note
from optimizer.sentences import split_sentences
from optimizer.stage import StageContext, StageOutput, stage_params
from optimizer.tokenizer import HFTokenizer, TiktokenTokenizer, Tokenizer, get_tokenizer


def rendered_tokens(renderer: Renderer, context: StageContext, chunks: Sequence[Chunk], grouped: bool = False) -> int:
    """Exact tokens of ``chunks`` as ``renderer`` renders them (``grouped``: in :func:`group_by_title` order)."""
    return context.count(renderer.render(group_by_title(chunks) if grouped else chunks).text)


def _step_name(stage: Any) -> str:
    name = getattr(stage, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"stage {stage!r} has no 'name'; give it a class attribute name = '...' or pass (name, stage)")
    return name


def score_mode(steps: Sequence[tuple[str, Any]], given: str = "auto") -> str:
    """How to read ``Chunk.score``: ``given`` (the pipeline's ``score_direction``) when it is ``"similarity"`` or
    ``"distance"``, else a step's ``retriever`` setting when it is one of those (the sentence stage's), else
    ``"auto"`` (:func:`~optimizer.score_reading.read_scores`).

    The run ranks by one reading in every step, so two steps saying otherwise, or a step saying otherwise
    than ``given``, are refused.

    >>> from optimizer.stages.compress import SentenceExtract
    >>> score_mode([("compress-sentences", SentenceExtract(retriever="distance"))])
    'distance'
    >>> score_mode([("compress-sentences", SentenceExtract(retriever="distance"))], "similarity")
    Traceback (most recent call last):
    ...
    ValueError: score_direction='similarity' disagrees with step 'compress-sentences' (retriever='distance'); every step ranks by one reading per run, so give them the same direction, or leave the step's retriever at "auto" and let score_direction decide
    """
    check_score_direction(given)
    said: dict[str, str] = {}
    for name, stage in steps:
        try:
            value = stage_params(stage).get("retriever")
        except Exception:  # noqa: BLE001 - a stage whose settings cannot be read says nothing about scores
            continue
        if isinstance(value, str) and value in DIRECTIONS:
            said[name] = value
    if len(set(said.values())) > 1:
        named = ", ".join(f"{n!r} (retriever={v!r})" for n, v in said.items())
        raise ValueError(
            f"steps {named} read the retriever's scores differently; every step ranks by one reading per run, "
            "so give them the same retriever setting (\"similarity\" or \"distance\"; \"auto\" reads rising scores as distances)"
        )
    if given in DIRECTIONS:
        other = {n: v for n, v in said.items() if v != given}
        if other:
            named = ", ".join(f"{n!r} (retriever={v!r})" for n, v in other.items())
            raise ValueError(
                f"score_direction={given!r} disagrees with step{'s' if len(other) > 1 else ''} {named}; every step ranks by "
                "one reading per run, so give them the same direction, or leave the step's retriever at \"auto\" and let "
                "score_direction decide"
            )
        return given
    return next(iter(said.values()), "auto")


PACK_STEP = "pack"
"""The packer's name in the trace; no step may take it."""

FULL_COUNTS = 256
"""How many whole contexts' token counts a pipeline remembers (see ``Pipeline._count_full``)."""


class Pipeline:
    """Run stages over retrieved chunks and pack the result into a hard token budget.

    Parameters
    ----------
    steps:
        ``[(name, stage), ...]`` or ``[stage, ...]``, run in order before packing.
    budget:
        Share of the full rendered context in (0, 1], a number of tokens, or None: no hard
        budget, so the packer cuts nothing; stages that select still choose (``compress-sentences``
        keeps its ``ratio`` of the tokens, half by default, so ``default`` without a budget keeps
        about half). Pass ``budget=1.0`` to keep everything a stage does not remove as redundant.
        A bare ``1`` is refused (:func:`~optimizer.budget.unambiguous_budget`), as in a config
        file and on the command line: the whole context (``1.0``) or one token? So what
        :meth:`save` writes, :meth:`load` reads. (A call's own ``run(..., budget=1)`` is one token.)
    tokenizer:
        Name of the target tokenizer (``cl100k_base``, ``o200k_base``, ``gpt-4o``,
        ``hf:/path``) or a :class:`~optimizer.tokenizer.Tokenizer`.
    renderer:
        Layout of the context (:class:`~optimizer.render.Renderer`); citation markers and
        titles by default.
    name:
        A label for reports.
    adaptive:
        An :class:`~optimizer.adaptive.AdaptiveBudget`: a per-query budget from the query's
        relevance mass, still capped by ``budget`` (``min`` of the two). None: fixed budget.

    score_direction:
        How to read the caller's ``Chunk.score``: ``"similarity"`` (higher is better),
        ``"distance"`` (lower is better) or ``"auto"`` (default). The score is read one way per run,
        by every step and the packer; ``"auto"`` reads it as a distance when the scores rise along the
        order the chunks were given (four scored chunks at least, never falling), else as a
        similarity, unless a step's ``retriever`` setting (the sentence stage's) says
        ``"similarity"`` or ``"distance"`` (:func:`score_mode`, :mod:`optimizer.score_reading`).
        Similarities put back into reading order may rise too: say ``"similarity"`` then. A step
        setting that disagrees with an explicit ``score_direction`` is refused. The ``pack`` trace's
        ``notes["scores"]`` says how a run read them.
    """

    score_direction: str = "auto"  # the instance sets it; a Pipeline pickled before the setting existed reads this

    def __init__(
        self,
        steps: Sequence[Any] = (),
        *,
        budget: Budget | None = None,
        tokenizer: str | Tokenizer = "cl100k_base",
        renderer: Renderer | None = None,
        name: str = "custom",
        adaptive: AdaptiveBudget | Mapping[str, Any] | None = None,
        score_direction: str = "auto",
    ) -> None:
        named: list[tuple[str, Any]] = []
        for step in steps:
            if isinstance(step, tuple):
                if len(step) != 2 or not isinstance(step[0], str):
                    raise TypeError(f"a step must be a stage or a (name, stage) pair, got {step!r}")
                named.append((step[0], step[1]))
            else:
                named.append((_step_name(step), step))
            if not callable(named[-1][1]):
                raise TypeError(f"step {named[-1][0]!r} is not callable: {named[-1][1]!r}")
        names = [n for n, _ in named]
        if PACK_STEP in names:
            raise ValueError(
                f"step name {PACK_STEP!r} is reserved for the packer's row of the trace; "
                f"name the step otherwise, e.g. (\"my-{PACK_STEP}\", stage) or name: my-{PACK_STEP} in a config"
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"step names must be unique, {dupes} repeat; pass (name, stage) pairs with distinct names")
        self.steps = named
        self.score_direction = check_score_direction(score_direction)
        score_mode(named, score_direction)  # steps reading the scores two ways fail here, not on the first run
        self.budget = unambiguous_budget(budget)
        self.tokenizer = get_tokenizer(tokenizer)
        self.tokenizer_name = tokenizer if isinstance(tokenizer, str) else self.tokenizer.name
        self.renderer = renderer if renderer is not None else Renderer()
        self.name = name
        self.adaptive = _adaptive_budget(adaptive)
        self._full_counts: tuple[Tokenizer | None, dict[bytes, int]] = (None, {})

    # -- construction -------------------------------------------------------------------
    @classmethod
    def preset(
        cls,
        name: str,
        *,
        budget: Budget | None = None,
        tokenizer: str | Tokenizer = "cl100k_base",
        adaptive: AdaptiveBudget | Mapping[str, Any] | None = None,
        score_direction: str | None = None,
    ) -> Pipeline:
        """A named preset (see :func:`optimizer.presets.list_presets`); ``score_direction`` as in :class:`Pipeline`.

        >>> Pipeline.preset("truncate", budget=100).name
        'truncate'
        """
        from optimizer.presets import preset_config

        config = preset_config(name)
        if adaptive is not None:
            config["adaptive"] = _adaptive_budget(adaptive).to_dict()
        return cls.from_config(config, budget=budget, tokenizer=tokenizer, score_direction=score_direction)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | str | Path,
        *,
        budget: Budget | None = None,
        tokenizer: str | Tokenizer | None = None,
        score_direction: str | None = None,
    ) -> Pipeline:
        """Build from a dict, or a ``.yaml``/``.yml``/``.toml``/``.json`` file.

        ``budget``, ``tokenizer`` and ``score_direction`` given here override the config's.

        >>> Pipeline.from_config({"steps": [{"stage": "rerank-bm25"}], "budget": 0.5}).budget
        0.5
        """
        if isinstance(config, (str, Path)):
            return cls.load(config, budget=budget, tokenizer=tokenizer, score_direction=score_direction)
        if not isinstance(config, Mapping):
            raise TypeError(f"pipeline config must be a dict or a file path, got {type(config).__name__}")
        unknown = set(config) - {"name", "budget", "tokenizer", "renderer", "steps", "description", "adaptive", "score_direction"}
        if unknown:
            raise ValueError(
                f"unknown pipeline config keys {sorted(unknown)}; allowed: name, budget, tokenizer, renderer, steps, adaptive, "
                "score_direction"
            )
        steps = _config_steps(config.get("steps"))
        renderer_cfg = config.get("renderer") or {}
        if not isinstance(renderer_cfg, Mapping):
            raise ValueError(f"renderer must be a mapping (citations, titles, separator), got {renderer_cfg!r}")
        try:
            renderer = Renderer(**renderer_cfg)
        except TypeError as exc:
            raise ValueError(f"bad renderer settings {dict(renderer_cfg)!r}: {exc}") from None
        return cls(
            steps,
            budget=budget if budget is not None else config.get("budget"),
            tokenizer=tokenizer if tokenizer is not None else _config_tokenizer(config.get("tokenizer", "cl100k_base")),
            renderer=renderer,
            name=config.get("name", "custom"),
            adaptive=config.get("adaptive"),
            score_direction=score_direction if score_direction is not None else config.get("score_direction", "auto"),
        )

    def to_config(self) -> dict[str, Any]:
        """A plain dict that :meth:`from_config` turns back into an equal pipeline.

        >>> config = Pipeline([make_stage("rerank-bm25")], budget=0.5, name="mine").to_config()
        >>> config["name"], config["budget"], config["tokenizer"], config["steps"][0]["stage"]
        ('mine', 0.5, 'cl100k_base', 'rerank-bm25')
        >>> Pipeline.from_config(config).to_config() == config
        True
        """
        steps = []
        for name, stage in self.steps:
            entry: dict[str, Any] = {"stage": _step_name(stage)}
            if name != entry["stage"]:
                entry["name"] = name
            params = plain_settings(_step_params(name, stage))
            if params:
                entry["params"] = params
            steps.append(entry)
        out: dict[str, Any] = {"name": self.name, "tokenizer": self.tokenizer_name}
        if self.budget is not None:
            out["budget"] = self.budget
        out["renderer"] = self.renderer.to_dict()
        if self.adaptive is not None:
            out["adaptive"] = self.adaptive.to_dict()
        if self.score_direction != "auto":
            out["score_direction"] = self.score_direction
        out["steps"] = steps
        return out

    @classmethod
    def load(cls, path: str | Path, *, budget: Budget | None = None, tokenizer: str | Tokenizer | None = None,
             score_direction: str | None = None) -> Pipeline:
        """Load a pipeline from a YAML, TOML or JSON file; ``budget``, ``tokenizer`` and ``score_direction`` override the file's.

        A pipeline saved with a tokenizer object of your own records only its name: pass the
        object again as ``tokenizer=``.

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "mine.yaml")
        >>> Pipeline.preset("bm25-pack", budget=300).save(path)
        >>> loaded = Pipeline.load(path, budget=0.25)
        >>> loaded.name, loaded.budget, [name for name, _ in loaded.steps]
        ('bm25-pack', 0.25, ['rerank-bm25'])
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"pipeline config {str(p)!r} does not exist")
        text = p.read_text(encoding="utf-8")
        suffix = p.suffix.lower()
        try:
            if suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            elif suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            elif suffix == ".json":
                data = json.loads(text)
            else:
                raise ValueError(f"pipeline config {str(p)!r}: use a .yaml, .yml, .toml or .json file")
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"could not parse pipeline config {str(p)!r}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"pipeline config {str(p)!r} must hold a mapping at the top level")
        return cls.from_config(data, budget=budget, tokenizer=tokenizer, score_direction=score_direction)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_config` as YAML, TOML or JSON (by the file's suffix).

        A tokenizer object of your own is saved as its ``name`` only, with a warning:
        :meth:`load` needs the object again (``tokenizer=``).

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "mine.toml")
        >>> Pipeline.preset("truncate", budget=100).save(path)
        >>> Pipeline.load(path).to_config() == Pipeline.preset("truncate", budget=100).to_config()
        True
        """
        p = Path(path)
        config = self.to_config()
        check_plain_steps(config["steps"])
        if not isinstance(self.tokenizer, (TiktokenTokenizer, HFTokenizer)):
            warnings.warn(
                f"{str(p)!r} records only the name {self.tokenizer_name!r} of this pipeline's tokenizer, a "
                f"{type(self.tokenizer).__name__} object; load it with Pipeline.load({str(p)!r}, tokenizer=<that object>)",
                UserWarning,
                stacklevel=2,
            )
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml"):
            import yaml

            p.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        elif suffix == ".toml":
            p.write_text(_to_toml(config, self.steps), encoding="utf-8")
        elif suffix == ".json":
            p.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            raise ValueError(f"cannot save pipeline to {str(p)!r}: use a .yaml, .yml, .toml or .json file")

    def renamed(self, name: str) -> Pipeline:
        """A copy of this pipeline under another ``name`` (stages are shared: they hold no run state).

        >>> Pipeline.preset("truncate").renamed("mine").name
        'mine'
        """
        clone = copy.copy(self)
        clone.name = name
        return clone

    def warm_up(self) -> Pipeline:
        """Load every stage's models (and the sentence splitter) now, building a missing static or int8 model once (offline).

        ``run`` never builds a model: without ``warm_up()`` (or ``ragtrim models build``) a
        missing one raises :class:`~optimizer.models.ModelNotBuiltError` naming the command.
        Returns the pipeline, so it chains; a second call costs nothing.

        >>> pipeline = Pipeline.preset("default", budget=20).warm_up()   # the static model, built once if missing
        >>> pipeline.run("What is the capital of France?", ["Paris is the capital of France."]).tokens
        10
        """
        split_sentences("Warm up. The packer and the sentence stages cut here.")  # blingfire's first load: ~0.2-0.3 s
        for _, stage in self.steps:
            warm = getattr(stage, "warm_up", None)
            if callable(warm):
                warm()
        return self

    # -- running ------------------------------------------------------------------------
    def full_tokens(self, chunks: Sequence[Any]) -> int:
        """Tokens of every chunk rendered, as :meth:`run` counts them (its ``tokens_full``), without running a stage.

        >>> p = Pipeline.preset("truncate")
        >>> docs = ["Paris is the capital of France.", "Lyon is in France."]
        >>> p.full_tokens(docs) == p.run("capital?", docs).tokens_full
        True
        """
        items = tuple(as_chunks(chunks))
        return self._count_full(self.renderer.render(items).text)

    def _count_full(self, text: str) -> int:
        """Tokens of a whole rendered context, remembered for up to ``FULL_COUNTS`` contexts (then all forgotten).

        A gateway's budget check (:meth:`full_tokens`) and its run, or an eval's budgets, count
        the same context: the second count is a dict lookup by the text's digest instead of
        tokenizing it again (0.66 ms against 0.015 ms for 20 nq-multidoc passages). Forgotten
        when ``tokenizer`` changes.
        """
        owner, counts = self._full_counts
        if owner is not self.tokenizer:
            counts = {}
            self._full_counts = (self.tokenizer, counts)
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        n = counts.get(key)
        if n is None:
            if len(counts) >= FULL_COUNTS:
                counts.clear()
            n = counts[key] = self.tokenizer.count(text)
        return n

    def run(self, query: str, chunks: Sequence[Any], *, budget: Budget | None = None,
            timeout: float | Deadline | None = None) -> Result:
        """Optimize ``chunks`` for ``query``; ``budget`` overrides the pipeline's.

        ``chunks`` may be :class:`~optimizer.records.Chunk` objects, dicts with ``id`` and
        ``text``, or strings. The input is never modified. Stages see a read-only
        :class:`~optimizer.stage.StageContext`; the packer fills the budget resolved here,
        whatever a stage does. A share that rounds down to 0 tokens of a non-empty context
        warns (``UserWarning``, also in the ``pack`` trace's ``notes["warning"]``) with the
        smallest share that gives a token.

        >>> pipeline = Pipeline.preset("bm25-pack", budget=300)
        >>> chunks = [{"id": "a", "text": "Paris is the capital of France."}, "Lyon is a city in France."]
        >>> result = pipeline.run("What is the capital of France?", chunks, budget=12)
        >>> result.text, result.tokens, result.budget, result.tokens_full
        ('[1] Paris is the capital of France.', 10, 12, 20)
        >>> [(c.id, c.text) for c in result.chunks]
        [('a', 'Paris is the capital of France.')]

        ``timeout`` (seconds; None, the default, for no limit) bounds the run's time: the run
        checks it between steps and inside the long loops (:mod:`optimizer.deadline`), and once
        past it stops there and raises :class:`~optimizer.deadline.OptimizerTimeout` (a
        ``TimeoutError``), within about a tenth of a second of the limit. A run that ends in
        time returns exactly what it returns without a ``timeout``.

        >>> from optimizer import OptimizerTimeout
        >>> try:
        ...     pipeline.run("capital?", [f"Town {i} is in France." for i in range(1000)], timeout=0)
        ... except OptimizerTimeout as exc:
        ...     print(exc.seconds, exc.where)
        0.0 after counting the full context

        ``timeout`` may also be a :class:`~optimizer.deadline.Deadline` of the caller's own (``Deadline(math.inf)``
        for no limit), so another thread can stop the run early: after ``deadline.stop(why)`` the run's next
        check raises :class:`~optimizer.deadline.OptimizerStopped` (not a ``TimeoutError``) saying ``why``. A
        run that ends before any stop returns exactly what it returns without one.

        >>> import math, threading
        >>> from optimizer import Deadline, OptimizerStopped
        >>> deadline = Deadline(math.inf)
        >>> watcher = threading.Thread(target=deadline.stop, args=("the client disconnected",))  # e.g. a server's
        >>> watcher.start(); watcher.join()
        >>> try:
        ...     pipeline.run("capital?", [f"Town {i} is in France." for i in range(1000)], timeout=deadline)
        ... except OptimizerStopped as exc:
        ...     print(exc.why)
        the client disconnected
        """
        deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout) if timeout is not None else None
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}: {query!r:.80}")
        check_no_surrogate(query, "query", fix=SURROGATE_FIX.replace("text", "query", 1))
        items = tuple(as_chunks(chunks))
        header_counts: dict[str, int] = {}  # a header's count is asked for again and again within a run
        overhead = RenderOverhead(self.renderer, self.tokenizer, header_counts)
        mode = score_mode(self.steps, self.score_direction)
        context = StageContext.for_chunks(items, tokenizer=self.tokenizer, render_overhead=overhead, deadline=deadline,
                                          score_mode=mode)
        context = dataclasses.replace(context, render_tokens=functools.partial(rendered_tokens, self.renderer, context))
        full_text = self.renderer.render(items).text
        tokens_full = self._count_full(full_text)
        context.cache.remember(full_text, tokens_full)
        context.check_deadline("after counting the full context")
        asked = parse_budget(budget) if budget is not None else self.budget
        hard_budget = resolve_budget(asked, tokens_full)
        empty_note = _empty_share_note(asked, hard_budget, tokens_full)
        context = dataclasses.replace(context, budget=hard_budget)
        run_budget, adaptive_notes = self._run_budget(query, items, context)
        whole = _is_whole_share(asked) and run_budget == hard_budget
        stage_budget = run_budget
        if whole:  # the stages may render the chunks in another order, a token or two longer per block
            stage_budget = _whole_share_room(items, context, self.renderer.separator, tokens_full)
        context = dataclasses.replace(context, budget=stage_budget)
        current, trace = self._run_stages(query, items, context)
        packed, pack_trace = self._pack(current, run_budget, context, given=items, trace=trace)  # the hard budget, whatever the stages had
        if whole:
            pack_trace = _whole_share_note(pack_trace, tokens_full)
        if self.adaptive is not None:
            pack_trace = dataclasses.replace(pack_trace, notes={**pack_trace.notes, "hard_budget": hard_budget, "adaptive": adaptive_notes})
        if empty_note:
            pack_trace = dataclasses.replace(pack_trace, notes={**pack_trace.notes, "warning": empty_note})
        scores_note = reading_note(mode, context.scores)
        if scores_note:
            pack_trace = dataclasses.replace(pack_trace, notes={**pack_trace.notes, "scores": scores_note})
        return Result(
            text=packed.rendered.text,
            tokens=packed.tokens,
            budget=run_budget,
            tokens_full=tokens_full,
            chunks=packed.chunks,
            spans=packed.rendered.spans,
            trace=(*trace, pack_trace),
            tokenizer=self.tokenizer.name,
        )

    def _run_budget(self, query: str, items: Sequence[Chunk], context: StageContext) -> tuple[int | None, dict[str, Any]]:
        """The budget of this call: the hard one, or the adaptive one when lower."""
        if self.adaptive is None:
            return context.budget, {}
        adaptive_tokens, notes = self.adaptive.budget_for(query, items, context)
        hard = context.budget
        return (adaptive_tokens if hard is None else min(hard, adaptive_tokens)), notes

    def _run_stages(
        self, query: str, items: tuple[Chunk, ...], context: StageContext
    ) -> tuple[tuple[Chunk, ...], list[StageTrace]]:
        """Run every step in order; the chunks left and one trace entry per step.

        Each step's output is checked (:meth:`_check_output`): a step may drop chunks, cut
        them and set their ``relevance``, nothing else; and the caller's chunks must still be
        as they came in (:func:`_check_unchanged`). An exception a step raises goes on with a
        note naming the step (``exc.__notes__``), its type unchanged.
        """
        trace: list[StageTrace] = []
        current = items
        states = chunk_states(items) if self.steps else []
        caller = {id(c) for c in items}
        for step_name, stage in self.steps:
            context.check_deadline(f"before stage {step_name!r}")
            # an earlier step's copies, watched like the caller's chunks (object.__setattr__ gets past the frozen dataclass)
            copies = [c for c in current if id(c) not in caller] if current is not items else []
            copy_states = chunk_states(copies)
            start = time.perf_counter()
            output = _call_step(step_name, stage, query, current, context)
            ms = (time.perf_counter() - start) * 1000
            _check_unchanged(step_name, items, states)
            _check_unchanged(step_name, copies, copy_states, copies=True)
            reasons: Mapping[str, str] = {}
            notes: Mapping[str, Any] = {}
            ranges: Mapping[str, Sequence[tuple[int, int, str]]] = {}
            if isinstance(output, StageOutput):
                ranges = output.range_reasons if isinstance(output.range_reasons, Mapping) else {}
                reasons, notes, output = _output_reasons(step_name, output), output.notes, _output_chunks(step_name, output)
            new = self._check_output(step_name, current, output)
            trace.append(self._trace(step_name, current, new, ms, context, reasons, notes, ranges))
            current = new
        return current, trace

    def _pack(self, chunks: tuple[Chunk, ...], budget: int | None, context: StageContext, *,
              given: Sequence[Chunk] = (), trace: Sequence[StageTrace] = ()) -> tuple[Packed, StageTrace]:
        """Pack into ``budget`` (the pipeline's, never a stage's) and the ``pack`` trace entry.

        A chunk ``given`` blank that a step left out without a reason of its own is recorded here, as
        the packer records the blank chunks it is handed (:func:`_unrecorded_blanks`).
        """
        context.check_deadline(f"before {PACK_STEP!r}")
        start = time.perf_counter()
        packed = pack(chunks, budget, self.renderer, context)
        ms = (time.perf_counter() - start) * 1000
        trace = StageTrace(
            name=PACK_STEP,
            tokens_in=sum(context.count(c.text) for c in chunks),
            tokens_out=packed.tokens,
            ms=ms,
            chunks_in=len(chunks),
            chunks_out=len(packed.chunks),
            dropped=_unrecorded_blanks(given, trace, packed.dropped) + packed.dropped,
            notes={"budget": budget, "cuts": packed.cuts},
        )
        return packed, trace

    __call__ = run

    @staticmethod
    def _check_output(step: str, before: tuple[Chunk, ...], output: Any) -> tuple[Chunk, ...]:
        """``output`` as a tuple once it is a list of kept parts of ``before``'s chunks, else an error naming ``step``.

        Kept parts: known ids, each once, and for each chunk what :func:`~optimizer.records.kept_problem`
        allows (the original text, the caller's score, title and metadata unchanged; the text its
        kept pieces of the original). A chunk returned as it came in is not checked again.
        """
        if isinstance(output, (str, bytes)) or not isinstance(output, Sequence):
            raise TypeError(f"stage {step!r} must return a list of Chunk or a StageOutput, got {type(output).__name__}")
        by_id = {c.id: c for c in before}
        seen: set[str] = set()
        for c in output:
            if not isinstance(c, Chunk):
                raise TypeError(f"stage {step!r} returned a {type(c).__name__}, not a Chunk: {c!r:.80}")
            source = by_id.get(c.id)
            if source is None:
                raise ValueError(f"stage {step!r} returned chunk id {c.id!r}, which was not in its input; stages may drop or cut chunks, not invent them")
            if c.id in seen:
                raise ValueError(f"stage {step!r} returned chunk id {c.id!r} twice")
            seen.add(c.id)
            problem = "" if c is source else kept_problem(source, c)
            if problem:
                raise ValueError(f"stage {step!r} returned chunk {c.id!r} whose {problem}; {KEPT_RULE}")
        return tuple(output)

    @staticmethod
    def _trace(
        step: str,
        before: tuple[Chunk, ...],
        after: tuple[Chunk, ...],
        ms: float,
        context: StageContext,
        reasons: Mapping[str, str],
        notes: Mapping[str, Any],
        range_reasons: Mapping[str, Sequence[tuple[int, int, str]]] | None = None,
    ) -> StageTrace:
        after_by_id = {c.id: c for c in after}
        dropped: list[Drop] = []
        removed = f"removed by {step}"
        for c in before:
            new = after_by_id.get(c.id)
            if new is None or not new.text:
                if is_blank(c) and c.id not in reasons:
                    continue  # nothing to remove: the packer says it was blank (_unrecorded_blanks), once
                dropped.append(Drop(c.id, reasons.get(c.id, removed)))
            elif new.kept_pieces != c.kept_pieces:
                reason = reasons.get(c.id, removed)
                ranges = (range_reasons or {}).get(c.id, ())
                for s, e in _removed_ranges(c, new):
                    if ranges:  # some ranges went for another reason (a repeat beside a cut for the budget)
                        dropped.extend(Drop(c.id, why, a, b) for a, b, why in _split_by_reason(c.original_text, s, e, ranges, reason))
                    else:
                        dropped.append(Drop(c.id, reason, s, e))
        return StageTrace(
            name=step,
            tokens_in=sum(context.count(c.text) for c in before),
            tokens_out=sum(context.count(c.text) for c in after),
            ms=ms,
            chunks_in=len(before),
            chunks_out=len(after),
            dropped=tuple(dropped),
            notes=dict(notes),
        )

    def __repr__(self) -> str:
        steps = ", ".join(f"{n}={_safe_repr(s)}" for n, s in self.steps)
        direction = f", score_direction={self.score_direction!r}" if self.score_direction != "auto" else ""
        return (f"Pipeline(name={self.name!r}, budget={self.budget!r}, tokenizer={self.tokenizer_name!r}{direction}, "
                f"steps=[{steps}])")


KEPT_RULE = (
    "a stage may drop chunks, cut them (chunk.keep(ranges) of the original text) and set relevance "
    "(dataclasses.replace(chunk, relevance=...)); it never rewrites text or changes the caller's score, title or metadata"
)
"""What :meth:`Pipeline._check_output` allows a stage to do to a chunk (said in its errors)."""

UNCHANGED_RULE = (
    "a stage never changes the chunks it is given, nor the lists, dicts and arrays in them: it returns new chunks "
    "(chunk.keep(ranges), dataclasses.replace(chunk, relevance=...)), works on copies (v = chunk.embedding / norm, "
    "not chunk.embedding /= norm) and keeps its own state in context.cache.memo(name)"
)
"""What :func:`_check_unchanged` asks of a stage (said in its errors)."""


def _check_unchanged(step: str, chunks: Sequence[Chunk], states: Sequence[tuple[Any, ...]], *, copies: bool = False) -> None:
    """Raise ValueError naming ``step`` and the chunk when one of the caller's ``chunks`` changed in place.

    ``states`` are the chunks' :func:`~optimizer.records.chunk_states` before the first step,
    taken again after each step (about 0.4 µs a chunk). With ``copies``, ``chunks`` are the
    copies an earlier step made, recorded before ``step``.
    """
    if chunk_states(chunks) == states:
        return
    for c, state in zip(chunks, states):
        change = state_change(state, c)
        if change:
            what = f"chunk {state[0]!r} in place (a copy an earlier step made)" if copies else f"the caller's chunk {state[0]!r} in place"
            raise ValueError(f"stage {step!r} changed {what}: its {change}; {UNCHANGED_RULE}")


def _qualname(stage: Any) -> str:
    """``module.QualName`` of a stage's class (of the function itself for a plain function).

    >>> from optimizer.stages.rerank import BM25Rerank
    >>> _qualname(BM25Rerank())
    'optimizer.stages.rerank.BM25Rerank'
    """
    owner = stage if inspect.isroutine(stage) else type(stage)
    return f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', type(stage).__name__)}"


def notes_of(exc: BaseException) -> list[str]:
    """An exception's notes as text (``exc.__notes__``; the pipeline adds one naming the step that raised)."""
    return [str(note) for note in getattr(exc, "__notes__", None) or ()]


def with_notes(exc: BaseException) -> str:
    """An exception's message, then its notes (e.g. which stage raised it), joined by ``"; "``.

    >>> exc = ValueError("bad chunk id 'a'")
    >>> exc.add_note("in stage 'buggy' (my_stages.Buggy)")
    >>> with_notes(exc), with_notes(KeyError("k"))
    ("bad chunk id 'a'; in stage 'buggy' (my_stages.Buggy)", "'k'")
    """
    return "; ".join(part for part in [str(exc), *notes_of(exc)] if part)


def _call_step(step: str, stage: Any, query: str, chunks: tuple[Chunk, ...], context: StageContext) -> Any:
    """``stage(query, chunks, context)``; an exception it raises gets a note naming ``step``, its type unchanged.

    >>> class Broken:
    ...     name = "broken"
    ...     def __call__(self, query, chunks, context):
    ...         return int("a")
    >>> try:
    ...     Pipeline([Broken()]).run("q", ["x"])
    ... except ValueError as exc:
    ...     print(exc.__notes__)
    ["in stage 'broken' (optimizer.pipeline.Broken)"]
    """
    try:
        return stage(query, chunks, context)
    except Exception as exc:
        exc.add_note(f"in stage {step!r} ({_qualname(stage)})")
        raise


def _output_chunks(step: str, output: StageOutput) -> Sequence[Any]:
    """The chunks of a step's :class:`StageOutput`, once they are a list (not a generator or a set).

    >>> _output_chunks("mine", StageOutput(chunks=(c for c in [])))
    Traceback (most recent call last):
    ...
    TypeError: stage 'mine' returned a StageOutput whose chunks is a generator; chunks must be a list of Chunk in order, e.g. StageOutput(chunks=list(...))
    """
    chunks = output.chunks
    if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence):
        raise TypeError(
            f"stage {step!r} returned a StageOutput whose chunks is {with_article(type(chunks).__name__)}; "
            "chunks must be a list of Chunk in order, e.g. StageOutput(chunks=list(...))"
        )
    return chunks


def _output_reasons(step: str, output: StageOutput) -> Mapping[str, str]:
    """The reasons of a step's :class:`StageOutput`, once they map chunk ids to strings (what the trace and its JSON hold).

    >>> _output_reasons("mine", StageOutput(chunks=[], reasons={"b": 0.2}))
    Traceback (most recent call last):
    ...
    TypeError: stage 'mine' gave chunk 'b' the drop reason 0.2, a float; a reason must be a string, e.g. str(value) or f"score {value:.2f} below the cut" (leave the chunk out of reasons for 'removed by mine')
    """
    reasons = output.reasons
    if not isinstance(reasons, Mapping):
        raise TypeError(
            f"stage {step!r} returned a StageOutput whose reasons is {with_article(type(reasons).__name__)}; reasons must map "
            "each dropped chunk's id to why (a string), e.g. StageOutput(chunks, reasons={chunk.id: 'off topic'})"
        )
    for chunk_id, reason in reasons.items():
        if not isinstance(reason, str):
            raise TypeError(
                f"stage {step!r} gave chunk {chunk_id!r} the drop reason {_safe_repr(reason):.80}, "
                f"{with_article(type(reason).__name__)}; a reason must be a string, e.g. str(value) or "
                f"f\"score {{value:.2f}} below the cut\" (leave the chunk out of reasons for 'removed by {step}')"
            )
    return reasons


def _safe_repr(obj: Any) -> str:
    """``repr(obj)``, or a placeholder naming the error when that raises (a repr never raises).

    >>> class Bad:
    ...     def __repr__(self):
    ...         raise AttributeError("no n")
    >>> _safe_repr(Bad())
    '<Bad (repr raised AttributeError: no n)>'
    """
    try:
        return repr(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} (repr raised {type(exc).__name__}: {exc})>"


def _step_params(name: str, stage: Any) -> dict[str, Any]:
    """``stage``'s settings (:func:`~optimizer.stage.stage_params`); an error naming step ``name`` when they cannot be read."""
    try:
        return stage_params(stage)
    except AttributeError as exc:
        raise AttributeError(f"cannot read the settings of step {name!r}: {exc}") from exc


def _config_tokenizer(name: Any) -> Any:
    """A config's ``tokenizer`` as a tokenizer; a name that does not load says to pass ``tokenizer=``.

    A config saved from a pipeline with a tokenizer object of your own holds only that
    object's name, which no tokenizer of ragtrim's has.
    """
    if not isinstance(name, str):
        return name
    try:
        return get_tokenizer(name)
    except ValueError as exc:
        raise ValueError(
            f"{exc}. If this pipeline was saved with a tokenizer object of your own, the file records only its name "
            f"{name!r}: pass the object again, Pipeline.load(path, tokenizer=MyTokenizer()) (or from_config(..., tokenizer=...))"
        ) from None


def _adaptive_budget(value: Any) -> AdaptiveBudget | None:
    """``adaptive`` as given to :class:`Pipeline`: None, an :class:`AdaptiveBudget` or its settings as a mapping."""
    if value is None or isinstance(value, AdaptiveBudget):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"adaptive must be None (a fixed budget), an AdaptiveBudget or a mapping of its settings such as "
            f"{{'mass': 0.9}}, got {type(value).__name__}: {value!r:.80}"
        )
    return AdaptiveBudget.from_dict(value)


def _config_steps(steps: Any) -> list[tuple[str, Any]]:
    """The ``(name, stage)`` pairs of a config's ``steps``: a list of stage names or ``{stage, name, params}`` mappings."""
    if steps is None:
        return []
    if isinstance(steps, (str, Mapping)) or not isinstance(steps, Sequence):
        raise ValueError(
            f"steps must be a list of stage names or {{stage, params}} mappings, got {type(steps).__name__}: {steps!r:.80}; "
            "write e.g. steps: [rerank-bm25] (YAML: one '- rerank-bm25' line per step)"
        )
    return [_config_step(i, step) for i, step in enumerate(steps)]


def _config_step(i: int, step: Any) -> tuple[str, Any]:
    """Step ``#i`` of a config built: a stage name, or a mapping with ``stage`` and optional ``name`` and ``params``."""
    if isinstance(step, str):
        step = {"stage": step}
    if not isinstance(step, Mapping) or "stage" not in step:
        raise ValueError(f"step #{i} must be a stage name or a mapping with 'stage', got {step!r}")
    stage_name = step["stage"]
    if not isinstance(stage_name, str):
        raise ValueError(f"step #{i}: stage must be a stage name such as 'rerank-bm25' ('ragtrim stages' lists them), got {stage_name!r}")
    extra = set(step) - {"stage", "name", "params"}
    if extra:
        raise ValueError(f"step #{i} ({stage_name!r}) has unknown keys {sorted(extra)}; use stage, name, params")
    params = step.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"step #{i} ({stage_name!r}): params must be a mapping of setting: value, got {type(params).__name__}: {params!r:.80}; "
            "in YAML write the settings indented under params: without '- ' in front"
        )
    name = step.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"step #{i} ({stage_name!r}): name must be a string, got {name!r}")
    stage = make_stage(stage_name, **params)
    return name or _step_name(stage), stage


def _split_by_reason(text: str, start: int, end: int, ranges: Sequence[tuple[int, int, str]],
                     default: str) -> list[tuple[int, int, str]]:
    """``text[start:end]`` (a removed range) as ``(start, end, reason)`` pieces, each with its stage range reason or ``default``.

    Adjacent removed sentences come back as one range; when one was a repeat and the next was cut
    for the budget, each piece keeps its own reason. White space at a piece's ends is left out.

    >>> _split_by_reason("Aa. Bb. Cc.", 0, 11, [(4, 7, "repeat")], "budget")
    [(0, 3, 'budget'), (4, 7, 'repeat'), (8, 11, 'budget')]
    """
    cuts = sorted({start, end, *(p for a, b, _ in ranges for p in (a, b) if start < p < end)})
    pieces: list[tuple[int, int, str]] = []
    for a, b in zip(cuts, cuts[1:]):
        why = next((r for s, e, r in ranges if s <= a and b <= e), default)
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a >= b:
            continue
        if pieces and pieces[-1][2] == why and not text[pieces[-1][1]:a].strip():
            pieces[-1] = (pieces[-1][0], b, why)
        else:
            pieces.append((a, b, why))
    return pieces


def _is_whole_share(asked: Budget | None) -> bool:
    """Whether ``asked`` is the share 1.0: the whole context, whatever order the stages render it in."""
    return isinstance(asked, float) and asked == 1.0


def _whole_share_room(items: Sequence[Chunk], context: StageContext, separator: str, tokens_full: int) -> int:
    """Tokens the stages get at ``budget=1.0``: room for ``items`` rendered in any order (the packer gets ``tokens_full``).

    The share resolves against the full context rendered in input order, but a stage that
    reorders the chunks (a rerank) renders the same text differently: tokens merge at other
    block joins and a title shared by neighbours may be printed twice. Against the input-order
    count alone, a select stage would drop a whole chunk for one or two tokens. This bound counts
    each block apart (its text, its header with the title, a separator), as the stages' own
    estimates do, plus a token per block for a longer marker. The packer still fills the hard
    budget, the full context's exact count (DESIGN.md: the budget is never exceeded), so a
    reordered context that renders longer loses its last token or two by the packer's usual cuts.
    """
    live = visible(items)
    blocks = sum(context.count(c.text) + context.overhead([c]) for c in live)
    joins = max(len(live) - 1, 0) * context.count(separator)
    return max(tokens_full, blocks + joins + len(live))


def _unrecorded_blanks(given: Sequence[Chunk], trace: Sequence[StageTrace], packed: Sequence[Drop]) -> tuple[Drop, ...]:
    """The packer's blank record (:data:`~optimizer.packer.BLANK_REASON`) for each chunk ``given`` blank that no
    step, nor the packer, dropped whole with a reason: a step that leaves out a chunk that came in blank
    removes nothing (:meth:`Pipeline._trace` does not report it), so it is reported once, here.

    >>> _unrecorded_blanks([Chunk(id="a", text=""), Chunk(id="b", text="x")], [], [])
    (Drop(chunk_id='a', reason='blank: the chunk has no text (empty or white space only), nothing to render', start=None, end=None),)
    """
    blank = [c.id for c in given if is_blank(c)]
    if not blank:
        return ()
    recorded = {d.chunk_id for d in (*(d for t in trace for d in t.dropped), *packed) if d.start is None}
    return tuple(Drop(i, BLANK_REASON) for i in blank if i not in recorded)


def _whole_share_note(pack_trace: StageTrace, tokens_full: int) -> StageTrace:
    """The ``pack`` trace of a ``budget=1.0`` run, saying so when the packer cut for the budget.

    The budget is the full context's exact count in input order; in the stages' order the kept
    chunks may render a token or two longer, and the packer then cuts (its ``dropped`` ranges say where).
    """
    if not any(d.reason.startswith("budget:") for d in pack_trace.dropped):
        return pack_trace
    note = (f"budget=1.0 is the full context's exact count in input order ({tokens_full} tokens); in the stages' order "
            "the kept chunks render longer, so the packer cut to fit (see the budget drops)")
    return dataclasses.replace(pack_trace, notes={**pack_trace.notes, "whole_share": note})


def _empty_share_note(asked: Budget | None, tokens: int | None, tokens_full: int) -> str:
    """A warning (also issued) when a share of a non-empty context rounds down to 0 tokens, else ``""``."""
    if not isinstance(asked, float) or tokens != 0 or tokens_full <= 0:
        return ""
    note = (
        f"budget share {asked!r} of the full context's {tokens_full} tokens rounds down to 0 tokens, so the context "
        f"is empty; use a share of at least {smallest_share(tokens_full)!r} or a number of tokens (e.g. budget=300)"
    )
    warnings.warn(note, UserWarning, stacklevel=3)
    return note


def plain_settings(value: Any) -> Any:
    """Settings as YAML/TOML/JSON can hold them: tuples become lists, mappings plain dicts.

    >>> plain_settings({"methods": ("bm25", "static"), "k": 60})
    {'methods': ['bm25', 'static'], 'k': 60}
    """
    if isinstance(value, (list, tuple)):
        return [plain_settings(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain_settings(v) for k, v in value.items()}
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):  # a numpy scalar
        return value.item()
    return value


PLAIN_TYPES = (str, bool, int, float, type(None))
"""What a saved setting may be, besides lists and string-keyed dicts of these."""


def check_plain_steps(steps: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError naming the step and the setting when a :meth:`Pipeline.to_config` step's setting is not plain data.

    >>> import re
    >>> check_plain_steps([{"stage": "drop-regex", "params": {"pattern": re.compile("Lyon")}}])
    Traceback (most recent call last):
    ...
    ValueError: cannot save step 'drop-regex': its setting 'pattern' is re.compile('Lyon'), a Pattern, which YAML, TOML and JSON cannot hold; give the stage plain settings (str, number, bool, None, lists and dicts of them) and store each as given (self.pattern = pattern), keeping an object __init__ builds from it under another name (self._pattern)
    """
    for step in steps:
        for key, value in (step.get("params") or {}).items():
            bad = _not_plain(value)
            if bad is not None:
                raise ValueError(
                    f"cannot save step {step.get('name', step['stage'])!r}: its setting {key!r} "
                    f"{'is' if bad is value else 'holds'} {bad!r:.80}, {with_article(type(bad).__name__)}, which YAML, TOML "
                    "and JSON cannot hold; give the stage plain settings (str, number, bool, None, lists and dicts of them) "
                    f"and store each as given (self.{key} = {key}), keeping an object __init__ builds from it under another name "
                    f"(self._{key})"
                )


def _not_plain(value: Any) -> Any:
    """The first part of ``value`` that is not plain data (see :data:`PLAIN_TYPES`), or None."""
    if isinstance(value, list):
        return next((bad for bad in map(_not_plain, value) if bad is not None), None)
    if isinstance(value, dict):
        return next((bad for bad in map(_not_plain, value.values()) if bad is not None), None)
    return None if isinstance(value, PLAIN_TYPES) else value


def _to_toml(config: Mapping[str, Any], steps: Sequence[tuple[str, Any]]) -> str:
    """``config`` as TOML (``tomli-w``); ``steps`` are the pipeline's ``(name, stage)`` pairs, in the config's order.

    TOML has no null: a None setting is left out when the stage's default is None too (loading
    gives None again), and refused otherwise (:func:`_toml_params`).

    >>> import tomllib
    >>> pipeline = Pipeline([make_stage("compress-sentences", dense_linked=None)])
    >>> tomllib.loads(_to_toml(pipeline.to_config(), pipeline.steps))["steps"][0]["params"].get("dense_linked", "left out")
    'left out'
    """
    import tomli_w

    out = dict(config)
    out["steps"] = [
        {**entry, "params": _toml_params(name, stage, entry["params"])} if entry.get("params") else entry
        for (name, stage), entry in zip(steps, config.get("steps", []))
    ]
    try:
        return tomli_w.dumps(out)
    except TypeError as exc:  # plain data that TOML still cannot hold, e.g. a None inside a list
        raise ValueError(f"cannot write this pipeline as TOML ({exc}); save it as YAML or JSON, which can hold it") from None


def _toml_params(name: str, stage: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Step ``name``'s settings for TOML: a None setting left out if its default is None, else a ValueError saying what to do.

    >>> _toml_params("compress", make_stage("compress-sentences"), {"hops": 2, "model": None})
    Traceback (most recent call last):
    ...
    ValueError: cannot save step 'compress' as TOML: its setting 'model' is None, which TOML cannot hold, and leaving it out would load its default 'static'; save the pipeline as .yaml or .json (both keep null)
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is not None:
            out[key] = value
            continue
        default = _setting_default(stage, key)
        if default is not None:
            then = "the setting has no default to fall back to" if default is inspect.Parameter.empty else f"leaving it out would load its default {default!r}"
            raise ValueError(
                f"cannot save step {name!r} as TOML: its setting {key!r} is None, which TOML cannot hold, and {then}; "
                "save the pipeline as .yaml or .json (both keep null)"
            )
    return out


def _setting_default(stage: Any, key: str) -> Any:
    """The default of ``stage``'s constructor argument ``key`` (``inspect.Parameter.empty`` when there is none or no such argument)."""
    try:
        parameter = inspect.signature(type(stage).__init__).parameters.get(key)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if parameter is None else parameter.default


__all__ = ["Pipeline", "check_plain_steps", "plain_settings", "unambiguous_budget"]
