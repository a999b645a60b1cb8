"""What the docs promise a newcomer, checked: installs, offline tokenizers, caches, errors, custom parts.

Each test is one documented promise that did not hold: the wrappers' extras and ``warm_up``,
tokenizers with a read-only or empty tiktoken cache (never a download), the model cache
folder's errors, the console script's one-line install hints, saved pipelines with a
tokenizer of your own, custom stages from the command line, and the links of README.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from optimizer import Pipeline

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (fresh lru caches and model store), from ``tmp_path``."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300)


# -- 1. the wrappers' extras bring what `default` needs, and the wrappers have warm_up() ---------
def test_wrapper_extras_install_what_the_default_preset_needs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pins = {re.split(r"[\[<>=]", req)[0]: req for req in extras["embeddings"]}
    for extra in ("langchain", "llama-index"):
        model2vec = [req for req in extras[extra] if req.startswith("model2vec")]
        assert model2vec, f"ragtrim[{extra}] lacks model2vec, which the default preset's static model needs"
        assert model2vec[0].replace("[distill]", "") == pins["model2vec"].replace("[distill]", ""), "keep the pins in step"
    assert any(req.startswith("ipywidgets") for req in extras["notebooks"])


def test_wrappers_warm_up_their_pipeline_and_return_themselves(monkeypatch):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from optimizer.integrations.langchain import RagtrimCompressor
    from optimizer.integrations.llama_index import RagtrimPostprocessor, RagtrimRetriever

    warmed = []
    monkeypatch.setattr(Pipeline, "warm_up", lambda self: warmed.append(self.name) or self)
    pipeline = Pipeline.preset("bm25-pack", budget=100)
    compressor = RagtrimCompressor(pipeline=pipeline)
    post = RagtrimPostprocessor(budget=100, preset="truncate")
    assert compressor.warm_up() is compressor and post.warm_up() is post
    from llama_index.core.base.base_retriever import BaseRetriever

    class Empty(BaseRetriever):
        def _retrieve(self, query_bundle):
            return []

    retriever = RagtrimRetriever(Empty(), budget=100)
    assert retriever.warm_up() is retriever
    assert warmed == ["bm25-pack", "truncate", "default"]


@pytest.mark.slow
def test_a_wrapper_on_an_empty_cache_builds_the_static_model_with_warm_up(tmp_path):
    pytest.importorskip("langchain_core")
    pytest.importorskip("model2vec")
    code = """
from langchain_core.documents import Document
from optimizer.integrations.langchain import RagtrimCompressor
from optimizer.models import ModelNotBuiltError
docs = [Document(page_content="Paris is the capital of France. It is big."), Document(page_content="Lyon is in France.")]
compressor = RagtrimCompressor(budget=12)
try:
    compressor.compress_documents(docs, "capital of France?")
    print("ran without a model")
except ModelNotBuiltError as exc:
    print("not built:", "warm_up()" in str(exc))
print([d.page_content for d in compressor.warm_up().compress_documents(docs, "capital of France?")])
"""
    out = run_python(code, tmp_path, RAGTRIM_CACHE=str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["not built: True", "['Paris is the capital of France. It is big.']"]


# -- 2. and 8. tiktoken: a read-only cache folder is fine, a missing encoding fails fast ----------
def test_tokenizers_load_when_tiktokens_cache_folder_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = "from optimizer.tokenizer import get_tokenizer; print(get_tokenizer('cl100k_base').count('hello world'), get_tokenizer('gpt-4o').count('hello world'))"
    out = run_python(code, tmp_path, TIKTOKEN_CACHE_DIR=str(blocker / "cache"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "2"]


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """tiktoken's cache is an empty folder; any download attempt is recorded (and fails)."""
    import tiktoken.load

    attempts = []

    def download(blobpath):
        attempts.append(blobpath)
        raise ConnectionError(f"no network in this test: {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", download)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    return attempts


@pytest.mark.parametrize("name", ["p50k_base", "r50k_base", "gpt2"])
def test_an_encoding_not_shipped_fails_without_trying_to_download(no_download, name):
    from optimizer.tokenizer import TiktokenTokenizer

    with pytest.raises(ValueError) as info:
        TiktokenTokenizer(name)
    message = str(info.value)
    assert no_download == [], "ragtrim tried to download a BPE file"
    assert f"{name!r} is not shipped for offline use" in message and "never downloads" in message
    assert "https://openaipublic.blob.core.windows.net/" in message  # which file ...
    assert os.environ["TIKTOKEN_CACHE_DIR"] in message  # ... and where to save it
    assert "hf:" in message and "cl100k_base" in message


