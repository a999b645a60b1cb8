"""Every registered stage passes the conformance check anyone can run on their own stage."""

import pytest

from dataclasses import FrozenInstanceError

from optimizer import Chunk, Pipeline, Stage
from optimizer.registry import DEPRECATED_ALIASES, list_stages, make_stage, register_stage, stage_factory, unregister_stage
from optimizer.testing import StageConformanceError, check_stage

# Stages that need a model are checked in the slow suite.
MODEL_STAGES = {"rerank-dense", "compress-lm-prune", "rerank-lm", "dedupe-semantic", "rerank-static", "rerank-mmr", "rerank-hybrid"}


@pytest.mark.parametrize("name", [n for n in list_stages() if n not in MODEL_STAGES])
def test_builtin_stage_conforms(name):
    check_stage(make_stage(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODEL_STAGES & set(list_stages())))
def test_model_stage_conforms(name):
    check_stage(make_stage(name))


class Mutator(Stage):
    name = "mutator"

    def __call__(self, query, chunks, context):
        for c in chunks:
            object.__setattr__(c, "text", c.text.upper())  # the kind of bug the check exists for
        return list(chunks)


class Inventor(Stage):
    name = "inventor"

    def __call__(self, query, chunks, context):
        return [Chunk(id="made-up", text="x")] if chunks else []


class Forgetful(Stage):
    name = "forgetful"

    def __init__(self, *, k: int = 3):
        self.top = k  # stored under another name: get_params() cannot rebuild it

    def __call__(self, query, chunks, context):
        return list(chunks)


@pytest.mark.parametrize(
    "stage, message",
    [(Mutator(), "no mutation"), (Inventor(), "invented ids"), (Forgetful(), "params")],
)
def test_check_catches_broken_stages(stage, message):
    with pytest.raises(StageConformanceError, match=message):
        check_stage(stage)


def test_registry_rejects_duplicates_and_allows_third_party():
    class Mine(Stage):
        name = "mine-test"

        def __call__(self, query, chunks, context):
            return list(chunks)

    assert register_stage(Mine) is Mine  # the name comes from the class
    try:
        assert "mine-test" in list_stages()
        with pytest.raises(ValueError, match="already registered"):
            register_stage(Mine)
        assert check_stage(make_stage("mine-test")) == []  # registered: the round trips ran
    finally:
        unregister_stage("mine-test")


def test_registry_rejects_taken_names_and_aliases():
    class Taken(Stage):
        name = "rerank-bm25"

    class OldName(Stage):
        name = "bm25"

    for cls in (Taken, OldName):
        with pytest.raises(ValueError, match="already registered"):
            register_stage(cls)


def test_registry_name_must_match_the_class_name():
    class Named(Stage):
        name = "named-x"

    with pytest.raises(ValueError, match="named 'named-x' but registered as 'other-x'.*register_stage\\(Named\\)"):
        register_stage("other-x", Named)
    assert "other-x" not in list_stages()


def test_registry_needs_a_class_with_its_own_name():
    class Nameless(Stage):
        pass

    with pytest.raises(ValueError, match="class attribute name"):
        register_stage(Nameless)
    with pytest.raises(TypeError, match="stage class"):
        register_stage(Nameless())


def test_a_factory_function_registers_under_a_given_name():
    def build(**params):
        stage = KeepAll()
        stage.name = "keep-all-factory"  # saved configs name the stage: it must answer to the registered name
        return stage

    register_stage("keep-all-factory", build)
    try:
        stage = make_stage("keep-all-factory")
        assert isinstance(stage, KeepAll) and stage.name == "keep-all-factory"
    finally:
        unregister_stage("keep-all-factory")


def test_a_factory_whose_stage_has_another_name_is_refused_when_built():
    register_stage("keep-all-factory", lambda **params: KeepAll())
    try:
        with pytest.raises(ValueError, match="a stage named 'keep-all'.*Set name = 'keep-all-factory'"):
            make_stage("keep-all-factory")
    finally:
        unregister_stage("keep-all-factory")


