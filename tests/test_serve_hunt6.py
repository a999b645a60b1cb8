"""Gateway accounting holes found by the sixth hunt, each closed (the scripts were /tmp/hunt-gw/t_*.py).

1. A reasoning model's stream that ends before its usage (the client leaves, the upstream drops) is charged its
   reservation as an estimate, not the one visible token; an ordinary model's is still charged what it carried.
2. ``reasoning_content`` / ``reasoning`` and ``audio.transcript`` in an answer are counted.
3. ``"user": null`` (openai-python's ``user=None``) falls back to ``metadata.user`` and ``X-Ragtrim-User``.
4. Fields the upstream bills above the text price (``service_tier: "priority"``, audio output, web search,
   an earlier audio answer) are refused with a 400 naming the field and the fix.
5. A correct reported count in a script cl100k splits finely (Hindi) is charged as reported, and a count the
   gateway substitutes is never above the completion it reserved.
6. ``prediction`` is not counted as prompt (so OpenAI's honest prompt count is kept) but reserved as completion.
7. A lone UTF-16 surrogate in a message, a tool, ``user`` or ``feature`` is a 400 naming the field, with a row.
8. NUL and other control characters in ``user``, ``feature``, ``metadata.user``, ``model``, ``preset`` are a 400
   before any database call, with a row (on PostgreSQL too, which refuses NUL in text).
9. A JSON body nested too deeply is a 400, not a 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, StreamingResponse

from optimizer.tokenizer import get_tokenizer
from ragtrim.serve.schema import budget_usage
from ragtrim.serve.testing import postgres_available
import serve_fixtures
from serve_fixtures import Stack, budget, final_rows

CL100K = get_tokenizer("cl100k_base")
REASONING_MODEL = {"o4-mini": {"upstream": "fake", "tokenizer": "cl100k_base", "price": "gpt-4o", "reasoning": True}}


def stack(tmp_path: Any, answer: Callable[[dict[str, Any]], Any], db_url: str | None = None,
          reasoning_model: bool = False) -> Any:
    """serve_fixtures.stack, on ``db_url`` if given; ``reasoning_model``: with a third model, ``o4-mini``, configured
    ``reasoning = true`` (priced as gpt-4o)."""
    return serve_fixtures.stack(tmp_path, answer, db_url=db_url, extra_models=REASONING_MODEL if reasoning_model else None)


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


BASE = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "o4-mini"}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> bytes:
    return sse({**BASE, "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **top})


def completion(content: Any, usage: dict[str, Any] | None = None, **message: Any) -> JSONResponse:
    out: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                                        "finish_reason": "stop"}]}
    if usage is not None:
        out["usage"] = usage
    return JSONResponse(out)


def hidden_reasoning_stream(drop: bool) -> Callable[[dict[str, Any]], Any]:
    """An o-series stream: 1,800 hidden reasoning tokens, then "Paris is the capital.", usage last (8 + 1,805);
    ``drop``: the upstream's connection breaks after "Paris"."""

    def answer(body: dict[str, Any]) -> Any:
        async def gen() -> Any:
            yield chunk({"role": "assistant", "content": ""})
            await asyncio.sleep(0.3)  # reasoning, billed, never streamed
            yield chunk({"content": "Paris"})
            if drop:
                raise RuntimeError("connection dropped")
            for word in (" is", " the", " capital", "."):
                await asyncio.sleep(0.3)
                yield chunk({"content": word})
            yield chunk(finish="stop")
            yield sse({**BASE, "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 1805,
                                                        "completion_tokens_details": {"reasoning_tokens": 1800}}})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    return answer


def leave_at_first_word(s: Stack, body: dict[str, Any]) -> None:
    """Stream ``body`` and leave (close the connection) once the first visible word has come."""
    with httpx.stream("POST", f"{s.url}/v1/chat/completions", headers=s.auth(), json=body, timeout=10) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if '"Paris"' in line:
                break


