"""`ragtrim optimize` on inputs a newcomer pipes or points it at (thirtieth round's CLI hunt)."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from optimizer.records import Result, StageTrace
from ragtrim.cli import app

runner = CliRunner()
LINE = json.dumps({"id": "a", "text": "Paris is the capital of France."}) + "\n"


def optimize(*args: str, stdin: bytes | None = None):
    return runner.invoke(app, ["optimize", "-q", "capital", "-b", "40", *args], input=stdin)


def test_a_utf8_byte_order_mark_on_stdin_is_read_as_from_a_file(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + LINE.encode())
    from_file, from_pipe = optimize("-c", str(path)), optimize("-c", "-", stdin=path.read_bytes())
    assert from_file.exit_code == from_pipe.exit_code == 0, from_pipe.output
    assert from_pipe.stdout == from_file.stdout == "[1] Paris is the capital of France.\n"


def test_utf16_on_stdin_is_named_with_the_command_that_converts_it():
    result = optimize("-c", "-", stdin=LINE.encode("utf-16"))
    assert result.exit_code == 2
    assert "UTF-16LE" in result.output and "pipe it through iconv -f UTF-16 -t UTF-8" in result.output
    assert "CSV" not in result.output


def test_a_latin1_byte_on_stdin_is_named_as_not_utf8_not_as_a_split_emoji():
    # a real process: in UTF-8 mode (PYTHONUTF8=1, or a C locale) Python's own stdin turns the byte into a surrogate
    env = {**os.environ, "PYTHONUTF8": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "ragtrim", "optimize", "-q", "capital", "-b", "40", "-c", "-"],
                          input=b'{"id": "a", "text": "caf\xe9 is the capital"}\n', capture_output=True, env=env, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "byte 0xe9 is not UTF-8" in err and "iconv -f cp1252" in err
    assert "surrogate" not in err


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_no_chunks_is_an_error_not_an_empty_context(tmp_path, content):
    path = tmp_path / "chunks.jsonl"
    path.write_bytes(content)
    for result in (optimize("-c", str(path)), optimize("-c", "-", stdin=content)):
        assert result.exit_code == 2
        assert "holds no chunks" in result.output and result.stdout == ""


@pytest.mark.parametrize(("body", "command"), [
    ([{"id": "a", "text": "x"}], "jq -c '.[]'"),
    ({"chunks": [{"id": "a", "text": "x"}]}, "jq -c '.chunks[]'"),
    ({"documents": [{"id": "a", "text": "x"}]}, "jq -c '.documents[]'"),
])
def test_all_chunks_on_one_line_gets_the_command_that_converts_them(tmp_path, body, command):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    result = optimize("-c", str(path))
    assert result.exit_code == 2
    assert command in result.output and "c.jsonl" in result.output


def test_a_folder_is_called_a_folder(tmp_path):
    result = optimize("-c", str(tmp_path))
    assert result.exit_code == 2
    assert "is a folder" in result.output and "no such file" not in result.output


def test_an_empty_tokenizer_is_refused_not_replaced():
    result = optimize("-c", "-", "-t", "", stdin=LINE.encode())
    assert result.exit_code == 2 and "--tokenizer is empty" in result.output


def test_trace_table_columns_stay_apart_for_slow_steps_and_many_chunks():
    step = StageTrace(name="compress-sentences", tokens_in=5000, tokens_out=333, chunks_in=300, chunks_out=191,
                      ms=105131.88, dropped=())
    table = Result(text="", tokens=0, budget=333, tokens_full=5000, tokenizer="cl100k_base", chunks=(), spans=(),
                   trace=(step,)).trace_table()
    row = table.splitlines()[1].split()
    assert row[3:5] == ["300->191", "105131.88"]
