"""Stage settings, installed plugins and custom stages: each test is a defect that was reproduced.

Built-in stages refuse a quoted number or a quoted yes/no at construction (instead of failing every
run inside numpy, or reading "false" as true); an installed package whose entry point reuses a taken
name is skipped with a warning, not the end of ragtrim; a plugin that fails to import is named; a
factory that builds a stage of another name is refused; ``ragtrim eval`` checks that every pipeline's
config can be written before the sweep; exception notes (which stage raised) reach both the eval's
recorded error and the command line's one-line message; a scorer file missing a key, or naming an embedder
ragtrim does not have, names the file when it is loaded.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from optimizer import Chunk, Pipeline, Stage, make_stage, register_stage
from optimizer.registry import unregister_stage

ROOT = Path(__file__).resolve().parents[1]


# -- helpers --------------------------------------------------------------------------------------
def install(site: Path, dist: str, package: str, code: str, points: dict[str, str]) -> Path:
    """A package as pip would install it into ``site``: its module and a dist-info folder with ``ragtrim.stages`` entry points."""
    (site / package).mkdir(parents=True, exist_ok=True)
    (site / package / "__init__.py").write_text(code)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in points.items())
    (info / "entry_points.txt").write_text(f"[ragtrim.stages]\n{lines}")
    return site


def run_python(code: str, cwd: Path, *sites: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (a fresh registry) with ``sites`` first on its path, in that order."""
    path = os.pathsep.join([*map(str, sites), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def stage_class(name: str, body: str = "        return list(chunks)\n", extra: str = "") -> str:
    """Source of a Stage subclass named ``name`` (class name from it), for a plugin package."""
    cls = "".join(part.title() for part in re.split(r"[-_]", name))
    return (f"class {cls}(Stage):\n    name = {name!r}\n{extra}"
            f"    def __call__(self, query, chunks, context):\n{body}\n\n")


# -- 7. built-in stages check their settings when built ---------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value"),
    [("lexical", "1"), ("redundancy", "high"), ("coverage", -0.5), ("hop_link", "false"), ("use_title", "false"),
     ("stem", -1), ("tight_sentences", 2.5)],
)
def test_compress_sentences_refuses_a_setting_of_the_wrong_kind_when_built(setting, value):
    with pytest.raises(ValueError) as caught:
        Pipeline.from_config({"steps": [{"stage": "compress-sentences", "params": {"model": None, setting: value}}]})
    message = str(caught.value)
    assert "compress-sentences" in message and setting in message and repr(value) in message
    assert re.search(r"must be (a number of 0 or more|a non-negative integer|true or false)", message), message


def test_a_quoted_number_is_refused_with_a_hint_to_unquote_it():
    with pytest.raises(ValueError, match=r"lexical must be a number of 0 or more, e\.g\. 1\.0, got '1' \(text: write the number without quotes\)"):
        make_stage("compress-sentences", model=None, lexical="1")


def test_every_preset_and_bench_config_still_builds_and_quoting_any_of_its_numbers_is_refused():
    from optimizer.presets import PRESETS

    configs = [PRESETS[name] for name in PRESETS] + [json.loads(p.read_text()) for p in sorted((ROOT / "bench" / "configs").glob("*.json"))]
    refused = 0
    for config in configs:
        Pipeline.from_config(config)  # the settings the project ships pass the checks
        for i, step in enumerate(config["steps"]):
            for key, value in (step.get("params") or {}).items():
                if isinstance(value, (bool, int, float)) and key in ("lexical", "dense", "chunk_dense", "density", "coverage",
                                                                     "tight_sentences", "stem", "chunk_prior", "lead", "numeric"):
                    quoted = copy.deepcopy(config)
                    quoted["steps"][i]["params"][key] = str(value).lower()
                    with pytest.raises(ValueError, match=re.escape(key)):
                        Pipeline.from_config(quoted)
                    refused += 1
    assert refused >= 10


@pytest.mark.parametrize(
    ("params", "pattern"),
    [({"keep_at_least": -1}, r"select-threshold: keep_at_least .*non-negative number of chunks.* got -1"),
     ({"keep_at_least": 2.9}, r"select-threshold: keep_at_least .*got 2\.9"),
     ({"min_score": "high"}, r"select-threshold: min_score .*must be a finite number.*got 'high'")],
)
def test_select_threshold_refuses_bad_settings(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_stage("select-threshold", **params)


def test_select_threshold_keeps_only_what_passes_and_stores_settings_as_given():
    from optimizer.stage import StageContext

    chunks = [Chunk(id=str(i), text=f"text {i}", score=s) for i, s in enumerate([0.9, 0.1, 0.05, 0.01])]
    stage = make_stage("select-threshold", min_score=0.5, keep_at_least=0)
    assert [c.id for c in stage("q", chunks, StageContext.default())] == ["0"]
    assert stage.get_params() == {"min_score": 0.5, "keep_at_least": 0}
    with pytest.raises(ValueError):
        make_stage("select-threshold", keep_at_least=-1)


@pytest.mark.parametrize(
    ("stage", "setting"),
    [("rerank-bm25", "use_title"), ("rerank-static", "use_title"), ("rerank-dense", "reuse_embeddings"),
     ("rerank-mmr", "use_title"), ("dedupe-exact", "use_title"), ("dedupe-overlaps", "same_title_only")],
)
def test_yes_no_settings_refuse_text(stage, setting):
    with pytest.raises(ValueError, match=rf"{stage}: {setting}.* must be true or false, got 'false' \(text: write true or false without quotes\)"):
        make_stage(stage, **{setting: "false"})
    assert getattr(make_stage(stage, **{setting: False}), setting) is False


def test_validate_has_a_yes_no_and_a_finite_number_check():
    from optimizer.validate import finite_number, yes_no

    assert yes_no(True, "x") is True and finite_number(0, "w", at_least=0) == 0.0
    for bad in ("true", 1, None):
        with pytest.raises(ValueError, match=r"^flag must be true or false"):
            yes_no(bad, "flag")
    for bad in (float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match=r"^w must be a finite number"):
            finite_number(bad, "w")


# -- 14a. a scorer file missing a key, or naming an unknown embedder, names the file ---------------------
def test_a_scorer_file_missing_a_key_names_the_file_and_the_key(tmp_path):
    data = json.loads((ROOT / "optimizer" / "data" / "scorer-default.json").read_text())
    del data["plain"]["scale"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"scorer file {re.escape(repr(str(path)))}: .*plain lacks scale"):
        make_stage("compress-sentences", scorer="fitted", weights=str(path))


def test_a_scorer_file_that_is_not_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"scorer file {re.escape(repr(str(path)))}"):
        make_stage("compress-sentences", scorer="fitted", weights=str(path))



@pytest.mark.parametrize("key", ["static", "dense"])
def test_a_scorer_file_naming_an_unknown_embedder_fails_when_loaded_naming_file_value_and_known_ones(tmp_path, key):
    data = json.loads((ROOT / "optimizer" / "data" / "scorer-default.json").read_text())
    data[key] = "minilm-l12"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"scorer file {re.escape(repr(str(path)))}: {key} names the embedder 'minilm-l12'.*"
                                         r"known: static, static-distilled, minilm, minilm-int8"):
        make_stage("compress-sentences", scorer="fitted", weights=str(path))  # before: built, and failed only in run()
    data[key] = None  # null: no such features, as the shipped default's dense
    path.write_text(json.dumps(data))
    assert getattr(make_stage("compress-sentences", scorer="fitted", weights=str(path)).fitted, key) is None

