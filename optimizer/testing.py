"""A conformance check for stages: run it against your own stage before you ship it.

>>> from optimizer.testing import check_stage
>>> from optimizer.stages.basic import TopK
>>> check_stage(TopK(k=2))  # raises StageConformanceError on failure; returns the skipped checks
[]

Each check is a small function; :func:`check_stage` runs them all and raises
:class:`StageConformanceError` listing every failure (or returns the list of skipped
checks). The checks: empty input, one chunk, a chunk far larger than the budget, ids that
look alike, unicode/CJK/emoji, code and tables, determinism, no mutation of the input,
output ids a subset of input ids, settings stored unchanged (``get_params``), the run
context left alone, a run with a renderer's overhead, the hard budget of a pipeline built
around the stage (with a plain and a costly renderer), and, once the stage is registered,
``make_stage(name)`` and a YAML/TOML/JSON save/load round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optimizer.records import Chunk, chunk_states, kept_problem
from optimizer.stage import StageContext, StageOutput

QUERY = "When was the Eiffel Tower completed and how tall is it?"

CASES: dict[str, list[Chunk]] = {
    "one chunk": [Chunk(id="only", text="The Eiffel Tower was completed in 1889. It is 330 metres tall.", title="Eiffel Tower", score=0.9)],
    "typical": [
        Chunk(id="c1", text="The Eiffel Tower was completed in March 1889 for the World's Fair.", title="Eiffel Tower", score=0.8,
              metadata={"tags": ["landmark", "paris"]}),  # a list a stage must not append to
        Chunk(id="c2", text="Gustave Eiffel's company designed and built the tower. It is 330 metres tall.", title="Eiffel Tower", score=0.7),
        Chunk(id="c3", text="Paris is the capital of France. It lies on the Seine.", title="Paris", score=0.2),
        Chunk(id="c4", text="The Statue of Liberty was dedicated in 1886 in New York.", title="Statue of Liberty", score=0.1),
    ],
    "duplicate texts": [
        Chunk(id="d1", text="The Eiffel Tower was completed in 1889.", score=0.5),
        Chunk(id="d2", text="The Eiffel Tower was completed in 1889.", score=0.5),
        Chunk(id="d1 ", text="The Eiffel Tower was completed in 1889!", score=0.4),
    ],
    "unicode": [
        Chunk(id="u1", text="埃菲尔铁塔于1889年建成。它高330米。", title="埃菲尔铁塔"),
        Chunk(id="u2", text="La tour Eiffel a été achevée en 1889 🎉. Elle mesure 330 m.", title="Tour Eiffel"),
        Chunk(id="u3", text="Ейфелева вежа — 1889 рік. 👩‍👩‍👧‍👦 Zero\u200bwidth and combining e\u0301."),
    ],
    "code and tables": [
        Chunk(id="code", text="def height():\n    return 330  # metres\n\nprint(height())"),
        Chunk(id="table", text="| tower | year | height |\n|---|---|---|\n| Eiffel | 1889 | 330 m |\n| Tokyo | 1958 | 333 m |"),
    ],
    "empty texts": [Chunk(id="e1", text=""), Chunk(id="e2", text="   "), Chunk(id="e3", text="Completed in 1889.")],
    "huge chunk": [
        Chunk(
            id="huge",
            text=" ".join(f"Sentence {i} says the tower has {i} rivets and was completed in 1889." for i in range(200)),
            score=1.0,
        ),
        Chunk(id="small", text="The tower is 330 metres tall.", score=0.5),
    ],
}


class StageConformanceError(AssertionError):
    """A stage failed one or more conformance checks; the message lists them."""


@dataclass(frozen=True)
class Failure:
    check: str
    case: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check} / {self.case}] {self.message}"


def _chunks(out: Any) -> list[Chunk]:
    if isinstance(out, StageOutput):
        return list(out.chunks)
    return list(out)


def _context(chunks: Sequence[Chunk], budget: int | None, renderer: Any = None) -> StageContext:
    from optimizer.tokenizer import get_tokenizer

    tokenizer = get_tokenizer("cl100k_base")
    overhead = functools.partial(renderer.overhead, tokenizer=tokenizer) if renderer is not None else None
    return StageContext.for_chunks(chunks, tokenizer=tokenizer, budget=budget, render_overhead=overhead)


def _run(stage: Any, chunks: Sequence[Chunk], budget: int | None) -> list[Chunk]:
    return _chunks(stage(QUERY, tuple(chunks), _context(chunks, budget)))


def _snapshot(chunks: Sequence[Chunk]) -> list[tuple[Any, ...]]:
    """What :class:`~optimizer.Pipeline` compares after each step to see a stage change the caller's chunks in place."""
    return chunk_states(chunks)