def usage_totals(s: Stack) -> dict[str, Any]:
    r = httpx.get(f"{s.url}/v1/usage", headers=s.auth(), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["totals"]


# 1. a reasoning model's stream that ends before its usage


@pytest.mark.parametrize("case", ["config reasoning, client leaves", "reasoning_effort, client leaves",
                                  "config reasoning, upstream drops", "reasoning_effort, upstream drops"])
def test_a_reasoning_models_stream_ending_before_its_usage_is_charged_its_reservation(tmp_path, case):
    drop = "drops" in case
    body = {"model": "o4-mini" if "config" in case else "gpt-4o", "messages": [{"role": "user", "content": "capital of France?"}],
            "max_completion_tokens": 2000, "stream": True}
    if "effort" in case:
        body["reasoning_effort"] = "medium"
    with stack(tmp_path, hidden_reasoning_stream(drop), reasoning_model="config" in case) as s:
        budget(s.service, "acme", "usd", 100_000)
        if drop:
            r = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), json=body, timeout=10)
            assert r.status_code == 200 and "upstream stream failed" in r.text
        else:
            leave_at_first_word(s, body)
        time.sleep(0.5)
        [row] = final_rows(s.service)
        assert row["usage_source"] == "estimated", row
        assert row["action"] == "ok" and row["prompt_tokens"] + row["completion_tokens"] == row["reserved_tokens"]
        assert row["completion_tokens"] >= 2000 and row["cost_micro"] == row["reserved_micro"] > 20_000, row
        assert "the model reasons" in row["error"] and "charged its reservation as an estimate" in row["error"]
        assert ("client disconnected" in row["error"]) != drop and ("upstream stream failed" in row["error"]) == drop
        totals = usage_totals(s)
        assert totals["estimated"] == 1 and totals["estimated_cost_micro"] == row["cost_micro"] == totals["cost_micro"]


def test_an_ordinary_models_stream_the_client_leaves_is_charged_what_it_carried(tmp_path):
    """A user's stop button must not cost the whole cap: no reasoning, so the visible text is the answer's cost."""
    with stack(tmp_path, hidden_reasoning_stream(drop=False)) as s:
        leave_at_first_word(s, {"model": "gpt-4o", "messages": [{"role": "user", "content": "capital of France?"}],
                                "max_completion_tokens": 2000, "stream": True})
        time.sleep(0.5)
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["completion_tokens"]) == ("counted", 1), row
        assert "client disconnected" in row["error"] and "estimate" not in row["error"]


def test_a_reasoning_content_stream_the_client_leaves_is_charged_its_reservation(tmp_path):
    """vLLM / DeepSeek-R1: reasoning streamed as delta.reasoning_content; the client leaves during it."""
    piece = "Hmm, let me consider the geography of France carefully. "

    def answer(body: dict[str, Any]) -> Any:
        async def gen() -> Any:
            yield chunk({"role": "assistant", "content": ""})
            for _ in range(100):
                yield chunk({"reasoning_content": piece})
                await asyncio.sleep(0.02)
            yield chunk({"content": "Paris"}, finish="stop")
            yield sse({**BASE, "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 100 * CL100K.count(piece) + 1}})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    with stack(tmp_path, answer) as s:
        seen = 0
        with httpx.stream("POST", f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=10,
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000,
                                "stream": True}) as resp:
            for line in resp.iter_lines():
                seen += "reasoning_content" in line
                if seen == 20:
                    break
        time.sleep(0.5)
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["completion_tokens"]) == ("estimated", 4000), row


# 2. reasoning and audio transcripts are counted


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "audio.transcript"])
def test_reasoning_and_audio_transcripts_in_an_answer_without_usage_are_counted(tmp_path, field):
    extra = "Let me think step by step about this question in great detail. " * 10
    message = {"audio": {"id": "a1", "transcript": extra}} if field == "audio.transcript" else {field: extra}
    with stack(tmp_path, lambda body: completion("Paris.", None, **message)) as s:
        r = s.post(max_tokens=1000)
        assert r.status_code == 200
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["completion_tokens"]) == ("counted", CL100K.count("Paris.\n" + extra)), row


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_a_whole_stream_with_reasoning_deltas_and_no_usage_counts_the_reasoning(tmp_path, key):
    reason = "Let me think step by step about this question in great detail. " * 10

    def answer(body: dict[str, Any]) -> Any:
        events = [chunk({key: reason[i:i + 100]}) for i in range(0, len(reason), 100)]
        events += [chunk({"content": "Paris."}), chunk(finish="stop"), b"data: [DONE]\n\n"]  # no usage chunk
        return StreamingResponse(iter(events), media_type="text/event-stream")

    with stack(tmp_path, answer) as s:
        r = s.post(max_tokens=1000, stream=True)
        assert r.status_code == 200 and r.text.count(key) == 7
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["completion_tokens"]) == ("counted", CL100K.count(reason + "Paris.")), row


# 3. "user": null