class KeepAll(Stage):
    name = "keep-all"

    def __call__(self, query, chunks, context):
        return list(chunks)


def test_unregistered_stage_skips_only_the_round_trips():
    assert check_stage(KeepAll()) == ["make_stage round trip", "save/load round trip"]


@pytest.mark.parametrize("old, new", sorted(DEPRECATED_ALIASES.items()))
def test_old_names_still_build_the_stage_and_warn(old, new):
    with pytest.warns(FutureWarning, match=f"{old!r} is deprecated.*use {new!r}"):
        factory = stage_factory(old)
    assert factory is stage_factory(new) and factory.name == new
    assert old not in list_stages()


def test_a_config_with_old_names_loads_and_saves_the_new_ones():
    with pytest.warns(FutureWarning):
        pipeline = Pipeline.from_config({"steps": [{"stage": "bm25"}, {"stage": "whole-chunks"}]})
    assert [s["stage"] for s in pipeline.to_config()["steps"]] == ["rerank-bm25", "select-whole"]


@pytest.mark.parametrize("name", list_stages())
def test_every_builtin_class_is_called_by_its_registry_name(name):
    assert stage_factory(name).name == name


class BudgetBreaker(Stage):
    """Writes a bigger budget into the run context: the bug a mutable context allowed."""

    name = "budget-breaker"

    def __call__(self, query, chunks, context):
        context.budget = 10_000
        return list(chunks)


class SneakyBudgetBreaker(Stage):
    name = "sneaky-budget-breaker"

    def __call__(self, query, chunks, context):
        object.__setattr__(context, "budget", 10_000)
        return list(chunks)


@pytest.mark.parametrize("stage", [BudgetBreaker(), SneakyBudgetBreaker()])
def test_check_catches_a_stage_that_writes_to_the_run_context(stage):
    with pytest.raises(StageConformanceError, match="run context"):
        check_stage(stage)


def test_a_stage_cannot_raise_the_budget_the_pipeline_packs_with():
    chunks = [Chunk(id=str(i), text="word " * 40) for i in range(5)]
    with pytest.raises(FrozenInstanceError):
        Pipeline([BudgetBreaker()]).run("q", chunks, budget=30)
    result = Pipeline([SneakyBudgetBreaker()]).run("q", chunks, budget=30)
    assert result.tokens <= 30 and result.budget == 30


class IgnoresOverhead(Stage):
    """Claims chunks fit by their text alone, so it fails only once a renderer adds overhead."""

    name = "ignores-overhead"

    def __call__(self, query, chunks, context):
        if context.render_overhead is not None and context.overhead(chunks) > 0:
            raise RuntimeError("cannot cope with a renderer")
        return list(chunks)


def test_check_runs_the_stage_with_a_renderers_overhead():
    with pytest.raises(StageConformanceError, match="renderer overhead|_check_with_overhead"):
        check_stage(IgnoresOverhead())


class WrongRoundTrip(Stage):
    """A factory that builds another class: make_stage(name) does not give this stage back."""

    name = "wrong-round-trip"

    def __call__(self, query, chunks, context):
        return list(chunks)


def test_check_catches_a_registry_round_trip_that_builds_something_else():
    register_stage("wrong-round-trip", lambda **params: KeepAll())
    try:
        with pytest.raises(StageConformanceError, match="make_stage"):
            check_stage(WrongRoundTrip())
    finally:
        unregister_stage("wrong-round-trip")


class TupleSettings(Stage):
    """Settings with a tuple and a nested dict survive YAML, TOML and JSON."""

    name = "tuple-settings"

    def __init__(self, *, words=("a", "b"), weights=None):
        self.words = words
        self.weights = weights

    def __call__(self, query, chunks, context):
        return [c for c in chunks if any(w in c.text for w in self.words)] or list(chunks)


def test_save_load_round_trip_passes_for_tuples_and_none():
    register_stage(TupleSettings)
    try:
        assert check_stage(TupleSettings(words=("Eiffel",))) == []
    finally:
        unregister_stage("tuple-settings")
