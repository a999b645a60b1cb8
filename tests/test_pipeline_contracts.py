"""Pipeline.run enforces the stage contract after every step, and saving says what it cannot keep.

DESIGN.md contracts 2 (provenance: every kept span maps back to the caller's text; ids,
scores and metadata survive; nothing the caller passed in is changed, in place either) and 3
(a trace, whose drop reasons are strings), enforced for stages of anyone's writing, and the
pipeline's configs (TOML nulls, settings that are not plain data, ``budget: 1``, in a file or in Python).
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


# -- 15. a stage that changes the caller's chunks in place is named -----------------------------------
def mutating(stage_name: str, change) -> Stage:
    """A stage that calls ``change(chunk)`` on every chunk it is given, then returns them all."""

    class Mutating(Stage):
        name = stage_name

        def __call__(self, query, chunks, context):
            for c in chunks:
                change(c)
            return list(chunks)

    return Mutating()


def caller_chunks() -> list[Chunk]:
    return [
        Chunk(id="a", text="Paris is the capital of France.", title="Paris", metadata={"tags": ["city"], "n": 1},
              embedding=np.array([3.0, 4.0], dtype=np.float32)),
        Chunk(id="b", text="Lyon is a city in France.", metadata={"tags": []}),
    ]


def _normalise_in_place(c: Chunk) -> None:
    vector = c.embedding
    if vector is not None:
        vector = vector.base  # past the chunk's read-only view (`c.embedding /= n` raises): the caller's array
        vector /= np.linalg.norm(vector)


@pytest.mark.parametrize(
    "change, what",
    [
        (lambda c: c.metadata["tags"].append("seen"), r"metadata \(now \{'tags': \['city', 'seen'\], 'n': 1\}\)"),
        (lambda c: dict.__setitem__(c.metadata, "x", 1), "metadata"),  # past the read-only dict
        (_normalise_in_place, "embedding"),
        (lambda c: object.__setattr__(c, "title", "Lutetia"), r"title \(now 'Lutetia'\)"),  # past the frozen dataclass
    ],
)
def test_a_stage_that_changes_a_callers_chunk_in_place_is_refused_naming_step_and_chunk(change, what):
    with pytest.raises(ValueError, match=rf"stage 'in-place' changed the caller's chunk 'a' in place: its {what}.*never changes"):
        Pipeline([("in-place", mutating("mutator", change))], budget=50).run("capital of France?", caller_chunks())


@pytest.mark.parametrize("change, what", [(lambda c: c.metadata["tags"].append("seen"), "metadata"), (_normalise_in_place, "embedding")])
def test_a_later_step_changing_what_its_copies_share_with_the_callers_chunk_is_named(change, what):
    steps = [make_stage("rerank-bm25"), ("later", mutating("mutator", change))]  # it gets rerank-bm25's copies
    with pytest.raises(ValueError, match=rf"stage 'later' changed the caller's chunk 'a' in place: its {what}"):
        Pipeline(steps, budget=50).run("capital of France?", caller_chunks())


def test_a_change_to_a_value_shared_with_the_callers_dict_is_refused():
    given = [{"id": "a", "text": "Paris is the capital of France.", "metadata": {"tags": ["city"]}}]
    with pytest.raises(ValueError, match="stage 'mutator' changed the caller's chunk 'a' in place: its metadata"):
        Pipeline([mutating("mutator", lambda c: c.metadata["tags"].append("seen"))], budget=50).run("q", given)


def test_metadata_marshal_cannot_hold_is_compared_by_content_too():
    import datetime

    class Note:  # an object of the caller's own: compared by identity
        pass

    def chunks():
        metadata = {"when": datetime.date(2024, 1, 1), "note": Note(), "tags": ["city"]}
        return [Chunk(id="a", text="Paris is the capital of France.", metadata=metadata)]

    assert Pipeline([mutating("reader", lambda c: c.metadata["tags"])], budget=50).run("q", chunks()).tokens > 0
    with pytest.raises(ValueError, match="stage 'mutator' changed the caller's chunk 'a' in place: its metadata"):
        Pipeline([mutating("mutator", lambda c: c.metadata["tags"].append("seen"))], budget=50).run("q", chunks())


def test_reading_and_keeping_references_is_not_a_change_and_presets_leave_the_input_alone():
    kept = []
    chunks = caller_chunks()
    Pipeline([mutating("reader", lambda c: kept.append((c.metadata["tags"], c.embedding)))], budget=50).run("q", chunks)
    for preset in ("default", "bm25-pack"):
        Pipeline.preset(preset, budget=12).run("capital of France?", chunks)
    assert chunks == caller_chunks()  # ids, texts, titles, scores, metadata (Chunk equality leaves embeddings out)
    assert np.array_equal(chunks[0].embedding, caller_chunks()[0].embedding) and chunks[1].embedding is None


def test_check_stage_reports_a_stage_that_appends_to_the_callers_metadata(monkeypatch):
    import copy

    from optimizer import testing

    monkeypatch.setattr(testing, "CASES", copy.deepcopy(testing.CASES))  # the stage changes them
    stage = mutating("appender", lambda c: c.metadata.get("tags", []).append("x"))
    with pytest.raises(StageConformanceError, match=r"no mutation / typical.*the input chunks changed"):
        check_stage(stage)


# -- 16. a drop reason is a string ---------------------------------------------------------------------
def reasoning(reasons) -> Stage:
    class Reasoning(Stage):
        name = "reasoning"

        def __call__(self, query, chunks, context):
            return StageOutput([c for c in chunks if c.id != "b"], reasons=reasons)

    return Reasoning()


@pytest.mark.parametrize("reason, shown", [(5, "5, an int"), (None, "None, a NoneType"), (b"off", "b'off', a bytes"),
                                           (object(), "<object object at .*>, an object")])
def test_a_drop_reason_that_is_not_a_string_is_refused_naming_step_and_chunk(reason, shown):
    # before: kept in the trace as given; an int or None came out of to_dict (and `ragtrim optimize -f json`)
    # as a number or null, an object broke json.dumps without naming the step
    with pytest.raises(TypeError, match=rf"stage 'reasoning' gave chunk 'b' the drop reason {shown}; a reason must be a string"):
        Pipeline([reasoning({"b": reason})], budget=50).run("q", CHUNKS)


def test_reasons_that_are_not_a_mapping_are_refused_naming_the_step():
    with pytest.raises(TypeError, match=r"stage 'reasoning' returned a StageOutput whose reasons is a list; reasons must map"):
        Pipeline([reasoning(["b: off topic"])], budget=50).run("q", CHUNKS)
    result = Pipeline([reasoning({"b": "off topic"})], budget=50).run("q", CHUNKS)
    assert json.loads(json.dumps(result.to_dict()))["trace"][0]["dropped"] == [{"chunk_id": "b", "reason": "off topic"}]


# -- 17. budget 1 is as ambiguous built in Python as in a file, so what save writes, load reads --------------
def test_budget_1_is_refused_when_built_in_python_as_load_refuses_it(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("budget: 1\n", encoding="utf-8")
    with pytest.raises(ValueError) as loaded:
        Pipeline.load(path)
    for build in (lambda: Pipeline(budget=1), lambda: Pipeline.preset("bm25-pack", budget=1),
                  lambda: Pipeline.from_config({"steps": ["rerank-bm25"]}, budget=1), lambda: Pipeline.load(path, budget=1)):
        with pytest.raises(ValueError) as built:  # before: built with a budget of one token, saved as 'budget: 1'
            build()
        assert str(built.value) == str(loaded.value)
    with pytest.raises(ValueError, match=r"budget .*1\)? is ambiguous"):  # a numpy 1 too (its repr varies by version)
        Pipeline(budget=np.int64(1))
    assert Pipeline.preset("truncate").run("q", ["Paris is big."], budget=1).tokens <= 1  # a call's own budget: tokens


@pytest.mark.parametrize("budget", [1.0, 0.25, 2, 300, "25%", None])
def test_every_budget_a_pipeline_is_built_with_saves_to_a_file_load_reads(tmp_path, budget):
    pipeline = Pipeline.preset("bm25-pack", budget=budget)
    for suffix in (".yaml", ".toml", ".json"):
        pipeline.save(tmp_path / f"p{suffix}")
        assert Pipeline.load(tmp_path / f"p{suffix}").to_config() == pipeline.to_config()