def test_a_null_user_falls_back_to_metadata_user_and_the_header(tmp_path):
    with stack(tmp_path, lambda body: completion("ok " * 40, {"prompt_tokens": 8, "completion_tokens": 40})) as s:
        budget(s.service, "acme", "tokens", 1_000, scope="user", scope_value="alice")
        budget(s.service, "acme", "tokens", 1_000, scope="feature", scope_value="faq")
        for extra, headers in [({"user": None, "metadata": {"user": "alice", "feature": "faq"}, "feature": None}, {}),
                               ({"user": None, "feature": None}, {"X-Ragtrim-User": "alice", "X-Ragtrim-Feature": "faq"})]:
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60, **extra}
            r = httpx.post(f"{s.url}/v1/chat/completions", json=body, headers={**s.auth(), **headers}, timeout=15)
            assert r.status_code == 200, r.text
        rows = final_rows(s.service)
        assert [(x["user"], x["feature"]) for x in rows] == [("alice", "faq")] * 2
        by_user = httpx.get(f"{s.url}/v1/usage?by=user", headers=s.auth(), timeout=10).json()
        assert [x["user"] for x in by_user["rows"]] == ["alice"]
        with s.service.engine.connect() as c:  # the tenant's, alice's and faq's budgets: each charged both requests
            assert sorted(int(x.spent) for x in c.execute(budget_usage.select()).all()) == [96, 96, 96]


# 4. fields the upstream bills above the text price


@pytest.mark.parametrize("extra, param, fix", [
    ({"service_tier": "priority"}, "service_tier", 'send service_tier "auto", "default" or "flex"'),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "modalities", 'send modalities ["text"]'),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "leave audio out"),
    ({"web_search_options": {}}, "web_search_options", "leave web_search_options out"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "audio": {"id": "audio_1"}},
                   {"role": "user", "content": "and?"}]}, "messages", "send that turn's text (its transcript)"),
])
def test_fields_billed_above_the_text_price_are_refused_naming_the_field_and_the_fix(tmp_path, extra, param, fix):
    with stack(tmp_path, lambda body: completion("ok", {"prompt_tokens": 8, "completion_tokens": 1})) as s:
        r = s.post(**extra)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == param and fix in error["message"], error
        assert s.calls == []
        [row] = final_rows(s.service)
        assert (row["action"], row["status"], row["cost_micro"]) == ("failed", 400, 0) and fix in row["error"]


@pytest.mark.parametrize("tier", ["auto", "default", "flex", None])
def test_the_standard_service_tiers_still_work(tmp_path, tier):
    with stack(tmp_path, lambda body: completion("ok", {"prompt_tokens": 8, "completion_tokens": 1})) as s:
        r = s.post(service_tier=tier, modalities=["text"])
        assert r.status_code == 200, r.text
        assert s.calls[-1]["service_tier"] == tier


# 5. a correct count in a script cl100k splits finely; a substituted count is at most what was reserved


HINDI_Q = "भारत की राजधानी क्या है और वहाँ कितने लोग रहते हैं? कृपया विस्तार से बताइए। " * 8
HINDI_A = "भारत एक विशाल देश है जिसकी राजधानी नई दिल्ली है और यहाँ अनेक भाषाएँ बोली जाती हैं। " * 20


def test_a_correct_count_of_hindi_below_half_of_cl100ks_is_charged_as_reported(tmp_path):
    """What a Gemma server reported for this question and answer (t_multilingual_override.py): 144 + 381 tokens."""
    usage = {"prompt_tokens": 144, "completion_tokens": 381}
    with stack(tmp_path, lambda body: completion(HINDI_A, usage)) as s:
        r = s.post(messages=[{"role": "user", "content": HINDI_Q}], max_tokens=1000)
        assert r.status_code == 200 and r.json()["ragtrim"]["cost_micro"] == -(-(144 * 25 + 381 * 100) // 10)
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"], row["error"]) == ("upstream", 144, 381, "")
        assert CL100K.count(HINDI_A) > 2 * 381  # the old rule ("below half the gateway's count") replaced it


def test_a_substituted_count_is_never_above_the_completion_reserved(tmp_path):
    with stack(tmp_path, lambda body: completion(HINDI_A, {"prompt_tokens": 144, "completion_tokens": 0})) as s:
        assert s.post(messages=[{"role": "user", "content": HINDI_Q}], max_tokens=100).status_code == 200
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["completion_tokens"]) == ("counted", 100), row
        assert row["prompt_tokens"] + row["completion_tokens"] <= row["reserved_tokens"]
        assert (f"upstream reported completion_tokens 0 for {len(HINDI_A.encode())} bytes of text, below 1 token per 32 bytes: "
                f"charged the gateway's count, 100 (it counted {CL100K.count(HINDI_A)}, capped at the 100 completion tokens "
                "reserved)") == row["error"]


# 6. prediction


