import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ragtrim.cli import app
from optimizer.tokenizer import get_tokenizer

runner = CliRunner()

CHUNKS = [
    {"id": "a", "title": "Paris", "text": "Paris is the capital of France. It has 2.1 million inhabitants."},
    {"id": "b", "title": "Lyon", "text": "Lyon is a city in France. It is known for its food.", "score": 0.4},
]


@pytest.fixture
def chunk_file(tmp_path):
    path = tmp_path / "chunks.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CHUNKS) + "\n", encoding="utf-8")
    return path


def test_optimize_json_output_has_the_contract_fields(chunk_file):
    result = runner.invoke(app, ["optimize", "--chunks", str(chunk_file), "--query", "capital of France", "--budget", "20", "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"text", "tokens", "budget", "spans", "trace"} <= set(out)
    assert out["tokens"] <= 20 == out["budget"]
    assert get_tokenizer("cl100k_base").count(out["text"]) == out["tokens"]
    source = {c["id"]: c["text"] for c in CHUNKS}
    for span in out["spans"]:
        assert out["text"][span["context_start"] : span["context_end"]] == source[span["chunk_id"]][span["start"] : span["end"]]


def test_optimize_text_reads_stdin(chunk_file):
    result = runner.invoke(app, ["optimize", "--chunks", "-", "--query", "capital", "--budget", "0.5"], input=chunk_file.read_text())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("[1] Paris")


def test_optimize_with_config_and_tokenizer(tmp_path, chunk_file):
    config = tmp_path / "p.yaml"
    config.write_text("steps:\n  - stage: rerank-bm25\n  - stage: order-chunks\n    params: {by: document}\nbudget: 300\n", encoding="utf-8")
    result = runner.invoke(app, ["optimize", "-c", str(chunk_file), "-q", "food", "--config", str(config), "-t", "o200k_base", "-f", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["tokenizer"] == "o200k_base" and out["budget"] == 300
    assert [s["chunk_id"] for s in out["spans"]] == ["a", "b"]  # document order


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "budget must be"),
        (["--budget", "lots"], "budget must be"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--tokenizer", "nope"], "unknown tiktoken encoding"),
        (["--format", "xml"], "--format must be"),
    ],
)
def test_bad_options_give_clear_errors(chunk_file, args, message):
    result = runner.invoke(app, ["optimize", "-c", str(chunk_file), "-q", "x", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": }\n', encoding="utf-8")
    result = runner.invoke(app, ["optimize", "-c", str(path), "-q", "x"])
    assert result.exit_code == 2
    assert f"{path}, line 2: not valid JSON" in result.output


def test_chunk_that_is_not_text_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": 5}\n', encoding="utf-8")
    result = runner.invoke(app, ["optimize", "-c", str(path), "-q", "x"])
    assert result.exit_code == 2 and "line 1" in result.output and "text must be a string" in result.output


def test_duplicate_ids_in_file_are_an_error(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', encoding="utf-8")
    result = runner.invoke(app, ["optimize", "-c", str(path), "-q", "x"])
    assert result.exit_code == 2 and "duplicate chunk id 'a'" in result.output


def test_console_script_runs_offline(chunk_file):
    proc = subprocess.run(
        [sys.executable, "-m", "ragtrim", "optimize", "-c", str(chunk_file), "-q", "capital", "-b", "30", "-f", "trace"],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pack" in proc.stdout and "[1] Paris" in proc.stdout


def test_the_command_line_has_every_group():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for command in ("optimize", "presets", "stages", "eval", "demo", "tune", "models"):
        assert command in res.output, command


def test_models_list_names_the_cache_and_each_model():
    res = CliRunner().invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("cache: ") and "static" in res.output and "minilm-int8" in res.output


def test_stages_lists_the_new_names_only():
    res = CliRunner().invoke(app, ["stages"])
    names = res.output.split()
    assert "rerank-bm25" in names and "compress-sentences" in names and "bm25" not in names
