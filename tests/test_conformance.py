"""Every registered stage passes the conformance check anyone can run on their own stage."""

import pytest

from optimizer import Chunk, Stage
from optimizer.registry import list_stages, make_stage, register_stage, unregister_stage
from optimizer.testing import StageConformanceError, check_stage

# Stages that need a model are checked in the slow suite.
MODEL_STAGES = {"dense", "lm-prune", "dedupe-semantic", "static", "mmr", "hybrid"}


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

    register_stage("mine-test", Mine)
    try:
        assert "mine-test" in list_stages()
        with pytest.raises(ValueError, match="already registered"):
            register_stage("mine-test", Mine)
        with pytest.raises(ValueError, match="already registered"):
            register_stage("bm25", Mine)
        check_stage(make_stage("mine-test"))
    finally:
        unregister_stage("mine-test")