def test_a_prediction_is_reserved_as_completion_and_an_honest_prompt_count_is_kept(tmp_path):
    code = "def f(x):\n    return x + 1\n" * 300
    usage = {"prompt_tokens": 8, "completion_tokens": 3010,
             "completion_tokens_details": {"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 3000}}
    with stack(tmp_path, lambda body: completion("x = 1", usage)) as s:
        r = s.post(max_completion_tokens=10, prediction={"type": "content", "content": code})
        assert r.status_code == 200 and s.calls[-1]["max_completion_tokens"] == 10
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"], row["error"]) == ("upstream", 8, 3010, ""), row
        assert row["reserved_tokens"] >= 8 + 10 + CL100K.count(code) and row["reserved_tokens"] < 2 * CL100K.count(code)


# 7. lone surrogates


RAW = '{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"%s"}]%s}'


@pytest.mark.parametrize("raw, named", [
    (RAW % ("hi \\ud800 there", ""), "messages[0].content"),
    (RAW % ("hi \\ud800", ',"stream":true'), "messages[0].content"),
    (RAW % ("hi", ',"tools":[{"type":"function","function":{"name":"f","description":"x\\ud800"}}]'),
     "tools[0].function.description"),
    (RAW % ("hi", ',"user":"al\\ud800"'), "user"),
    (RAW % ("hi", ',"feature":"f\\udc80"'), "feature"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field_with_its_row(tmp_path, raw, named):
    with stack(tmp_path, lambda body: completion("ok", {"prompt_tokens": 9, "completion_tokens": 1})) as s:
        r = httpx.post(f"{s.url}/v1/chat/completions", content=raw.encode(),
                       headers={**s.auth(), "content-type": "application/json"}, timeout=15)
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert message.startswith(f"{named} has a lone UTF-16 surrogate") and "surrogatepass" in message
        assert s.calls == []
        [row] = final_rows(s.service)
        assert (row["action"], row["status"]) == ("failed", 400) and row["error"] == message


# 8. NUL and control characters in tags and names


NUL_CASES = [({"user": "al\u0000ice"}, "user"), ({"feature": "f\u0000"}, "feature"), ({"metadata": {"user": "a\u0000"}}, "user"),
             ({"model": "gpt-4o\u0000"}, "model"), ({"preset": "x\u0000"}, "preset"), ({"user": "al\u001bice"}, "user"),
             ({"metadata": {"feature": "f\n"}}, "feature")]


def _check_nul_cases(s: Stack) -> None:
    budget(s.service, "acme", "tokens", 100_000, scope="user", scope_value="bob")
    for extra, param in NUL_CASES:
        r = s.post(**extra)
        assert r.status_code == 400, (extra, r.text)
        error = r.json()["error"]
        assert error["param"] == param and error["message"].startswith(f"{param} holds the control character"), error
    assert s.post(user="bob").status_code == 200
    rows = final_rows(s.service)
    assert [(x["action"], x["status"]) for x in rows] == [("failed", 400)] * len(NUL_CASES) + [("ok", 200)]
    assert all("\x00" not in (x["user"] + x["feature"] + x["model_asked"] + x["preset"]) for x in rows)
    assert len(s.calls) == 1


def test_nul_and_control_characters_in_tags_and_names_are_a_400_with_a_row(tmp_path):
    with stack(tmp_path, lambda body: completion("ok", {"prompt_tokens": 9, "completion_tokens": 1})) as s:
        _check_nul_cases(s)


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed (apt-get install -y postgresql)")
def test_nul_in_tags_and_names_on_postgresql_is_a_400_with_a_row(tmp_path):
    from ragtrim.serve.testing import temp_postgres

    with temp_postgres() as url, stack(tmp_path, lambda body: completion("ok", {"prompt_tokens": 9, "completion_tokens": 1}),
                                       db_url=url.replace("postgresql://", "postgresql+psycopg://")) as s:
        _check_nul_cases(s)


# 9. deep JSON


@pytest.mark.parametrize("depth", [100, 2000, 50000])
def test_a_body_nested_too_deeply_is_a_400_with_a_row(tmp_path, depth):
    with stack(tmp_path, lambda body: completion("ok", {"prompt_tokens": 9, "completion_tokens": 1})) as s:
        nested = '{"a":' * depth + "1" + "}" * depth
        raw = '{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata_x":' + nested + "}"
        r = httpx.post(f"{s.url}/v1/chat/completions", content=raw.encode(),
                       headers={**s.auth(), "content-type": "application/json"}, timeout=30)
        assert r.status_code == 400, r.text[:300]
        assert "request body is nested" in r.json()["error"]["message"] and "the limit is 64" in r.json()["error"]["message"]
        [row] = final_rows(s.service)
        assert (row["action"], row["status"]) == ("failed", 400) and s.calls == []