def check_stage(stage: Any, *, budgets: Sequence[int | None] = (None, 16, 200)) -> list[str]:
    """Run every conformance check on ``stage``; raise :class:`StageConformanceError` on failure.

    Returns the names of the checks that were skipped: the ``make_stage`` and save/load
    round trips need ``stage.name`` to be registered (``register_stage(YourStage)``), and
    are skipped, not failed, before that.
    """
    failures: list[Failure] = []
    checks: list[Callable[[Any, list[Failure]], None]] = [
        _check_has_name_and_params,
        _check_empty,
        _check_cases(budgets),
        _check_context_untouched,
        _check_with_overhead,
        _check_pipeline_budget,
    ]
    skipped: list[str] = []
    if _is_registered(stage):
        checks += [_check_make_stage, _check_save_load]
    else:
        skipped += ["make_stage round trip", "save/load round trip"]
    for check in checks:
        try:
            check(stage, failures)
        except Exception as exc:  # a crash is a failure, reported with the check's name
            failures.append(Failure(getattr(check, "__name__", "check"), "-", f"raised {type(exc).__name__}: {exc}"))
    if failures:
        raise StageConformanceError(
            f"{type(stage).__name__} failed {len(failures)} conformance check(s):\n" + "\n".join(f"  {f}" for f in failures)
        )
    return skipped


def _is_registered(stage: Any) -> bool:
    from optimizer.registry import list_stages

    return getattr(stage, "name", None) in list_stages()


def _check_has_name_and_params(stage: Any, failures: list[Failure]) -> None:
    name = getattr(stage, "name", None)
    if not isinstance(name, str) or not name:
        failures.append(Failure("name", "-", "stage has no non-empty string 'name'"))
    getter = getattr(stage, "get_params", None)
    if not callable(getter):
        failures.append(Failure("params", "-", "stage has no get_params()"))
        return
    params = getter()
    try:
        clone = type(stage)(**params)
    except Exception as exc:
        failures.append(Failure("params", "-", f"type(stage)(**get_params()) failed: {exc}"))
        return
    if clone.get_params() != params:
        failures.append(Failure("params", "-", "settings are not stored unchanged: rebuilding from get_params() differs"))


def _check_empty(stage: Any, failures: list[Failure]) -> None:
    for budget in (None, 10):
        out = _run(stage, [], budget)
        if out:
            failures.append(Failure("empty input", f"budget={budget}", f"expected no chunks, got {len(out)}"))


def _check_cases(budgets: Sequence[int | None]) -> Callable[[Any, list[Failure]], None]:
    def _check_cases_inner(stage: Any, failures: list[Failure]) -> None:
        for case, chunks in CASES.items():
            for budget in budgets:
                label = f"{case}, budget={budget}"
                before = _snapshot(chunks)
                try:
                    first = _run(stage, chunks, budget)
                except Exception as exc:
                    failures.append(Failure("runs", label, f"raised {type(exc).__name__}: {exc}"))
                    continue
                if _snapshot(chunks) != before:
                    failures.append(Failure("no mutation", label, "the input chunks changed"))
                ids = [c.id for c in first]
                known = {c.id for c in chunks}
                if any(not isinstance(c, Chunk) for c in first):
                    failures.append(Failure("output type", label, "returned something that is not a Chunk"))
                    continue
                if set(ids) - known:
                    failures.append(Failure("ids", label, f"invented ids {sorted(set(ids) - known)}"))
                if len(ids) != len(set(ids)):
                    failures.append(Failure("ids", label, "returned an id twice"))
                failures += _kept_failures(chunks, first, label)
                second = _run(stage, chunks, budget)
                if [(c.id, c.text, c.relevance) for c in second] != [(c.id, c.text, c.relevance) for c in first]:
                    failures.append(Failure("determinism", label, "two runs on the same input differ"))

    return _check_cases_inner


def _kept_failures(chunks: Sequence[Chunk], out: Sequence[Chunk], label: str) -> list[Failure]:
    """A failure for each chunk of ``out`` that is not a kept part of its input chunk: the check
    :class:`~optimizer.Pipeline` makes after every step (:func:`~optimizer.records.kept_problem`)."""
    by_id = {c.id: c for c in chunks}
    failures = []
    for c in out:
        problem = kept_problem(by_id[c.id], c) if c.id in by_id else ""
        if problem:
            check = "caller fields" if problem.startswith(("score", "title", "metadata")) else "provenance"
            failures.append(Failure(check, label, f"chunk {c.id!r}: {problem}"))
    return failures


