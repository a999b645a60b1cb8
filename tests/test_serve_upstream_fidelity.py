"""The gateway relays an upstream's answer as the client would have had it, and charges what it carried.

A scripted OpenAI-compatible upstream and the gateway both run on loopback (uvicorn), and a real
HTTP client talks to the gateway. Each test scripts one way a real upstream answers:

1. events that end in CRLF CRLF (sse-starlette's default) or CR CR, which the SSE spec allows as
   well as LF LF: relayed event by event as they come, the usage chunk kept from a client that did
   not ask for it, and the upstream's usage charged (or, when the client leaves, what it was sent);
2. a compressed body (gzip, as a proxy that compresses ``text/event-stream`` sends it): relayed and
   charged decoded; a body in an encoding the gateway cannot decode is a 502, never relayed (the
   upstream answered 200, so it is charged its reservation as an estimate);
3. an HTTP error: a 4xx about the request (a bad parameter, a rate limit) reaches the client as that
   4xx with the upstream's error (its code too) and Retry-After (OpenAI's SDKs would send a 502
   again); only an upstream fault is a 502. Either way the hold is released and nothing is charged;
4. a stream that does not end its events as it should: a last event the stream ends without a
   blank line is relayed and charged; an event that runs past ``max_event_bytes`` is never held
   whole: the stream is cut there with an in-band error, and the request charged what came before.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402

from serve_fixtures import Stack, assert_estimated, chat, final_rows, gateway_config, spent_and_reserved, stack, wait_for  # noqa: E402

USAGE = {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}
WORDS = [f" w{i}" for i in range(12)]
UNCHARGED = ("tokens_full", "tokens_sent", "prompt_tokens", "completion_tokens", "cost_micro", "saved_micro")


def events(sep: bytes, words: list[str] = WORDS) -> list[bytes]:
    """A streamed answer as an upstream sends it, each event ending in ``sep``: a role chunk, one chunk
    per word, the finish chunk, the usage chunk (:data:`USAGE`) and ``[DONE]``."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}

    def event(choices: list[Any], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + sep

    out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    out += [event([{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in words]
    out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    out.append(event([], usage=USAGE))
    return out + [b"data: [DONE]" + sep]


def without_usage(sent: list[bytes]) -> bytes:
    """The bytes a client that did not ask for ``include_usage`` gets: every event but the usage chunk."""
    return b"".join(e for e in sent if b'"usage"' not in e)


def completion(content: str = "hello there") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o", "usage": USAGE,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def assert_released(stack: Stack, status: int, error: str) -> dict[str, Any]:
    """One ``failed`` row with ``status`` and ``error`` in its error, nothing charged, nothing held; the row."""
    [row] = final_rows(stack.service)
    assert (row["action"], row["status"]) == ("failed", status) and error in row["error"], row
    assert all(row[k] == 0 for k in UNCHARGED) and row["reserved_tokens"] > 0, row
    assert spent_and_reserved(stack.service) == (0, 0)
    return row


# 1. events that end in CRLF or CR


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("sep", [b"\r\n\r\n", b"\r\r"], ids=["crlf", "cr"])
def test_events_ending_in_crlf_or_cr_are_relayed_as_they_come_and_charged_the_upstreams_usage(tmp_path, sep, include_usage):
    sent = events(sep)
    gate, waited = threading.Event(), []

    async def pieces() -> AsyncIterator[bytes]:
        for i, event in enumerate(sent):
            yield event[:-1]  # the blank line arrives in two reads: the gateway must not cut a CRLF in two
            await asyncio.sleep(0.005)
            yield event[-1:]
            if i == 1:  # the first word is out: hold the rest until the client has it
                waited.append(await wait_for(gate, 5.0))

    with stack(tmp_path, lambda body: StreamingResponse(pieces(), media_type="text/event-stream")) as s:
        got = b""
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        with httpx.stream("POST", f"{s.url}/v1/chat/completions", json=chat(stream=True, **options), headers=s.auth(),
                          timeout=30) as r:
            assert r.status_code == 200
            for piece in r.iter_raw():
                got += piece
                if b" w0" in got:
                    gate.set()
        assert waited == [True], "the first word reached the client only after the upstream had finished"
        assert got == (b"".join(sent) if include_usage else without_usage(sent))
        [row] = final_rows(s.service)
        assert (row["action"], row["status"], row["error"], row["usage_source"]) == ("ok", 200, "", "upstream")
        assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 12)
        assert spent_and_reserved(s.service) == (17, 0)


def test_a_client_leaving_a_crlf_stream_is_charged_the_words_it_was_sent(tmp_path):
    from optimizer.tokenizer import get_tokenizer

    words = [f" w{i}" for i in range(40)]
    sent = events(b"\r\n\r\n", words)

    async def slowly() -> AsyncIterator[bytes]:
        for event in sent:
            yield event
            await asyncio.sleep(0.1)

    with stack(tmp_path, lambda body: StreamingResponse(slowly(), media_type="text/event-stream")) as s:
        got = b""
        with httpx.stream("POST", f"{s.url}/v1/chat/completions", json=chat(stream=True), headers=s.auth(),
                          timeout=httpx.Timeout(30, read=3)) as r:
            try:
                for piece in r.iter_raw():
                    got += piece
                    if b" w0" in got:
                        break  # leave once the first word is in
            except httpx.ReadTimeout:
                pass  # nothing came in 3 s: leave all the same
        [row] = final_rows(s.service)
        assert row["action"] == "ok" and "client disconnected" in row["error"], row
        whole = get_tokenizer("cl100k_base").count("".join(words))
        assert row["usage_source"] == "counted" and 0 < row["completion_tokens"] < whole, row
        assert spent_and_reserved(s.service) == (row["prompt_tokens"] + row["completion_tokens"], 0)
        assert b" w0" in got, "no word reached the client while the upstream streamed"


# 2. compressed bodies


def gzipped(body: dict[str, Any]) -> Response:
    """The upstream's answer gzipped whatever the request accepted: a stream flushed event by event, or the JSON."""
    if not body.get("stream"):
        return Response(gzip.compress(json.dumps(completion()).encode()), media_type="application/json",
                        headers={"Content-Encoding": "gzip"})

    async def compressed() -> AsyncIterator[bytes]:
        z = zlib.compressobj(wbits=31)  # the gzip format
        for event in events(b"\n\n"):
            yield z.compress(event) + z.flush(zlib.Z_SYNC_FLUSH)
        yield z.flush()

    return StreamingResponse(compressed(), media_type="text/event-stream", headers={"Content-Encoding": "gzip"})


def test_a_gzipped_upstream_is_relayed_decoded_and_charged_its_usage_streamed_or_not(tmp_path):
    with stack(tmp_path, gzipped) as s:
        with httpx.stream("POST", f"{s.url}/v1/chat/completions", json=chat(stream=True, stream_options={"include_usage": True}),
                          headers=s.auth(), timeout=30) as r:
            assert r.status_code == 200 and "content-encoding" not in r.headers
            got = b"".join(r.iter_raw())
        assert got == b"".join(events(b"\n\n"))
        plain = s.post()
        assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"] == "hello there"
        rows = final_rows(s.service)
        assert [(r["stream"], r["action"], r["usage_source"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
            (True, "ok", "upstream", 5, 12), (False, "ok", "upstream", 5, 12)]
        assert spent_and_reserved(s.service) == (34, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_a_body_in_an_encoding_the_gateway_cannot_decode_is_a_502_never_relayed_and_charged_as_estimated(tmp_path, stream):
    """The upstream answered 200 (it did the work) in an encoding the gateway cannot read: the usage is unknown, so the
    reservation is charged as an estimate, and the client's 502 says so."""
    def compressed(body: dict[str, Any]) -> Response:  # LZW ("compress"): no HTTP client decodes it any more
        return Response(b"\x1f\x9d\x90garbage that is not an event stream", headers={"Content-Encoding": "compress"},
                        media_type="text/event-stream" if stream else "application/json")

    with stack(tmp_path, compressed) as s:
        r = s.post(stream=stream)
        assert r.status_code == 502 and b"garbage" not in r.content
        error = r.json()["error"]
        assert error["type"] == "upstream_error" and "Content-Encoding compress" in error["message"], error
        assert "charged its reservation as an estimate" in error["message"]
        assert_estimated(s, 502, "Content-Encoding compress")


# 3. the upstream's HTTP errors


TEMPERATURE = {"message": "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.",
               "type": "invalid_request_error", "param": "temperature", "code": "decimal_above_max_value"}
RATE_LIMIT = {"message": "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 30000.",
              "type": "tokens", "param": None, "code": "rate_limit_exceeded"}


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_400_reaches_the_client_as_that_400_with_the_upstreams_error(tmp_path, stream):
    with stack(tmp_path, lambda body: JSONResponse({"error": TEMPERATURE}, status_code=400)) as s:
        r = s.post(stream=stream, temperature=3)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {"type": "invalid_request_error", "message": TEMPERATURE["message"], "param": "temperature",
                                     "code": "decimal_above_max_value"}
        assert len(s.calls) == 1
        row = assert_released(s, 400, "upstream answered HTTP 400")
        assert r.headers["X-Ragtrim-Request-Id"] == row["id"] and "decimal above maximum value" in row["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_429_reaches_the_client_as_a_429_with_its_retry_after(tmp_path, stream):
    headers = {"Retry-After": "7", "retry-after-ms": "7000"}
    with stack(tmp_path, lambda body: JSONResponse({"error": RATE_LIMIT}, status_code=429, headers=headers)) as s:
        r = s.post(stream=stream)
        assert r.status_code == 429, r.text
        assert (r.headers.get("retry-after"), r.headers.get("retry-after-ms")) == ("7", "7000")
        assert r.json()["error"] == {"type": "tokens", "message": RATE_LIMIT["message"], "param": None,
                                     "code": "rate_limit_exceeded"}
        row = assert_released(s, 429, "upstream answered HTTP 429")
        assert r.headers["X-Ragtrim-Request-Id"] == row["id"]


# upstream status -> the client's: a 4xx about the request as it came; the gateway's own key, URL or
# model mapping (401, 403, 404), and any upstream fault, a 502
STATUSES = {400: 400, 401: 502, 403: 502, 404: 502, 409: 409, 413: 413, 422: 422, 429: 429, 500: 502, 503: 502}


@pytest.mark.parametrize("stream", [False, True])
def test_only_upstream_faults_are_502s(tmp_path, stream):
    def status_asked(body: dict[str, Any]) -> Response:
        status = int(body["messages"][-1]["content"].split()[-1])
        if status == 422:  # not JSON: the client still gets the upstream's words
            return Response(b"unprocessable: top_p and temperature", status_code=422, media_type="text/plain")
        return JSONResponse({"error": {"message": f"answered {status}", "type": "some_error"}}, status_code=status)

    with stack(tmp_path, status_asked) as s:
        answered = {}
        for status in STATUSES:
            r = s.post(stream=stream, messages=[{"role": "user", "content": f"status {status}"}])
            error = r.json()["error"]
            answered[status] = r.status_code
            if r.status_code == 502:
                assert error["type"] == "upstream_error" and f"upstream answered HTTP {status}" in error["message"]
            elif status == 422:
                assert (error["type"], error["message"]) == ("invalid_request_error",
                                                             "upstream answered HTTP 422: unprocessable: top_p and temperature")
            else:
                assert (error["type"], error["message"]) == ("some_error", f"answered {status}")
        assert answered == STATUSES
        rows = final_rows(s.service)
        assert [(r["action"], r["status"]) for r in rows] == [("failed", status) for status in STATUSES.values()]
        assert len(s.calls) == len(STATUSES) and spent_and_reserved(s.service) == (0, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_an_error_at_the_top_level_keeps_its_whole_number_code(tmp_path, stream):
    """vLLM's error object is the body itself, and its code is the HTTP status."""
    vllm = {"object": "error", "message": "max_tokens must be at least 1, got 0.", "type": "BadRequestError", "param": None,
            "code": 400}
    with stack(tmp_path, lambda body: JSONResponse(vllm, status_code=400)) as s:
        r = s.post(stream=stream)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {"type": "BadRequestError", "message": vllm["message"], "param": None, "code": 400}
        assert_released(s, 400, "upstream answered HTTP 400")


# 4. streams that do not end their events as they should


def word_count(words: list[str]) -> int:
    from optimizer.tokenizer import get_tokenizer

    return get_tokenizer("cl100k_base").count("".join(words))


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("last", ["usage", "word"])
def test_a_last_event_the_stream_ends_without_a_blank_line_is_relayed_and_charged(tmp_path, last, include_usage):
    """The stream ends right after its last event's data line: with the upstream's usage (charged as reported), or
    with the last word of an answer that reports no usage (counted with the others)."""
    sent = events(b"\n\n")[:-1]  # no [DONE]
    if last == "word":
        sent = [e for e in sent if b'"usage"' not in e and b'"stop"' not in e]
    sent[-1] = sent[-1][:-2]  # no blank line after the last event
    with stack(tmp_path, lambda body: StreamingResponse(iter(sent), media_type="text/event-stream")) as s:
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        with httpx.stream("POST", f"{s.url}/v1/chat/completions", json=chat(stream=True, **options), headers=s.auth(),
                          timeout=30) as r:
            assert r.status_code == 200
            got = b"".join(r.iter_raw())
        assert got == (b"".join(sent) if include_usage or last == "word" else without_usage(sent))
        [row] = final_rows(s.service)
        assert (row["action"], row["status"], row["error"]) == ("ok", 200, ""), row
        if last == "usage":
            assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("upstream", 5, 12)
        else:
            assert (row["usage_source"], row["completion_tokens"]) == ("counted", word_count(WORDS))
        assert spent_and_reserved(s.service) == (row["prompt_tokens"] + row["completion_tokens"], 0)


def endless_event(words: list[str], gate: threading.Event, ended: list[bool], size: int,
                  piece: int = 65536) -> Callable[..., Response]:
    """An upstream that streams ``words`` as events, then ``size`` bytes of one event without ending it, then
    waits (at most 5 s) for ``gate`` before it ends that event (``ended`` then holds True) and the stream."""

    async def pieces() -> AsyncIterator[bytes]:
        for event in events(b"\n\n", words)[:-3]:  # the role chunk and the words
            yield event
        yield b'data: {"choices":[{"index":0,"delta":{"content":"'
        for _ in range(size // piece):
            yield b"x" * piece
        await wait_for(gate, 5.0)
        ended.append(True)
        yield b'"}}]}\n\n' + events(b"\n\n")[-2] + b"data: [DONE]\n\n"

    return lambda body: StreamingResponse(pieces(), media_type="text/event-stream")


def read_stream(s: Stack) -> bytes:
    with httpx.stream("POST", f"{s.url}/v1/chat/completions", json=chat(stream=True), headers=s.auth(),
                      timeout=httpx.Timeout(30, read=10)) as r:
        assert r.status_code == 200
        return b"".join(r.iter_raw())


def test_an_event_that_does_not_end_is_cut_at_one_mib_and_the_request_charged_what_came_before(tmp_path):
    words = [" w0", " w1", " w2"]
    gate, ended = threading.Event(), []
    with stack(tmp_path, endless_event(words, gate, ended, size=3 << 20)) as s:
        got = read_stream(s)
        assert ended == [], "the client's stream ended only once the upstream had ended its 3 MiB event"
        gate.set()
        before = b"".join(events(b"\n\n", words)[:-3])
        assert got.startswith(before) and b"xxxx" not in got
        error = json.loads(got[len(before):].removeprefix(b"data: "))["error"]
        cut = "upstream stream cut: an event longer than 1048576 bytes (max_event_bytes)"
        assert error == {"type": "upstream_error", "message": cut, "param": None, "code": None}
        [row] = final_rows(s.service)
        assert (row["action"], row["status"], row["usage_source"]) == ("ok", 200, "counted"), row
        assert row["error"].startswith(cut) and "raise max_event_bytes under [upstreams.fake]" in row["error"], row["error"]
        assert row["completion_tokens"] == word_count(words) and row["prompt_tokens"] > 0
        assert spent_and_reserved(s.service) == (row["prompt_tokens"] + row["completion_tokens"], 0)


def test_max_event_bytes_sets_the_longest_event_read_ended_or_not(tmp_path):
    from ragtrim.serve.config import ServeConfig

    long_event = events(b"\n\n", [" " + "y" * 5000])[1]  # a whole event, in one piece, of about 5 KB

    def answer(body: dict[str, Any]) -> Response:
        sent = events(b"\n\n", [" w0"])[:2] + [long_event] + events(b"\n\n")[-3:]
        return StreamingResponse(iter(sent), media_type="text/event-stream")

    with stack(tmp_path, answer, max_event_bytes=4096) as s:
        got = read_stream(s)
        assert b"yyyy" not in got and b"[DONE]" not in got and b"4096 bytes (max_event_bytes)" in got
        [row] = final_rows(s.service)
        assert "an event longer than 4096 bytes" in row["error"] and row["completion_tokens"] == word_count([" w0"])
    with pytest.raises(ValueError, match="upstream 'fake': max_event_bytes must be a whole number of bytes from 1024"):
        gateway_config("http://127.0.0.1:1", {"max_event_bytes": 100})
    assert ServeConfig().upstreams["local"].max_event_bytes == 1 << 20