# -- 10. a factory's stage must carry the registered name; **kw is not a parameter ------------------
class _Inner(Stage):
    name = "inner-name"

    def __call__(self, query, chunks, context):
        return list(chunks)


class _Thresh(Stage):
    name = "test-kw-thresh"

    def __init__(self, *, level: float = 0.5):
        self.level = level

    def __call__(self, query, chunks, context):
        return list(chunks)


def test_a_factory_building_a_stage_of_another_name_is_refused():
    register_stage("outer-name", lambda **kw: _Inner())
    try:
        with pytest.raises(ValueError, match=r"stage 'outer-name': .*_Inner\(\), a stage named 'inner-name'.*would not load"):
            Pipeline.from_config({"steps": ["outer-name"]})
    finally:
        unregister_stage("outer-name")
    with pytest.warns(FutureWarning):
        assert make_stage("bm25").name == "rerank-bm25"  # an old name still builds its stage


def test_a_kw_factorys_parameter_error_does_not_list_kw():
    register_stage("test-kw-thresh", lambda **kw: _Thresh(**kw))
    try:
        assert make_stage("test-kw-thresh", level=0.7).level == 0.7
        with pytest.raises(TypeError) as caught:
            make_stage("test-kw-thresh", lvl=1)
    finally:
        unregister_stage("test-kw-thresh")
    message = str(caught.value)
    assert "unexpected keyword argument 'lvl'" in message
    valid = message.split("Valid parameters:")[1]
    assert not re.search(r"\bkw\b", valid) and "stage class it builds" in valid