def _check_pipeline_budget(stage: Any, failures: list[Failure]) -> None:
    """Around the stage, a pipeline keeps the hard budget (also with a costly renderer) and exact spans."""
    from optimizer.pipeline import Pipeline
    from optimizer.render import Renderer

    for renderer in (Renderer(), Renderer(separator=HEAVY_RENDERER_SEPARATOR)):
        _check_pipeline_budget_with(Pipeline([("stage", stage)], renderer=renderer), failures)


def _check_pipeline_budget_with(pipeline: Any, failures: list[Failure]) -> None:
    for case, chunks in CASES.items():
        for budget in (1, 7, 33, 120):
            result = pipeline.run(QUERY, chunks, budget=budget)
            if result.tokens > budget or pipeline.tokenizer.count(result.text) != result.tokens:
                failures.append(Failure("hard budget", f"{case}, budget={budget}", f"{result.tokens} tokens"))
            for span in result.spans:
                source = {c.id: c.original_text for c in chunks}[span.chunk_id]
                if result.text[span.context_start : span.context_end] != source[span.start : span.end]:
                    failures.append(Failure("spans", f"{case}, budget={budget}", f"span {span} does not map back"))


HEAVY_RENDERER_SEPARATOR = "\n\n----- next source -----\n\n"
"""A separator that costs several tokens, so a stage that ignores the renderer's overhead shows."""


def _check_with_overhead(stage: Any, failures: list[Failure]) -> None:
    """Called with a renderer's overhead in the context, the stage still returns valid chunks."""
    from optimizer.render import Renderer

    renderer = Renderer(separator=HEAVY_RENDERER_SEPARATOR)
    for case, chunks in CASES.items():
        for budget in (12, 60):
            context = _context(chunks, budget, renderer)
            out = _chunks(stage(QUERY, tuple(chunks), context))
            known = {c.id for c in chunks}
            if any(not isinstance(c, Chunk) or c.id not in known for c in out):
                failures.append(Failure("renderer overhead", f"{case}, budget={budget}", "returned a non-Chunk or an unknown id"))


def _context_state(context: StageContext) -> tuple[Any, ...]:
    return (context.budget, context.tokenizer.name, dict(context.input_order), context.render_overhead, context.cache)


def _check_context_untouched(stage: Any, failures: list[Failure]) -> None:
    """The run context is read-only: the budget the pipeline packs with cannot be changed by a stage."""
    import dataclasses

    for case, chunks in CASES.items():
        context = _context(chunks, 33)
        before = _context_state(context)
        try:
            stage(QUERY, tuple(chunks), context)
        except (dataclasses.FrozenInstanceError, TypeError, AttributeError) as exc:
            if isinstance(exc, dataclasses.FrozenInstanceError) or "does not support item assignment" in str(exc):
                failures.append(Failure("run context", case, f"the stage wrote to the read-only run context ({exc}); share state through context.cache.memo(name)"))
                return
            raise
        if _context_state(context) != before:
            failures.append(Failure("run context", case, "the run context changed (budget, tokenizer, input_order or overhead)"))


def _check_make_stage(stage: Any, failures: list[Failure]) -> None:
    """``make_stage(stage.name, **stage.get_params())`` rebuilds an equal stage of the same class."""
    from optimizer.registry import make_stage

    clone = make_stage(stage.name, **stage.get_params())
    if type(clone) is not type(stage):
        failures.append(Failure("make_stage", stage.name, f"built a {type(clone).__name__}, not a {type(stage).__name__}"))
    elif clone.get_params() != stage.get_params():
        failures.append(Failure("make_stage", stage.name, "rebuilt stage has other settings"))


def _check_save_load(stage: Any, failures: list[Failure]) -> None:
    """A pipeline around the stage saved as YAML, TOML and JSON loads back to the same stage and output."""
    import tempfile
    from pathlib import Path

    from optimizer.pipeline import Pipeline, plain_settings

    pipeline = Pipeline([stage], budget=33)
    expected = pipeline.run(QUERY, CASES["typical"]).text
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".yaml", ".toml", ".json"):
            path = Path(tmp) / f"pipeline{suffix}"
            pipeline.save(path)
            loaded = Pipeline.load(path)
            (_, again), = loaded.steps
            if type(again) is not type(stage) or plain_settings(again.get_params()) != plain_settings(stage.get_params()):
                failures.append(Failure("save/load", suffix, f"loaded {again!r}, saved {stage!r}"))
            elif loaded.run(QUERY, CASES["typical"]).text != expected:
                failures.append(Failure("save/load", suffix, "the loaded pipeline's output differs"))
