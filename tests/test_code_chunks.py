"""Technical chunks (code, logs, requirement lists) keep their line structure through the sentence stages:
a chunk that starts mid-function keeps its first line's indentation, log lines are records even when a
message ends with a full stop, and a list of lines without spaces is neither wrapped prose nor cut mid-token."""

from __future__ import annotations

import random
import textwrap

import pytest

from optimizer import Chunk, Pipeline
from optimizer.render import Renderer
from optimizer.sentences import MAX_SENTENCE_CHARS, _split_long, split_sentences
from optimizer.tokenizer import get_tokenizer

MID_FUNCTION = (
    "        if resp.status_code != 503:\n"
    "            return resp\n"
    "        log.warning(\"503 from %s, retry %d\", url, attempt)\n"
    "        time.sleep(0.75 * 2 ** attempt)\n"
    "    raise FetchError(url)\n"
)
OTHER_CODE = "def list_buckets(prefix=''):\n    resp = session.get('/buckets', params={'prefix': prefix}, timeout=10)\n    return resp.json()['buckets']\n"
TOKENIZER = get_tokenizer("cl100k_base")
CODE_QUERY = "What does fetch_with_retry do when the response is not a 503?"


def code_chunks(titled: bool = True) -> list[dict]:
    return [{"id": "b", "text": MID_FUNCTION, **({"title": "blobs.py lines 5-9"} if titled else {})},
            {"id": "o", "text": OTHER_CODE, **({"title": "buckets.py lines 1-3"} if titled else {})}]


def assert_spans_exact(result, chunks):
    source = {c["id"]: c["text"] for c in chunks}
    for s in result.spans:
        assert result.text[s.context_start : s.context_end] == source[s.chunk_id][s.start : s.end]


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("titled", [True, False])
def test_a_chunk_starting_mid_function_keeps_its_first_lines_indentation(preset, titled):
    chunks = code_chunks(titled)
    result = Pipeline.preset(preset).run(CODE_QUERY, chunks, budget=1.0)
    lines = result.text.split("\n")
    assert "        if resp.status_code != 503:" in lines, result.text  # not glued to "[1] ", not at column 0
    assert "    raise FetchError(url)" in lines  # so `raise` still reads as outside the `if`
    assert OTHER_CODE.strip() in result.text  # everything fits, the `def` line that heads its paragraph too
    assert_spans_exact(result, chunks)
    (first,) = [s for s in result.spans if s.chunk_id == "b"][:1]
    assert first.start == 0  # the indentation is part of the kept span
    assert result.tokens <= result.budget and result.tokens == TOKENIZER.count(result.text)


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("budget", [25, 40, 60, 80])
def test_restored_indentation_stays_within_a_token_budget(preset, budget):
    chunks = code_chunks(titled=False)
    result = Pipeline.preset(preset).run(CODE_QUERY, chunks, budget=budget)
    assert result.tokens <= budget and result.tokens == TOKENIZER.count(result.text)
    assert_spans_exact(result, chunks)
    for line in result.text.split("\n"):  # every printed code line as written (a marker "[n]" on its own line)
        assert line == "" or line.startswith("[") or line in MID_FUNCTION.split("\n") + OTHER_CODE.split("\n"), result.text


def test_keep_gives_the_first_kept_line_its_indentation_when_more_lines_follow():
    code = Chunk(id="c", text="    a = 1\n    b = 2\n    c = 3\nd = 4")
    kept = code.keep([(4, 9), (24, 29)])
    assert kept.text == "    a = 1\n    c = 3" and kept.pieces[0] == (0, 9)
    assert code.keep([(24, 29)]).text == "c = 3"  # one line alone: its indentation is relative to nothing shown
    yaml = "  worker:\n    image: w:2\n    replicas: 3\n"
    assert Chunk(id="y", text=yaml).keep([(2, 24)]).text == "  worker:\n    image: w:2"
    diff = " context line\n-old line\n+new line\n"
    assert Chunk(id="d", text=diff).keep([(1, 13), (24, 33)]).text == " context line\n+new line"


def test_a_prose_chunk_opening_with_spaces_is_cut_as_before():
    prose = Chunk(id="p", text="  The tower is 330 m tall. It was built in 1889. It is in Paris.")
    assert prose.keep([(2, 26), (49, 64)]).text == "The tower is 330 m tall. It is in Paris."
    assert Renderer().render([prose.keep([(2, 26)])]).text == "[1] The tower is 330 m tall."


def test_an_indented_first_line_starts_a_line_of_its_own_under_the_marker():
    block = Chunk(id="c", text="    a = 1\n    b = 2\nc = 3")
    assert Renderer().render([block]).text == "[1]\n    a = 1\n    b = 2\nc = 3"
    assert Renderer().render([block.keep([(4, 9), (20, 25)])]).text == "[1]\n    a = 1\nc = 3"
    assert Renderer().render([Chunk(id="s", text="  one line")]).text == "[1]   one line"  # no line structure: as before