# -- 6. and 9. installed plugins: a clash is skipped with a warning, a broken one is named -----------
PLUGIN_HEAD = "from optimizer import Stage\n\n\n"


def test_a_plugin_reusing_a_taken_name_is_skipped_and_the_others_register(tmp_path):
    clash = install(tmp_path / "site2", "other-pkg", "other_pkg", PLUGIN_HEAD + stage_class("rerank-bm25", extra="    marker = 'plugin'\n"),
                    {"rerank-bm25": "other_pkg:RerankBm25", "bm25": "other_pkg:RerankBm25"})
    good = install(tmp_path / "site", "good-stages", "good_stages", PLUGIN_HEAD + stage_class("keep-all"), {"keep-all": "good_stages:KeepAll"})
    code = ("from optimizer import Pipeline, list_stages; from optimizer.registry import stage_factory\n"
            "names = list_stages(); print('keep-all' in names, 'rerank-bm25' in names)\n"
            "print(hasattr(stage_factory('rerank-bm25'), 'marker'))\n"
            "print(Pipeline.preset('truncate', budget=30).run('q', ['Paris is the capital of France.']).text)\n")
    out = run_python(code, tmp_path, clash, good)  # the bad package first on the path
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:3] == ["True True", "False", "[1] Paris is the capital of France."]
    assert re.search(r"entry point 'rerank-bm25 = other_pkg:RerankBm25' of package other-pkg 0\.1 is skipped: "
                     r"'rerank-bm25' is the name of a built-in stage", out.stderr), out.stderr
    assert "'bm25' is the old name of the built-in stage 'rerank-bm25'" in out.stderr
    cli = run_python("import sys; sys.argv = ['ragtrim', 'stages']; from ragtrim.cli import main; main()", tmp_path, clash, good)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "keep-all" in cli.stdout and "Traceback" not in cli.stderr


def test_two_plugins_claiming_one_name_resolve_the_same_whatever_the_path_order(tmp_path):
    sites = [install(tmp_path / f"site-{p}", f"{p}-pkg", f"{p}_pkg", PLUGIN_HEAD + stage_class("shared", extra=f"    origin = {p!r}\n"),
                     {"shared": f"{p}_pkg:Shared"}) for p in ("a", "b")]
    code = "from optimizer.registry import stage_factory; print(stage_factory('shared').origin)"
    for order in (sites, sites[::-1]):
        out = run_python(code, tmp_path, *order)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "a"
        assert re.search(r"entry point 'shared = b_pkg:Shared' of package b-pkg 0\.1 is skipped: 'shared' is already registered "
                         r"by entry point 'shared = a_pkg:Shared' of package a-pkg 0\.1", out.stderr), out.stderr


def test_a_plugin_that_fails_to_import_names_the_stage_entry_point_and_package(tmp_path):
    site = tmp_path / "site3"
    info = site / "broken_pkg-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ragtrim.stages]\nmy-broken = broken_pkg.stages:Broken\n")
    (tmp_path / "mine.yaml").write_text("steps:\n  - stage: my-broken\n")
    (tmp_path / "chunks.jsonl").write_text(json.dumps({"id": "a", "text": "Paris is the capital of France."}) + "\n")
    code = ("import sys; sys.argv = ['ragtrim', 'optimize', '--chunks', 'chunks.jsonl', '--query', 'capital?', "
            "'--config', 'mine.yaml', '--budget', '300']; from ragtrim.cli import main; main()")
    out = run_python(code, tmp_path, site)
    assert out.returncode == 2, out.stderr[-2000:]
    assert ("stage 'my-broken' could not be loaded from entry point 'my-broken = broken_pkg.stages:Broken' of package broken-pkg 0.1: "
            "ModuleNotFoundError: No module named 'broken_pkg'") in out.stderr, out.stderr