def test_an_encoding_whose_file_is_in_tiktokens_cache_loads_from_there(no_download, monkeypatch, tmp_path):
    import tiktoken

    from optimizer import _offline

    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    (cache / _offline.cache_key(url)).write_bytes((_offline.packaged_tiktoken_cache() / _offline.cache_key(url)).read_bytes())
    monkeypatch.setattr(_offline, "packaged_tiktoken_cache", lambda: None)  # as for a user's own p50k_base file
    encoding = _offline.load_encoding.__wrapped__("cl100k_base")
    assert isinstance(encoding, tiktoken.Encoding) and encoding.encode_ordinary("hello world") == [15339, 1917]
    (cache / _offline.cache_key(url)).write_bytes(b"aGVsbG8= 0\n")  # not the file tiktoken expects
    with pytest.raises(_offline.MissingBPEFile):
        _offline.load_encoding.__wrapped__("cl100k_base")
    assert no_download == []


def test_an_encoding_built_from_a_shipped_file_works_offline(no_download):
    import tiktoken

    if "o200k_harmony" not in tiktoken.list_encoding_names():
        pytest.skip("this tiktoken has no o200k_harmony")
    from optimizer.tokenizer import get_tokenizer

    assert get_tokenizer("o200k_harmony").count("hello world") == 2 and no_download == []


# -- 3. and 5. the model cache folder: said plainly when it cannot be written; always absolute ------
def test_an_unwritable_model_cache_is_named_and_no_extra_is_blamed(monkeypatch, tmp_path):
    from optimizer import embeddings

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RAGTRIM_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(embeddings.subprocess, "run", lambda *a, **k: pytest.fail("a build started in an unwritable cache"))
    with pytest.raises(RuntimeError) as info:
        embeddings.build_models(["static"])
    message = str(info.value)
    assert str(blocker / "cache") in message and "not writable" in message and "set RAGTRIM_CACHE" in message
    assert "extra" not in message


def test_a_failed_build_blames_an_extra_only_when_a_module_is_missing(tmp_path):
    from optimizer.embeddings import _build_hint

    target = tmp_path / "static-model"
    missing = _build_hint("static", "ModuleNotFoundError: No module named 'model2vec'", target)
    assert "pip install 'ragtrim[static]'" in missing and "--only static" in missing
    other = _build_hint("minilm-int8", "RuntimeError: ONNX export failed: shape mismatch", target)
    assert "extra" not in other and "pip install" not in other
    full = _build_hint("static", "OSError: [Errno 28] No space left on device", target)
    assert str(tmp_path) in full and "RAGTRIM_CACHE" in full and "pip install" not in full


def test_a_relative_ragtrim_cache_is_made_absolute_when_read(monkeypatch, tmp_path):
    from optimizer.cache import cache_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTRIM_CACHE", "models")
    assert cache_dir().is_absolute() and cache_dir() == Path(os.getcwd(), "models")


# -- 4. the console script: a missing optional dependency is one line and exit status 2 ----------
def test_console_script_says_which_extra_to_install_in_one_line(monkeypatch, capsys):
    from optimizer.lazy import MissingDependency
    from ragtrim import cli

    def broken():
        raise MissingDependency("the gateway needs the optional dependency 'fastapi', which is not installed; "
                                "install it with: pip install 'ragtrim[serve]'")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ragtrim[serve]'" in err and "Traceback" not in err