# -- log windows --------------------------------------------------------------------------------------------

LOG_MESSAGES = ["GET /api/orders 200 {ms}ms", "GET /api/customers/{n} 200 {ms}ms", "POST /api/orders 201 {ms}ms",
                "cache hit ratio 0.{n}", "db pool in use {n}/20", "GET /healthz 200 1ms", "worker heartbeat ok"]
LOG_ERROR = ("2024-03-01T12:02:50Z ERROR api-7f9c payment provider stripe returned 402 card_declined for order 88213, "
             "marking order as failed.")


def log_windows() -> list[dict]:
    rnd = random.Random(5)
    chunks = []
    for c in range(5):
        lines = [f"2024-03-01T12:{c:02d}:{k * 5:02d}Z INFO  api-7f9c "
                 + rnd.choice(LOG_MESSAGES).format(ms=rnd.randint(3, 90), n=rnd.randint(10, 99)) for k in range(12)]
        if c == 2:
            lines[10] = LOG_ERROR
        chunks.append({"id": f"w{c}", "title": "api-7f9c logs", "text": "\n".join(lines)})
    return chunks


def test_log_lines_are_records_even_when_a_message_ends_with_a_full_stop():
    text = log_windows()[2]["text"]
    assert [text[s:e] for s, e in split_sentences(text)] == text.split("\n")
    glog = "I0301 12:00:05.120 server.go:88] listening on :8080.\nW0301 12:00:06.001 pool.go:41] slow query\nE0301 12:00:07.310 pay.go:12] card declined."
    assert len(split_sentences(glog)) == 3
    levels = "INFO: starting worker\nWARNING: retrying the upload.\nERROR: giving up after 3 tries\nINFO: done"
    assert len(split_sentences(levels)) == 4


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_the_log_line_that_answers_fits_a_small_budget(preset):
    result = Pipeline.preset(preset).run("Why did order 88213 fail?", log_windows(), budget=0.2)
    assert "card_declined" in result.text, result.text


# -- requirement lists ---------------------------------------------------------------------------------------

PINS = ["aiohttp==3.9.1", "alembic==1.13.1", "anyio==4.2.0", "boto3==1.34.11", "celery==5.3.6", "click==8.1.7",
        "fastapi==0.109.0", "gunicorn==21.2.0", "httpx==0.27.0", "jinja2==3.1.3", "pydantic==2.5.3", "redis==5.0.1",
        "requests==2.31.0", "sqlalchemy==2.0.25", "stripe==7.1.0", "structlog==24.1.0", "uvicorn==0.27.0",
        "python-multipart==0.0.6", "itsdangerous==2.1.2", "passlib==1.7.4", "bcrypt==4.1.2"]


def test_a_requirements_file_is_a_record_a_line():
    text = "\n".join(PINS) + "\n"
    assert [text[s:e] for s, e in split_sentences(text)] == PINS


def test_a_long_range_without_spaces_is_cut_at_a_line_break_not_mid_token():
    text = "\n".join(PINS * 8)  # far past MAX_SENTENCE_CHARS, no space anywhere
    assert len(text) > 2 * MAX_SENTENCE_CHARS
    pieces = _split_long(text, 0, len(text))
    assert len(pieces) > 2
    assert all(text[s:e].split("\n")[0] in PINS and text[s:e].split("\n")[-1] in PINS for s, e in pieces)


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_the_pinned_version_that_answers_fits_a_small_budget(preset):
    filler = [{"id": f"d{i}", "title": "Dockerfile", "text": f"FROM base AS stage{i}\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nEXPOSE 80{i}"}
              for i in range(6)]
    chunks = [{"id": "req", "title": "requirements.txt", "text": "\n".join(PINS * 3) + "\n"}] + filler
    result = Pipeline.preset(preset).run("Which version of stripe is pinned in requirements.txt?", chunks, budget=0.2)
    assert "stripe==7.1.0" in result.text, result.text


def test_a_token_cut_of_indented_lines_counts_the_indentation_it_keeps():
    from optimizer.packer import cut_to_tokens
    from optimizer.stage import StageContext

    context = StageContext.default()
    words = "the gateway forwards each request to the upstream model after trimming the retrieved passages to the budget"
    wrapped = textwrap.fill(words, 30, initial_indent="  ", subsequent_indent="  ")  # one sentence over four lines
    assert len(split_sentences(wrapped)) == 1
    chunk = Chunk(id="c", text=wrapped)
    multi = 0
    for n in range(2, 30):
        cut, how = cut_to_tokens(chunk, n, context)
        assert context.count(cut.text) <= n, (n, cut.text)
        if "\n" in cut.text:
            multi += 1
            assert cut.text.startswith("  the gateway")  # its first line at its own depth
    assert multi > 5
