"""Pipeline.run enforces the stage contract after every step, and saving says what it cannot keep.

DESIGN.md contracts 2 (provenance: every kept span maps back to the caller's text; ids,
scores and metadata survive) and 3 (a trace), enforced for stages of anyone's writing, and
the pipeline's configs (TOML nulls, settings that are not plain data, ``budget: 1``).
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from optimizer import Chunk, Pipeline, Stage, StageOutput, make_stage
from optimizer.testing import StageConformanceError, check_stage

CHUNKS = [
    Chunk(id="a", title="Paris", text="Paris is the capital of France. It has 2.1 million people.", score=0.5, metadata={"k": 1}),
    Chunk(id="b", title="Lyon", text="Lyon is a city in France. It is known for food.", score=0.3),
]


def replacing(stage_name: str, **changes) -> Stage:
    """A stage returning every chunk with ``changes`` applied by ``dataclasses.replace``."""

    class Replacing(Stage):
        name = stage_name

        def __call__(self, query, chunks, context):
            return [dataclasses.replace(c, **changes) for c in chunks]

    return Replacing()


# -- 1. provenance and the caller's fields, checked after every step ---------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"text": "Berlin is the capital of Germany."}, "original text changed"),
        ({"text": "Berlin!", "source": "Berlin!", "pieces": ((0, 7),)}, "original text changed"),
        ({"pieces": ((0, 5000),)}, r"kept piece \(0, 5000\) is outside the original text"),
        ({"pieces": ((0, 5), (3, 10))}, r"kept piece \(3, 10\) overlaps"),
        ({"score": 99.0}, "score changed"),
        ({"title": "X"}, "title changed"),
        ({"metadata": {"k": 2}}, "metadata changed"),
    ],
)
def test_a_stage_that_rewrites_a_chunk_is_refused_naming_stage_and_chunk(changes, message):
    with pytest.raises(ValueError, match=rf"stage 'bad-step' returned chunk 'a' whose {message}"):
        Pipeline([("bad-step", replacing("rewriter", **changes))], budget=50).run("capital?", CHUNKS)


def test_cuts_and_relevance_pass_but_text_that_is_not_the_join_of_its_pieces_is_refused():
    class Cut(Stage):
        name = "cut"

        def __init__(self, *, text: str | None = None):
            self.text = text

        def __call__(self, query, chunks, context):
            cut = [dataclasses.replace(c.keep([(0, c.text.index(".") + 1)]), relevance=1.0) for c in reversed(chunks)]
            return [dataclasses.replace(c, text=self.text) for c in cut] if self.text else cut

    result = Pipeline([Cut()], budget=50).run("q", CHUNKS)
    sources = {c.id: c.text for c in CHUNKS}
    assert [c.id for c in result.chunks] == ["b", "a"] and len(result.spans) == 2
    for span in result.spans:
        assert result.text[span.context_start : span.context_end] == sources[span.chunk_id][span.start : span.end]
    assert [(c.score, c.title, dict(c.metadata)) for c in result.chunks] == [(0.3, "Lyon", {}), (0.5, "Paris", {"k": 1})]
    with pytest.raises(ValueError, match="stage 'cut' returned chunk 'b' whose text 'Lyon!' is not the join of its kept pieces"):
        Pipeline([Cut(text="Lyon!")], budget=50).run("q", CHUNKS)


def test_a_later_step_is_checked_against_the_callers_chunk_too():
    steps = [make_stage("rerank-bm25"), ("later", replacing("x", title="Other"))]
    with pytest.raises(ValueError, match="stage 'later' returned chunk 'a' whose title changed"):
        Pipeline(steps, budget=50).run("capital of France?", CHUNKS)


def test_check_stage_uses_the_same_rule():
    with pytest.raises(StageConformanceError, match=r"provenance / one chunk.*overlaps"):
        check_stage(replacing("overlapper", pieces=((0, 5), (3, 10))))


# -- 2. TOML cannot hold None --------------------------------------------------------------------
def test_toml_leaves_out_a_none_setting_only_when_its_default_is_none(tmp_path):
    quality = Pipeline.preset("quality", budget=0.25)  # dense_linked=None, its default: left out
    quality.save(tmp_path / "quality.toml")
    assert "dense_linked" not in (tmp_path / "quality.toml").read_text()
    assert Pipeline.load(tmp_path / "quality.toml").to_config() == quality.to_config()
    pipeline = Pipeline([make_stage("compress-sentences", model=None)], budget=25)  # the default is 'static'
    with pytest.raises(ValueError, match=r"step 'compress-sentences' as TOML: its setting 'model' is None.*default 'static'.*\.yaml or \.json"):
        pipeline.save(tmp_path / "p.toml")
    assert not (tmp_path / "p.toml").exists()
    for suffix in (".yaml", ".json"):  # both keep null
        pipeline.save(tmp_path / f"p{suffix}")
        assert Pipeline.load(tmp_path / f"p{suffix}").steps[0][1].model is None


# -- 3. an exception inside a stage names the stage ------------------------------------------------
class Buggy(Stage):
    name = "buggy"

    def __call__(self, query, chunks, context):
        return [c for c in chunks if int(c.id) > 0]


@pytest.mark.parametrize("steps, step", [([Buggy()], "buggy"), ([make_stage("rerank-bm25"), ("mine", Buggy())], "mine")])
def test_an_exception_in_a_stage_keeps_its_type_and_gains_a_note_naming_the_stage(steps, step):
    with pytest.raises(ValueError, match="invalid literal for int") as info:
        Pipeline(steps).run("q", [{"id": "x", "text": "Paris."}])
    assert type(info.value) is ValueError
    assert info.value.__notes__ == [f"in stage {step!r} ({__name__}.Buggy)"]


# -- 4. trace notes come out as JSON ---------------------------------------------------------------
def notes_stage(notes) -> Stage:
    class Notes(Stage):
        name = "notes"

        def __call__(self, query, chunks, context):
            return StageOutput(list(chunks), notes=notes)

    return Notes()


def test_numpy_and_set_notes_are_json_in_to_dict():
    notes = {"mean_len": np.float32(3.5), "ids": {"b", "a"}, "shape": (2, 3), "lengths": np.array([1, 2]), "n": np.int64(2)}
    result = Pipeline([notes_stage(notes)], budget=50).run("q", CHUNKS)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["trace"][0]["notes"] == {"mean_len": 3.5, "ids": ["a", "b"], "shape": [2, 3], "lengths": [1, 2], "n": 2}
    assert result.trace[0].notes["mean_len"] == np.float32(3.5)  # the run's own trace keeps what the stage gave


def test_a_note_json_cannot_hold_is_an_error_naming_the_stage_and_note():
    result = Pipeline([notes_stage({"obj": object()})], budget=50).run("q", CHUNKS)
    with pytest.raises(TypeError, match=r"stage 'notes' note 'obj' is an object, which JSON cannot hold"):
        result.to_dict()


# -- 8. settings stored under another name --------------------------------------------------------
class FirstN(Stage):
    name = "first-n"

    def __init__(self, *, n: int = 1):
        self._n = n

    def __call__(self, query, chunks, context):
        return list(chunks[: self._n])


def test_repr_never_raises_and_to_config_says_how_to_store_settings():
    pipeline = Pipeline([FirstN(n=2)], budget=30)
    assert repr(FirstN(n=2)) == "FirstN(<settings unreadable: AttributeError>)"
    assert "first-n=FirstN(<settings unreadable" in repr(pipeline)
    with pytest.raises(AttributeError, match=r"step 'first-n'.*no attribute 'n'.*named like the constructor's arguments.*self\.n = n.*get_params\(\)"):
        pipeline.to_config()


def test_pipeline_repr_survives_a_stage_whose_repr_raises():
    class Odd:
        name = "odd"

        def __call__(self, query, chunks, context):
            return list(chunks)

        def __repr__(self):
            raise RuntimeError("no repr")

    assert "odd=<Odd (repr raised RuntimeError: no repr)>" in repr(Pipeline([Odd()]))


# -- 11. settings that are not plain data ----------------------------------------------------------
class DropRegex(Stage):
    name = "drop-regex"

    def __init__(self, *, pattern=re.compile("Lyon")):
        self.pattern = pattern

    def __call__(self, query, chunks, context):
        return [c for c in chunks if not self.pattern.search(c.text)]


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_save_names_the_step_and_setting_that_is_not_plain_data(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    with pytest.raises(ValueError, match=r"cannot save step 'mine': its setting 'pattern' is re\.compile\('Lyon'.*a Pattern"):
        Pipeline([("mine", DropRegex(pattern=re.compile("Lyon", re.I)))]).save(path)
    assert not path.exists()


def test_numpy_scalar_settings_are_saved_as_numbers(tmp_path):
    pipeline = Pipeline([make_stage("compress-sentences", ratio=np.float64(0.4))])  # YAML could not represent it
    for suffix in (".yaml", ".toml", ".json"):
        pipeline.save(tmp_path / f"p{suffix}")
        loaded = Pipeline.load(tmp_path / f"p{suffix}")
        assert loaded.steps[0][1].ratio == 0.4 and loaded.to_config() == pipeline.to_config()


# -- 12. 'pack' is the packer's name -------------------------------------------------------------
def test_a_step_cannot_be_named_pack():
    with pytest.raises(ValueError, match="step name 'pack' is reserved"):
        Pipeline([("pack", make_stage("rerank-bm25"))])
    with pytest.raises(ValueError, match="step name 'pack' is reserved"):
        Pipeline.from_config({"steps": [{"stage": "rerank-bm25", "name": "pack"}]})


# -- 13. a StageOutput whose chunks are a generator --------------------------------------------------
def test_a_stageoutput_with_a_generator_says_so():
    class GenOut(Stage):
        name = "gen-out"

        def __call__(self, query, chunks, context):
            return StageOutput(chunks=(c for c in chunks), reasons={})

    with pytest.raises(TypeError, match=r"stage 'gen-out' returned a StageOutput whose chunks is a generator;.*list\(\.\.\.\)"):
        Pipeline([GenOut()]).run("q", ["Paris."])


# -- 14b. budget: 1 in a config is as ambiguous as --budget 1 ------------------------------------------
@pytest.mark.parametrize("value", [1, "1"])
def test_a_config_budget_of_1_is_refused_as_the_command_line_refuses_it(tmp_path, value):
    from ragtrim.commands.common import parse_budget_option

    with pytest.raises(ValueError) as cli:
        parse_budget_option("--budget", str(value))
    path = tmp_path / "p.yaml"
    path.write_text(f"budget: {value!r}\nsteps: [rerank-bm25]\n", encoding="utf-8")
    with pytest.raises(ValueError) as config:
        Pipeline.load(path)
    assert str(config.value) == str(cli.value).replace("'1'", repr(value))
    assert Pipeline.from_config({"budget": 1.0}).budget == 1.0 and Pipeline.from_config({"budget": 2}).budget == 2