# -- 5. ragtrim eval checks every pipeline's config before the sweep --------------------------------
class _Compiled(Stage):
    name = "test-drop-compiled"
    calls = 0

    def __init__(self, *, pattern: str = "Lyon"):
        self.pattern = re.compile(pattern)

    def __call__(self, query, chunks, context):
        type(self).calls += 1
        return [c for c in chunks if not self.pattern.search(c.text)]


class _Private(Stage):
    name = "test-first-n"
    calls = 0

    def __init__(self, *, n: int = 1):
        self._n = n

    def __call__(self, query, chunks, context):
        type(self).calls += 1
        return list(chunks[: self._n])


def _dataset():
    ex = SimpleNamespace(id="q1", question="Capital of France?", answers=("Paris",), gold_ids=("b",), meta={},
                         chunks=(Chunk(id="a", text="Lyon is big."), Chunk(id="b", text="Paris is the capital.")))
    return SimpleNamespace(name="tiny", examples=[ex])


@pytest.mark.parametrize(
    ("stage", "pattern"),
    [(_Compiled, r"pipeline 'compiled': .*results\.json: cannot save step 'test-drop-compiled': its setting 'pattern' is "
                 r"re\.compile\('Lyon'\), a Pattern"),
     (_Private, r"pipeline 'private': .*results\.json: cannot read the settings of step 'test-first-n': .*no attribute 'n'")],
)
def test_eval_refuses_a_config_it_cannot_write_before_running_any_example(stage, pattern):
    from evals.sweep import run_eval

    stage.calls = 0
    pipe = Pipeline([stage()], name=stage.__name__.strip("_").lower())
    with pytest.raises(ValueError, match=pattern):
        run_eval(_dataset(), [pipe], [0.5], progress=False)
    assert stage.calls == 0


# -- 3. (consumer half) exception notes reach the eval's row and the command line's message ----------
class _Noted(Stage):
    name = "test-noted"

    def __call__(self, query, chunks, context):
        exc = RuntimeError("boom")
        exc.add_note("in stage 'x' (my.X)")
        exc.add_note("second note")
        raise exc


def test_the_eval_records_an_errors_notes():
    from evals.sweep import run_eval

    run = run_eval(_dataset(), [Pipeline([_Noted()], name="noted")], [0.5], progress=False)
    (row,) = run.rows_for("noted", 0.5)
    assert row.pipeline_error.startswith("RuntimeError: boom; in stage 'x' (my.X); second note"), row.pipeline_error


def test_the_command_lines_one_line_error_carries_the_notes(capsys):
    import typer

    from ragtrim.commands.common import user_errors

    exc = ValueError("invalid literal for int() with base 10: 'a'")
    exc.add_note("in stage 'buggy' (my_stages.Buggy)")
    with pytest.raises(typer.Exit):
        with user_errors():
            raise exc
    err = capsys.readouterr().err
    assert "error: invalid literal for int() with base 10: 'a'; in stage 'buggy' (my_stages.Buggy)" in err


def test_settings_are_read_by_the_names_inspect_signature_gives():
    """init_arg_names reads a plain __init__'s names from its code: the same as inspect.signature, for every
    built-in stage and for constructors it cannot read that way (decorated, a __signature__, *args/**kwargs)."""
    import functools
    import inspect

    from optimizer.registry import list_stages
    from optimizer.stage import init_arg_names

    def by_inspect(init):
        return [n for n, p in inspect.signature(init).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def logged(f):
        @functools.wraps(f)
        def inner(*a, **k):
            return f(*a, **k)
        return inner

    class Wrapped(Stage):
        name = "wrapped"

        @logged
        def __init__(self, *, n=1):
            self.n = n

    class Signed(Stage):
        name = "signed"

        def __init__(self, *args, **kwargs):
            self.m = kwargs.get("m", 2)
    Signed.__init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), inspect.Parameter("m", inspect.Parameter.KEYWORD_ONLY)])

    class Mixed(Stage):
        name = "mixed"

        def __init__(self, a, /, b=0, *rest, c=1, **more):
            self.a, self.b, self.c = a, b, c

    inits = [type(make_stage(n)).__init__ for n in list_stages()] + [Wrapped.__init__, Signed.__init__, Mixed.__init__, object.__init__]
    for init in inits:
        assert init_arg_names(init) == by_inspect(init), init
    assert Wrapped(n=3).get_params() == {"n": 3} and Signed(m=5).get_params() == {"m": 5}
    assert Mixed(1, 2, c=4).get_params() == {"a": 1, "b": 2, "c": 4}