def test_a_serve_command_without_its_extra_prints_the_install_line(tmp_path):
    code = ("import sys; sys.modules['sqlalchemy'] = None; sys.argv = ['ragtrim', 'tenants', 'list']; "
            "from ragtrim.cli import main; main()")
    out = run_python(code, tmp_path, RAGTRIM_CACHE=str(tmp_path / "cache"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "'sqlalchemy'" in out.stderr and "pip install 'ragtrim[serve]'" in out.stderr


def test_an_import_error_that_is_not_a_missing_extra_keeps_its_traceback(monkeypatch):
    from ragtrim import cli

    def broken():
        raise ImportError("cannot import name 'gone' from 'numpy'", name="numpy")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(ImportError, match="gone"):
        cli.main()


# -- 9. README's links resolve; DESIGN.md is in the repository ------------------------------------
def test_readme_links_to_files_of_the_repository():
    text = README.read_text(encoding="utf-8")
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t and not t.startswith("#")}
    assert "DESIGN.md" in targets
    assert [t for t in sorted(targets) if not (ROOT / t).exists()] == []
    for cited in ("README.md", "BENCHMARKS.md", "evals/metrics.py", "evals/sweep.py"):
        if "DESIGN.md" in (ROOT / cited).read_text(encoding="utf-8"):
            assert (ROOT / "DESIGN.md").is_file(), f"{cited} cites DESIGN.md, which is not in the repository"


# -- 10. a pipeline saved with a tokenizer of your own -------------------------------------------
class Words:
    name = "words"

    def encode(self, text):
        return [len(w) for w in text.split()]

    def count(self, text):
        return len(text.split())

    def prefix_within(self, text, max_tokens):
        if len(text.split()) <= max_tokens:
            return len(text)
        end = 0
        for word in text.split()[: max(max_tokens, 0)]:
            end = text.index(word, end) + len(word)
        return end


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_saving_a_custom_tokenizer_warns_and_loading_says_to_pass_it_again(tmp_path, suffix):
    path = tmp_path / f"mine{suffix}"
    pipeline = Pipeline.preset("truncate", budget=6, tokenizer=Words())
    with pytest.warns(UserWarning, match=r"records only the name 'words'.*tokenizer=") as caught:
        pipeline.save(path)
    assert len(caught) == 1
    with pytest.raises(ValueError, match=r"unknown tiktoken encoding 'words'.*tokenizer=MyTokenizer\(\)"):
        Pipeline.load(path)
    loaded = Pipeline.load(path, tokenizer=Words())
    assert loaded.to_config() == pipeline.to_config()
    assert loaded.run("q", ["one two three four five six seven"]).text == "[1] one two three four five"


def test_saving_a_named_tokenizer_does_not_warn(tmp_path, recwarn):
    from optimizer import get_tokenizer

    Pipeline.preset("truncate", budget=6, tokenizer=get_tokenizer("o200k_base")).save(tmp_path / "p.yaml")
    Pipeline.preset("truncate", budget=6, tokenizer="gpt-4o").save(tmp_path / "q.yaml")
    assert [w for w in recwarn if issubclass(w.category, UserWarning)] == []
    assert Pipeline.load(tmp_path / "p.yaml").tokenizer_name == "o200k_base"


def test_the_tokenizer_protocol_is_exported():
    import optimizer

    assert "Tokenizer" in optimizer.__all__ and isinstance(Words(), optimizer.Tokenizer)


# -- 11. a custom stage: the error says how to register it, an entry point reaches the CLI ---------
def test_an_unknown_stage_says_how_to_make_ones_own_known():
    with pytest.raises(ValueError) as info:
        Pipeline.from_config({"steps": [{"stage": "keep-long"}]})
    message = str(info.value)
    assert "unknown stage 'keep-long'. Known stages: " in message
    assert "register_stage(" in message and "ragtrim.stages" in message and "[project.entry-points." in message
    with pytest.raises(ValueError, match=r"unknown stage 'rerank-bm52' \(did you mean 'rerank-bm25'.*\?\)\. Known stages"):
        Pipeline.from_config({"steps": ["rerank-bm52"]})


def test_a_stage_from_an_installed_packages_entry_point_runs_from_the_command_line(tmp_path):
    """The README's entry-point snippet, installed as a package would be, then named by a config."""
    site = tmp_path / "site"
    (site / "my_stages").mkdir(parents=True)
    (site / "my_stages" / "__init__.py").write_text("")
    (site / "my_stages" / "keep_long.py").write_text(
        "from optimizer import Stage\n\n\nclass KeepLong(Stage):\n    name = 'keep-long'\n\n"
        "    def __init__(self, *, min_chars: int = 40):\n        self.min_chars = min_chars\n\n"
        "    def __call__(self, query, chunks, context):\n        return [c for c in chunks if len(c.text) >= self.min_chars]\n"
    )
    snippet = re.search(r'```toml\n(\[project\.entry-points\."ragtrim\.stages"\]\n.*?)```', README.read_text(encoding="utf-8"), re.S)
    assert snippet, "README lost its entry-point snippet"
    points = tomllib.loads(snippet.group(1))["project"]["entry-points"]["ragtrim.stages"]
    assert points == {"keep-long": "my_stages.keep_long:KeepLong"}
    dist = site / "my_stages-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-stages\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text('[ragtrim.stages]\nkeep-long = my_stages.keep_long:KeepLong\n')
    (tmp_path / "chunks.jsonl").write_text(
        json.dumps({"id": "short", "text": "Too short."}) + "\n"
        + json.dumps({"id": "long", "text": "Paris is the capital of France and its largest city."}) + "\n"
    )
    (tmp_path / "mine.yaml").write_text("steps:\n  - stage: keep-long\n    params:\n      min_chars: 20\n")
    code = ("import sys; sys.argv = ['ragtrim', 'optimize', '--chunks', 'chunks.jsonl', '--query', 'capital?', "
            "'--config', 'mine.yaml', '--budget', '300']; from ragtrim.cli import main; main()")
    out = run_python(code, tmp_path, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[1] Paris is the capital of France and its largest city."


# -- 13. warm_up loads what the first run would otherwise time ------------------------------------
def test_warm_up_loads_the_sentence_splitter_too(tmp_path):
    code = ("import sys; from optimizer import Pipeline; Pipeline.preset('truncate').warm_up(); "
            "print('blingfire' in sys.modules)")
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True"]
