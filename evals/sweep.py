"""Run pipelines over a dataset at several budgets, then (optionally) a reader on the contexts.

Per example first, aggregate separately: :func:`run_eval` makes one :class:`ExampleRow` per
(example, pipeline, budget), then :func:`evals.aggregate.aggregate` turns the rows into
per-arm metrics with paired deltas versus ``full``. ``full`` always runs once, without a
budget, as the reference.

A pipeline that raises on one example (a native model failing in ``thorough``, a bug in a custom
stage) does not end the sweep: that row records the error (``pipeline_error``, no context, no
metrics), the reader is not asked for it, and the arm counts it (``pipeline_failures``); only
``KeyboardInterrupt`` and ``SystemExit`` stop the sweep.

>>> from types import SimpleNamespace
>>> from optimizer import Chunk
>>> ex = SimpleNamespace(id="q1", question="Capital of France?", answers=("Paris",),
...     chunks=(Chunk(id="a", text="Lyon is big."), Chunk(id="b", text="Paris is the capital.")),
...     gold_ids=("b",), meta={})
>>> run = run_eval(SimpleNamespace(name="tiny", examples=[ex]), ["truncate"], [0.5], progress=False)
>>> [(r.pipeline, r.budget, r.answer_recall) for r in run.rows]
[('full', None, 1), ('truncate', 0.5, 0)]
>>> run.run_for("truncate", 0.5).metrics.answer_recall
0.0
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from evals import metrics as M
from evals.datasets import check_unique_ids
from evals.records import REFERENCE, Arm, ArmRun, ExampleRow, budget_key, is_reference
from evals.readers.prompt import DEFAULT_TEMPLATE, check_template, format_prompt
from evals.retrieval import all_gold_ids
from optimizer.budget import Budget, parse_budget
from optimizer.models import default_store, use_store
from optimizer.pipeline import Pipeline, check_plain_steps, with_notes
from optimizer.tokenizer import get_tokenizer
from optimizer.validate import non_negative_int, positive_int

@dataclass(frozen=True)
class EvalRun:
    """A finished sweep: per-example rows, the aggregated runs, and what produced them."""

    dataset: str
    n: int
    tokenizer: str
    reader: str
    reader_model: str | None
    prompt_template: str | None
    arms: tuple[Arm, ...]
    rows: tuple[ExampleRow, ...]
    runs: tuple[ArmRun, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    tokenizer_encoding: str | None = None
    reader_model_path: str | None = None  # the model file that answered, when the reader runs one (local)

    def run_for(self, pipeline: str, budget: Budget | None) -> ArmRun:
        """The aggregated run of one arm (the reference as ``("full", None)`` or as written, ``("full", 1.0)``)."""
        wanted = _arm(pipeline, budget)
        for run in self.runs:
            if run.arm == wanted:
                return run
        raise KeyError(f"no run for pipeline {pipeline!r} at budget {budget!r}; arms: {[a.label for a in self.arms]}")

    def rows_for(self, pipeline: str, budget: Budget | None) -> list[ExampleRow]:
        wanted = _arm(pipeline, budget)
        return [r for r in self.rows if r.arm == wanted]

    def to_results(self) -> dict[str, Any]:
        """The ``results.json`` document (DESIGN.md's contract plus extra keys).

        Each run also says whether its settings were chosen on this dataset (``in_sample``; with
        ``in_sample_note`` when they were, see :func:`in_sample`).
        """
        tuned = self.settings.get("tuned_on") or {}
        return {
            "dataset": self.dataset,
            "n": self.n,
            # DESIGN.md: the encoding by name (cl100k_base, o200k_base, hf:PATH); the name given (gpt-4o) apart.
            # tokenizer_encoding repeats it for readers of the layout before, where "tokenizer" was the name given.
            "tokenizer": self.tokenizer_encoding or self.tokenizer,
            "tokenizer_given": self.tokenizer,
            "tokenizer_encoding": self.tokenizer_encoding or self.tokenizer,
            "reader": self.reader,
            "reader_model": self.reader_model,
            "reader_model_path": self.reader_model_path,
            "prompt_template": self.prompt_template,
            **self.settings,
            "runs": [{**r.to_dict(), **in_sample(self.dataset, tuned.get(r.pipeline))} for r in self.runs],
        }


def _arm(pipeline: str, budget: Budget | None) -> Arm:
    """The arm asked for; the reference also by the budget ``results.json`` writes for it (1.0)."""
    return Arm(pipeline, None) if is_reference({"pipeline": pipeline, "budget": budget}) else Arm(pipeline, budget)


def in_sample(dataset: str, tuned: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"in_sample": bool}``, plus which data and how when a pipeline's settings were chosen on ``dataset``.

    >>> in_sample("hotpotqa", {"sets": ["hotpotqa", "2wiki"], "how": "hand settings", "preset": "default"})
    {'in_sample': True, 'in_sample_note': 'settings chosen on this set: hand settings', 'tuned_on': ['hotpotqa', '2wiki'], 'tuned_preset': 'default'}
    >>> in_sample("nq-multidoc", {"sets": ["hotpotqa"], "how": "x", "preset": "default"}), in_sample("x", None)
    ({'in_sample': False}, {'in_sample': False})
    """
    if not tuned or dataset not in tuned.get("sets", ()):
        return {"in_sample": False}
    return {"in_sample": True, "in_sample_note": f"settings chosen on this set: {tuned['how']}",
            "tuned_on": list(tuned["sets"]), "tuned_preset": tuned["preset"]}


@functools.lru_cache(maxsize=None)
def _preset_steps(name: str) -> str:
    """Preset ``name``'s steps as built (every setting filled in), as JSON to compare configs ("" if it cannot be built)."""
    try:
        return json.dumps(Pipeline.preset(name).to_config()["steps"], sort_keys=True, default=str)
    except (ImportError, ValueError, TypeError):  # e.g. an optional dependency missing: nothing to compare with
        return ""


def tuned_on(name: str, pipe: Pipeline) -> dict[str, Any] | None:
    """The data ``pipe``'s settings were chosen on (:func:`optimizer.presets.tuned_on`, with the ``preset``), or None.

    A pipeline counts as a tuned preset when its steps are that preset's, whatever its name, budget or
    adaptive rule (e.g. a custom config that puts an adaptive budget over ``default``'s steps).

    >>> tuned_on("default", Pipeline.preset("default"))["sets"][:2], tuned_on("truncate", Pipeline.preset("truncate"))
    (['hotpotqa', '2wiki'], None)
    """
    from optimizer.presets import TUNED_ON, tuned_on as preset_tuned_on

    steps = json.dumps(pipe.to_config()["steps"], sort_keys=True, default=str)
    for preset in dict.fromkeys([name, *TUNED_ON]):
        if preset in TUNED_ON and steps == _preset_steps(preset):
            return {**preset_tuned_on(preset), "preset": preset}
    return None


def resolve_pipelines(
    pipelines: Sequence[str | Pipeline], *, tokenizer: str
) -> list[tuple[str, Pipeline]]:
    """``[(label, Pipeline)]`` with ``full`` first; names checked against the presets.

    >>> [name for name, _ in resolve_pipelines(["truncate", "full"], tokenizer="cl100k_base")]
    ['full', 'truncate']
    """
    if isinstance(pipelines, (str, Pipeline)):
        pipelines = [pipelines]
    out: list[tuple[str, Pipeline]] = [(REFERENCE, Pipeline.preset(REFERENCE, tokenizer=tokenizer))]
    for p in pipelines:
        if isinstance(p, str):
            name = p.strip()
            if name == REFERENCE:
                continue
            pipe = Pipeline.preset(name, tokenizer=tokenizer)  # unknown names raise, listing the presets
        elif isinstance(p, Pipeline):
            name, pipe = p.name, p
            if pipe.tokenizer.name != get_tokenizer(tokenizer).name:
                raise ValueError(
                    f"pipeline {name!r} counts tokens with {pipe.tokenizer_name!r} but the eval uses {tokenizer!r}; "
                    "build it with the same tokenizer"
                )
        else:
            raise TypeError(f"pipelines must be preset names or Pipeline objects, got {type(p).__name__}: {p!r}")
        if name in (n for n, _ in out):
            raise ValueError(_twice(name, p))
        out.append((name, pipe))
    return out


def check_configs(resolved: Sequence[tuple[str, Pipeline]]) -> None:
    """Every pipeline's config can be built and written to ``results.json``, checked before any work.

    A custom stage whose settings cannot be read back (``self._n = n``), or hold an object JSON
    cannot (``self.pattern = re.compile(pattern)``), raises ValueError naming the pipeline, the step
    and the setting (the checks :meth:`~optimizer.pipeline.Pipeline.save` makes), instead of failing
    after the whole sweep with no results written.

    >>> check_configs(resolve_pipelines(["truncate"], tokenizer="cl100k_base"))
    """
    for name, pipe in resolved:
        try:
            config = pipe.to_config()  # names the step whose settings cannot be read
            check_plain_steps(config["steps"])  # names the step and the setting that is not plain data
            _to_json(config)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"pipeline {name!r}: its config cannot be written to results.json: {exc}") from exc


def _to_json(value: Any) -> str:
    """``value`` as ``results.json`` writes it (no NaN or infinity)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _twice(name: str, pipeline: str | Pipeline) -> str:
    """What to do when two pipelines of a sweep have the same name."""
    if isinstance(pipeline, str):
        return f"pipeline {name!r} is listed twice; list each preset once"
    return (
        f"two pipelines are named {name!r} (a custom pipeline takes its name from 'name:' in its config, else its file "
        "name); give each its own name: set 'name:' in the config, rename the file, or call Pipeline.renamed('...')"
    )


def make_arms(names: Sequence[str], budgets: Sequence[Any]) -> list[Arm]:
    """``full`` once (no budget), then every other pipeline at every budget, in the given order.

    >>> [a.label for a in make_arms(["full", "truncate"], [0.5, 300])]
    ['full', 'truncate@50%', 'truncate@300 tok']
    >>> [a.label for a in make_arms(["truncate"], [1.0, 2, 1.0, 2.0])]  # deduped by kind and value
    ['full', 'truncate@100%', 'truncate@2 tok']
    """
    parsed: dict[tuple[str, Budget | None], Budget] = {}  # deduped by (kind, value): 1.0 (whole context) is not 1 (token)
    for b in budgets:
        value = parse_budget(b)
        if value is None:
            raise ValueError(f"a sweep budget cannot be empty or 'full' ({b!r}); the full context always runs as the reference")
        parsed.setdefault(budget_key(value), value)
    arms = [Arm(REFERENCE, None)]
    for name in names:
        if name != REFERENCE:
            arms.extend(Arm(name, b) for b in parsed.values())
    return arms


def _kept_ids(result: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for span in result.spans:
        if span.end > span.start:
            seen.setdefault(span.chunk_id, None)
    return tuple(seen)


def run_eval(
    dataset: Any,
    pipelines: Sequence[str | Pipeline],
    budgets: Sequence[Any],
    *,
    reader: Any = None,
    tokenizer: str = "cl100k_base",
    sample: int | None = None,
    reader_arms: Collection[tuple[str, Budget | None]] | None = None,
    prices: Any = None,
    price_model: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    fresh_models: bool = True,
    reference_rows: Sequence[ExampleRow] | None = None,
) -> EvalRun:
    """Sweep ``pipelines`` × ``budgets`` over ``dataset`` and aggregate.

    Parameters
    ----------
    dataset:
        A :class:`evals.datasets.Dataset` (anything with ``name`` and ``examples`` whose items
        have ``id``, ``question``, ``answers``, ``chunks``, ``gold_ids``).
    pipelines:
        Preset names and/or :class:`~optimizer.pipeline.Pipeline` objects. ``full`` runs
        once, without a budget, whether listed or not.
    budgets:
        Shares in (0, 1] or token counts (see :func:`optimizer.budget.parse_budget`).
    reader:
        A :class:`evals.readers.Reader` or None (reader-free: recall, tokens, latency only).
    sample:
        Ask the reader only on the first ``sample`` examples (all arms see the same ones).
    reader_arms:
        ``(pipeline, budget)`` pairs the reader answers for (all arms when None; ``full`` is
        always included so every delta has its baseline).
    prices, price_model:
        A :class:`evals.cost.PriceTable` (the bundled one when None) and the model priced.
    resamples, seed:
        Paired bootstrap settings for the deltas' 95 % intervals.
    progress:
        Show progress bars on stderr.
    fresh_models:
        Run each arm (pipeline and budget) with models of its own (:meth:`~optimizer.models.ModelStore.fresh`:
        a new store, loaded by ``warm_up`` before the arm's first example and closed after it, that
        keeps only the models you :meth:`~optimizer.models.ModelStore.put` into the store in use), so
        its latency counts its own embedding work and none that an earlier arm memoized
        (``quality`` after ``default`` would reuse its static vectors, ``fitted-quality`` after
        ``quality`` its MiniLM ones, and a pipeline's second budget every vector of its first).
        The models are loaded once per arm; results are the same either way. False shares the
        store in use (:func:`~optimizer.models.use_store`, else the process's): faster sweeps,
        e.g. a tuner's, whose latencies then read earlier memos.
    reference_rows:
        The ``full`` rows of an earlier run on the same examples (``run.rows_for("full", None)``), with the same
        tokenizer and, when ``reader`` is given, answered by an equal reader (same model, settings and template):
        used as they are, so ``full`` is neither run nor read again (a tuner's later batches). Rows of other
        examples, or that no reader answered when ``reader`` is given, are refused.
    """
    from evals.aggregate import aggregate
    from evals.cost import load_prices

    examples = _examples(dataset)
    positive_int(resamples, "resamples", what="bootstrap resamples")  # checked now, not after the sweep
    non_negative_int(seed, "seed")
    if sample is not None:
        positive_int(sample, "sample", what="examples")
    reference = check_reference_rows(reference_rows, examples, reader, sample) if reference_rows is not None else []
    resolved = resolve_pipelines(pipelines, tokenizer=tokenizer)
    check_configs(resolved)  # results.json holds every config: one that cannot be written stops the eval now
    arms = make_arms([n for n, _ in resolved], budgets)
    wanted = reader_arm_set(arms, reader_arms) if reader is not None else set()
    table = prices if prices is not None else load_prices()
    price = table.price(price_model)
    template = reader.template if reader is not None else DEFAULT_TEMPLATE
    warm_up_all(resolved, fresh=fresh_models)
    to_run = [a for a in arms if not (reference and a.pipeline == REFERENCE)]  # given rows are not run again
    with _progress(progress) as bar:
        rows = sweep_rows(examples, resolved, to_run, template=template, bar=bar, fresh_models=fresh_models)
        if reader is not None:
            rows = _read(rows, examples, reader, wanted, sample, bar)
    rows = [*reference, *rows]
    runs = aggregate(rows, arms, usd_per_million=price.input_per_million, resamples=resamples, seed=seed)
    return EvalRun(
        dataset=str(getattr(dataset, "name", "dataset")),
        n=len(examples),
        tokenizer=tokenizer,
        tokenizer_encoding=dict(resolved)[REFERENCE].tokenizer.name,
        reader=reader.name if reader is not None else "none",
        reader_model=getattr(reader, "model", None) if reader is not None else None,
        reader_model_path=getattr(reader, "model_file", None) if reader is not None else None,
        prompt_template=template,
        arms=tuple(arms),
        rows=tuple(rows),
        runs=tuple(runs),
        settings={
            **sweep_settings(
                resolved, arms, wanted, table, price, resamples=resamples, seed=seed,
                sample=(min(sample, len(examples)) if sample is not None else len(examples)) if reader is not None else None,
            ),
            "chunk_scores": bool(getattr(dataset, "chunk_scores", False)),  # the file's chunk scores read (--chunk-scores)
        },
    )


def _examples(dataset: Any) -> list[Any]:
    """The dataset's examples: at least one, each id once (rows are paired, and questions found, by id)."""
    examples = list(dataset.examples)
    if not examples:
        raise ValueError(f"dataset {getattr(dataset, 'name', '?')!r} has no examples")
    check_unique_ids(examples, str(getattr(dataset, "name", "dataset")))
    return examples


def check_reference_rows(
    rows: Sequence[ExampleRow], examples: Sequence[Any], reader: Any, sample: int | None,
) -> list[ExampleRow]:
    """``rows`` as ``run_eval(reference_rows=...)`` takes them: the ``full`` rows of these examples, in their order, and
    answered by a reader (or failed) on the examples the reader is asked about when ``reader`` is given."""
    rows = list(rows)
    ids = [str(ex.id) for ex in examples]
    if [r.id for r in rows] != ids or any(r.arm != Arm(REFERENCE, None) for r in rows):
        raise ValueError(f"reference rows must be the {REFERENCE!r} rows of these {len(ids)} examples in their order "
                         f"(run.rows_for({REFERENCE!r}, None) of a run on the same dataset); got {len(rows)} rows")
    asked = ids[: sample if sample is not None else len(ids)]
    unread = [r.id for r in rows[: len(asked)] if not (r.reader_called or r.pipeline_error)]
    if reader is not None and unread:
        raise ValueError(f"reference rows: the reader did not answer for {len(unread)} examples (the first: {unread[0]!r}); "
                         "pass the rows of a run with the same reader, or leave reference_rows out")
    return rows


def sweep_rows(
    examples: Sequence[Any], resolved: Sequence[tuple[str, Pipeline]], arms: Sequence[Arm], *, template: str, bar: Any,
    fresh_models: bool = True,
) -> list[ExampleRow]:
    """One :class:`ExampleRow` per (example, arm), pipeline by pipeline; with ``fresh_models`` each arm runs with
    models of its own (loaded and warmed up before its first example, no memos from another arm)."""
    prompt_tokens = prompt_counter(template, dict(resolved)[REFERENCE].tokenizer.count)
    holders = {ex.id: M.answer_chunk_ids(ex.chunks, ex.answers) for ex in examples}
    rows: list[ExampleRow] = []
    for name, pipe in resolved:
        name_arms = [a for a in arms if a.pipeline == name]
        if not name_arms:  # full, when run_eval was given its rows
            continue
        task = bar.add(f"{name}", total=len(examples) * len(name_arms))
        for k, arm in enumerate(name_arms):
            # fresh_models: each arm (pipeline and budget) gets a store of its own, its models loaded by warm_up
            # (not timed) but no text embedded, so its latency is its own cold-memo cost, not a read of the
            # memos an earlier budget (or pipeline) left; else the store in use, shared by every arm
            with _models(fresh_models):
                if fresh_models or k == 0:
                    pipe.warm_up()
                for ex in examples:
                    rows.append(_run_or_record(pipe, arm, ex, prompt_tokens, holders[ex.id]))
                    task(1)
    return rows


def prompt_counter(template: str, count: Callable[[str], int]) -> Callable[[str, str], int]:
    """``f(question, context)``: the tokens of the prompt the reader is sent (:func:`~evals.readers.prompt.format_prompt`,
    what :meth:`evals.readers.base.BaseReader.prompt` builds), counted whole.

    Counting the context and the template apart and adding them is not the same: tokens merge across the join (a
    context cut mid-word or ending without a full stop merges with the template's ``"\\n\\n"``), so the sum can be
    off by one or more per row.

    >>> from optimizer.tokenizer import get_tokenizer
    >>> f = prompt_counter(DEFAULT_TEMPLATE, get_tokenizer("cl100k_base").count)
    >>> f("Capital?", "Paris") == get_tokenizer("cl100k_base").count(format_prompt(DEFAULT_TEMPLATE, "Capital?", "Paris"))
    True
    """
    template = check_template(template)  # once; format_prompt checks it on every call
    return lambda question, context: count(template.format(context=context, question=question))


def warm_up_all(resolved: Sequence[tuple[str, Pipeline]], *, fresh: bool = True) -> None:
    """Load (building once, offline, if missing) every pipeline's models before the first example.

    A missing extra or model then stops the eval before any pipeline has run, with the
    install line of :class:`~optimizer.lazy.MissingDependency`, instead of after minutes of
    the pipelines listed before it, whose rows would be lost. With ``fresh`` the models are
    loaded into a throwaway store (each arm loads its own again, so latencies stay its own).
    """
    with _models(fresh):
        for _, pipe in resolved:
            pipe.warm_up()


@contextmanager
def _models(fresh: bool) -> Iterator[None]:
    """A fresh model store in use for a ``with`` block (closed at its end; models put into the store in use by
    hand are kept), or the store already in use."""
    if not fresh:
        yield
        return
    with default_store().fresh() as store, use_store(store):
        yield


def sweep_settings(
    resolved: Sequence[tuple[str, Pipeline]],
    arms: Sequence[Arm],
    wanted: set[Arm],
    table: Any,
    price: Any,
    *,
    resamples: int,
    seed: int,
    sample: int | None,
) -> dict[str, Any]:
    """What produced a sweep, for ``results.json`` (pipelines and their configs, prices, bootstrap).

    ``price.encoding`` is the tiktoken encoding the priced model counts with (None when tiktoken does not know
    it): the report says when the eval's tokenizer counts differently (:func:`evals.cost.encoding_note`).
    """
    from evals.cost import model_encoding

    return {
        "sample": sample,
        "reader_arms": [a.label for a in arms if a in wanted],
        "budgets": list({budget_key(a.budget): a.budget for a in arms if a.budget is not None}.values()),
        "pipelines": [n for n, _ in resolved],
        "pipeline_configs": {n: p.to_config() for n, p in resolved},
        "tuned_on": {n: t for n, t in ((n, tuned_on(n, p)) for n, p in resolved) if t is not None},
        "price": {"model": price.model, "input_per_million": price.input_per_million, "date": price.date, "source": price.source,
                  "encoding": model_encoding(price.model)},
        "prices": table.to_dict(),
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": 0.95, "paired_on": "example id"},
        "cost_note": "input tokens per query = the reader prompt as sent (template filled with the question and the rendered context, counted whole); output tokens not counted; $ saved is over the examples both this arm and full ran on",
    }


def _run_or_record(
    pipe: Pipeline, arm: Arm, ex: Any, prompt_tokens: Callable[[str, str], int], answer_chunks: tuple[str, ...] | None,
) -> ExampleRow:
    """:func:`_run_one`, or a failed row holding the error when the pipeline raises on this example."""
    try:
        return _run_one(pipe, arm, ex, prompt_tokens, answer_chunks)
    except Exception as exc:  # a crash is a recorded failure, never lost work (KeyboardInterrupt still stops)
        return failed_row(arm, ex, error_text(exc))


def error_text(exc: BaseException) -> str:
    """``Type: message``, then the exception's notes (e.g. which stage raised it), joined by ``"; "``.

    >>> exc = ValueError("invalid literal for int() with base 10: 'a'")
    >>> exc.add_note("in stage 'buggy' (my_stages.Buggy)")
    >>> error_text(exc)
    "ValueError: invalid literal for int() with base 10: 'a'; in stage 'buggy' (my_stages.Buggy)"
    """
    return f"{type(exc).__name__}: {with_notes(exc)}"


def failed_row(arm: Arm, ex: Any, error: str) -> ExampleRow:
    """The row of an example the pipeline raised on: the error, no context and no metrics.

    >>> from types import SimpleNamespace
    >>> row = failed_row(Arm("thorough", 0.25), SimpleNamespace(id="q1"), "RuntimeError: llama_decode returned -3")
    >>> row.pipeline_error, row.context, row.answer_recall, row.tokens
    ('RuntimeError: llama_decode returned -3', None, None, None)
    """
    return ExampleRow(id=str(ex.id), pipeline=arm.pipeline, budget=arm.budget, context=None, tokens=None, tokens_full=None,
                    prompt_tokens=None, kept_ids=(), answer_recall=None, evidence_recall=None, latency_ms=None,
                    pipeline_error=error)


def _run_one(
    pipe: Pipeline, arm: Arm, ex: Any, prompt_tokens: Callable[[str, str], int], answer_chunks: tuple[str, ...] | None,
) -> ExampleRow:
    start = time.perf_counter()
    result = pipe.run(ex.question, ex.chunks, budget=arm.budget)
    ms = (time.perf_counter() - start) * 1000
    kept = _kept_ids(result)
    recall = M.answer_recall(result.text, ex.answers)
    return ExampleRow(
        id=str(ex.id),
        pipeline=arm.pipeline,
        budget=arm.budget,
        context=result.text,
        tokens=result.tokens,
        tokens_full=result.tokens_full,
        prompt_tokens=prompt_tokens(ex.question, result.text),
        kept_ids=kept,
        answer_recall=recall,
        # every gold chunk counts, also those a retriever missed (evals.retrieval.all_gold_ids): lost, not left out
        evidence_recall=M.evidence_recall(M.sentence_kept_ids(result.spans, ex.chunks, ex.gold_ids), all_gold_ids(ex)),
        latency_ms=round(ms, 3),
        miss=M.miss(recall, kept_chunk_ids=kept, answer_chunks=answer_chunks),
    )


def reader_arm_set(arms: Sequence[Arm], reader_arms: Collection[tuple[str, Budget | None]] | None) -> set[Arm]:
    """The arms the reader answers for: all, or ``full`` plus the listed ones (checked against the sweep)."""
    wanted = {Arm(REFERENCE, None)}
    if reader_arms is None:
        wanted.update(arms)
        return wanted
    for pipeline, budget in reader_arms:
        arm = Arm(pipeline, parse_budget(budget))
        if arm not in arms:
            raise ValueError(f"reader arm {arm.label!r} is not in the sweep; arms: {', '.join(a.label for a in arms)}")
        wanted.add(arm)
    return wanted


def _read(
    rows: list[ExampleRow],
    examples: list[Any],
    reader: Any,
    wanted: set[Arm],
    sample: int | None,
    bar: Any,
) -> list[ExampleRow]:
    ids = {str(ex.id) for ex in examples[: sample if sample is not None else len(examples)]}
    question = {str(ex.id): ex for ex in examples}
    # example-major order: if the sweep is stopped, the first examples have every arm answered,
    # so a rerun with a smaller --limit is served entirely from the cache
    position = {str(ex.id): k for k, ex in enumerate(examples)}
    arm_order = {arm: k for k, arm in enumerate(dict.fromkeys(r.arm for r in rows))}
    todo = sorted(
        (i for i, r in enumerate(rows) if r.arm in wanted and r.id in ids and not getattr(r, "pipeline_error", None)),
        key=lambda i: (position[rows[i].id], arm_order[rows[i].arm]),
    )
    task = bar.add(f"reader {reader.name}", total=len(todo))
    outputs = reader.answer_many([(question[rows[i].id].question, rows[i].context) for i in todo], progress=task)
    out = list(rows)
    for i, o in zip(todo, outputs):
        answers = question[rows[i].id].answers
        ok = bool(o.ok) and o.text is not None
        out[i] = replace(
            rows[i],
            reader_called=True,
            prediction=o.text if ok else None,
            reader_error=None if ok else (o.error if o.error else "reader call failed"),
            reader_latency_ms=round(float(o.latency_ms), 3),
            reader_cached=bool(o.cached),
            reader_finish_reason=getattr(o, "finish_reason", None),
            accuracy=M.accuracy(o.text, answers) if ok else None,
            em=M.em(o.text, answers) if ok else None,
            f1=M.f1(o.text, answers) if ok else None,
        )
    return out


class _Bar:
    """A tiny facade over rich's progress: ``add(label, total)`` returns an ``advance(n)`` callable."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress

    def add(self, label: str, total: int) -> Callable[[int], None]:
        if self._progress is None:
            return lambda n=1: None
        task_id = self._progress.add_task(label, total=total)
        return lambda n=1: self._progress.advance(task_id, n)


@contextmanager
def _progress(enabled: bool) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield _Bar(progress)


__all__ = [
    "REFERENCE", "Arm", "EvalRun", "ExampleRow", "check_reference_rows", "failed_row", "make_arms", "reader_arm_set",
    "prompt_counter", "resolve_pipelines", "run_eval", "in_sample", "sweep_rows", "sweep_settings", "tuned_on", "warm_up_all",
]
