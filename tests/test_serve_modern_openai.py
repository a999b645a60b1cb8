"""The gateway with what current OpenAI clients and OpenAI-compatible providers send and report.

* Reasoning tokens reported outside ``completion_tokens`` are charged. xAI (Grok) reports ``completion_tokens`` as
  the visible text and ``completion_tokens_details.reasoning_tokens`` beside it, ``total_tokens`` counting both, and
  bills the reasoning as output; some Gemini converters send ``completion_tokens: 0`` with the reasoning in the
  details. Only ``completion_tokens`` was charged: a $0.05 budget let ~$0.85 through.
* A reasoning model called without a cap got ``max_completion_tokens = 256`` ([limits] max_tokens_default), spent it
  all thinking and answered "": ``max_tokens_default`` under ``[models.X]`` sets a model's own, and such an answer
  logs a warning naming it.
* ``GET /v1/models`` and ``GET /v1/models/{id}`` (what clients call to list or check models) answer OpenAI's shape;
  an unknown route's 404 names the routes, and ``/chat/completions`` (a base URL without ``/v1``) says so.
* ``safety_identifier`` (OpenAI's replacement of ``user``) tags the request's user, so per-user budgets hold.
* A chat without a user message (a system prompt alone) is served when it has no documents.
* The client's other ``stream_options`` keys reach the upstream.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, StreamingResponse

from ragtrim.serve.bodies import parse_chat, tags_of
from ragtrim.serve.config import Limits
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.schema import budget_usage, budgets
from ragtrim.serve.upstream import count_chat_tokens, sse, usage_of

from serve_fixtures import DOCS, budget, final_rows, stack

PRICED = {"upstream": "fake", "tokenizer": "cl100k_base", "input_per_million": 3.0, "output_per_million": 15.0,
          "price_date": "2026-01-01"}
GROK = {"grok-4": {**PRICED, "reasoning": True}}


def spent(service: Any) -> dict[str, int]:
    with service.engine.connect() as c:
        q = budget_usage.join(budgets, budgets.c.id == budget_usage.c.budget_id).select()
        return {r.unit: int(r.spent) for r in c.execute(q).all()}


def reply(body: dict[str, Any], text: str, usage: dict[str, Any] | None, finish: str = "stop") -> Any:
    """A chat completion (or its stream, with the usage chunk when the gateway asked for it) carrying ``text``."""
    base = {"id": "c1", "created": 1, "model": body["model"]}
    if body.get("stream"):
        def events():
            yield sse({**base, "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]})
            yield sse({**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if usage is not None and (body.get("stream_options") or {}).get("include_usage"):
                yield sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")
    out = {**base, "object": "chat.completion",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}
    return JSONResponse({**out, "usage": usage} if usage is not None else out)


# 1. reasoning tokens outside completion_tokens


@pytest.mark.parametrize("usage, charged", [
    # xAI: completion_tokens is the visible text, total_tokens counts the reasoning too
    ({"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 949, "completion_tokens_details": {"reasoning_tokens": 900}}, 940),
    # a Gemini converter: the reasoning only in the details, no total
    ({"prompt_tokens": 9, "completion_tokens": 0, "completion_tokens_details": {"reasoning_tokens": 60}}, 60),
    ({"prompt_tokens": 9, "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 60}}, 65),
    # the same with a total counting the reasoning
    ({"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 69, "completion_tokens_details": {"reasoning_tokens": 60}}, 60),
    # a total that leaves the reasoning out, details that do not: the reasoning is still charged
    ({"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 60}}, 60),
])
def test_reasoning_reported_outside_completion_tokens_is_charged_as_completion(usage, charged):
    assert usage_of({"usage": usage}) == (9, charged)


@pytest.mark.parametrize("usage", [
    # OpenAI: completion_tokens includes the reasoning, total = prompt + completion
    {"prompt_tokens": 9, "completion_tokens": 940, "total_tokens": 949, "completion_tokens_details": {"reasoning_tokens": 900}},
    {"prompt_tokens": 9, "completion_tokens": 940, "completion_tokens_details": {"reasoning_tokens": 900}},
    {"prompt_tokens": 9, "completion_tokens": 940, "total_tokens": 949,
     "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    # a total below prompt + completion, or one that is not a count, changes nothing
    {"prompt_tokens": 9, "completion_tokens": 940, "total_tokens": 100},
    {"prompt_tokens": 9, "completion_tokens": 940, "total_tokens": -5},
    {"prompt_tokens": 9, "completion_tokens": 940, "total_tokens": True},
    {"prompt_tokens": 9, "completion_tokens": 940, "total_tokens": 10**12},
    {"prompt_tokens": 9, "completion_tokens": 940, "completion_tokens_details": {"reasoning_tokens": -1}},
    {"prompt_tokens": 9, "completion_tokens": 940, "completion_tokens_details": "900"},
])
def test_openai_convention_usage_is_charged_exactly_as_reported(usage):
    assert usage_of({"usage": usage}) == (9, 940)


def test_a_missing_count_stays_missing_whatever_the_total():
    assert usage_of({"usage": {"prompt_tokens": 9, "total_tokens": 949}}) == (9, None)
    assert usage_of({"usage": {"completion_tokens": 40, "total_tokens": 949}}) == (None, 40)


REASONING, VISIBLE = 900, 40


def xai(body: dict[str, Any]) -> Any:
    """xAI's usage: completion_tokens the visible text, reasoning beside it, total counting both."""
    prompt = count_chat_tokens(body["messages"], "cl100k_base")
    usage = {"prompt_tokens": prompt, "completion_tokens": VISIBLE, "total_tokens": prompt + VISIBLE + REASONING,
             "completion_tokens_details": {"reasoning_tokens": REASONING}}
    return reply(body, " ".join(["word"] * VISIBLE), usage)


@pytest.mark.parametrize("stream", [False, True])
def test_xai_reasoning_is_charged_to_the_ledger_and_the_money_budget(tmp_path, stream):
    with stack(tmp_path, xai, extra_models=GROK) as s:
        budget(s.service, "acme", "usd", 50_000)
        r = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,
                       json={"model": "grok-4", "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 1000,
                             "reasoning_effort": "high", "stream": stream})
        assert r.status_code == 200, r.text
        [row] = final_rows(s.service)
        assert (row["completion_tokens"], row["usage_source"]) == (VISIBLE + REASONING, "upstream"), row
        # $3 in, $15 out per million tokens: 3 micro-dollars a prompt token, 15 a completion token
        assert row["cost_micro"] == row["prompt_tokens"] * 3 + (VISIBLE + REASONING) * 15 > 14_000, row
        assert spent(s.service)["usd"] == row["cost_micro"]
        assert spent(s.service)["tokens"] == row["prompt_tokens"] + VISIBLE + REASONING
        if not stream:
            assert r.json()["ragtrim"]["cost_micro"] == row["cost_micro"]


def test_a_zero_completion_with_reasoning_in_the_details_is_not_charged_zero(tmp_path):
    def gemini(body: dict[str, Any]) -> Any:
        usage = {"prompt_tokens": 9, "completion_tokens": 0, "completion_tokens_details": {"reasoning_tokens": 60}}
        return reply(body, "", usage, finish="length")

    with stack(tmp_path, gemini, extra_models=GROK) as s:
        r = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,
                       json={"model": "grok-4", "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 60})
        assert r.status_code == 200, r.text
        [row] = final_rows(s.service)
        assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (9, 60, "upstream"), row


# 2. a model's own max_tokens_default


O3 = {"o3": {**PRICED, "reasoning": True, "max_tokens_default": 2000}}


def capped_answer(body: dict[str, Any]) -> Any:
    """A reasoning model that thinks for 1,000 tokens first: under a smaller cap it answers nothing, cut at the cap."""
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or 10**6
    prompt = count_chat_tokens(body["messages"], "cl100k_base")
    if cap <= 1000:
        return reply(body, "", {"prompt_tokens": prompt, "completion_tokens": cap, "total_tokens": prompt + cap}, finish="length")
    return reply(body, "Paris.", {"prompt_tokens": prompt, "completion_tokens": 1002, "total_tokens": prompt + 1002})


def test_a_models_max_tokens_default_is_the_cap_sent_when_the_client_sends_none(tmp_path):
    with stack(tmp_path, capped_answer, extra_models=O3) as s:
        post = lambda model, **extra: httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,  # noqa: E731
                                                 json={"model": model, "messages": [{"role": "user", "content": "q"}], **extra})
        r = post("o3")
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Paris.", r.text
        assert s.calls[-1]["max_completion_tokens"] == 2000
        [row] = final_rows(s.service)
        assert row["reserved_tokens"] == row["prompt_tokens"] + 2000, row
        assert post("gpt-4o").status_code == 200 and s.calls[-1]["max_completion_tokens"] == 256  # the [limits] one
        assert post("o3", max_completion_tokens=1500).status_code == 200 and s.calls[-1]["max_completion_tokens"] == 1500
        assert post("o3", max_tokens=30).status_code == 200 and s.calls[-1]["max_tokens"] == 30


@pytest.mark.parametrize("stream", [False, True])
def test_a_reasoning_models_empty_answer_cut_at_its_cap_logs_a_warning_naming_the_setting(tmp_path, caplog, stream):
    with stack(tmp_path, capped_answer, extra_models={"o3": {**PRICED, "reasoning": True}}) as s:
        with caplog.at_level(logging.INFO, logger=s.service.log.name):
            r = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,
                           json={"model": "o3", "messages": [{"role": "user", "content": "q"}], "stream": stream})
            assert r.status_code == 200, r.text
            [row] = final_rows(s.service)
            assert row["completion_tokens"] == 256, row  # charged as before: the warning changes nothing else
            for model, extra in (("gpt-4o", {}), ("o3", {"max_completion_tokens": 500})):  # not a reasoning model; a client's cap
                r2 = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,
                                json={"model": model, "messages": [{"role": "user", "content": "q"}], "stream": stream, **extra})
                assert r2.status_code == 200
                final_rows(s.service)
    warned = [rec for rec in caplog.records if rec.getMessage() == "reasoning_answer_cut"]
    assert len(warned) == 2 and {w.levelno for w in warned} == {logging.WARNING}, [rec.getMessage() for rec in caplog.records]
    fields = warned[0].fields
    assert fields["model"] == "o3" and fields["request_id"] == row["id"] and fields["cap"] == 256
    assert "sent no cap, so it got [limits] max_tokens_default" in fields["message"], fields
    assert 'set max_tokens_default under [models."o3"]' in fields["message"], fields
    assert warned[1].fields["cap"] == 500 and "the client sent max_completion_tokens 500" in warned[1].fields["message"]


def test_no_warning_when_no_cap_was_sent(tmp_path, caplog):
    """Without a budget holding room, a request without a cap is sent without one: the upstream's own limit cut it."""
    def no_cap(body: dict[str, Any]) -> Any:
        assert "max_completion_tokens" not in body and "max_tokens" not in body, body
        return reply(body, "", {"prompt_tokens": 9, "completion_tokens": 5000, "total_tokens": 5009}, finish="length")

    with stack(tmp_path, no_cap, extra_models={"o3": {**PRICED, "reasoning": True}}) as s:
        with s.service.engine.begin() as c:
            c.execute(budgets.delete())
        with caplog.at_level(logging.INFO, logger=s.service.log.name):
            r = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,
                           json={"model": "o3", "messages": [{"role": "user", "content": "q"}]})
            assert r.status_code == 200, r.text
            final_rows(s.service)
    assert [rec for rec in caplog.records if rec.getMessage() == "reasoning_answer_cut"] == []


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "2000", 5000])
def test_a_models_max_tokens_default_is_a_whole_number_up_to_the_limit(value):
    with pytest.raises(ValueError, match=r"model 'o3': max_tokens_default must be a whole number from 1 to 4096"):
        ServeConfig.from_dict({"upstreams": {"fake": {"base_url": "http://127.0.0.1:9/v1"}},
                               "models": {"o3": {"upstream": "fake", "max_tokens_default": value}}})


def test_a_models_max_tokens_default_may_be_the_limit_raised_with_it():
    cfg = ServeConfig.from_dict({"limits": {"max_tokens_limit": 32_000}, "upstreams": {"fake": {"base_url": "http://127.0.0.1:9/v1"}},
                                 "models": {"o3": {"upstream": "fake", "max_tokens_default": 32_000}, "m": {"upstream": "fake"}}})
    assert (cfg.models["o3"].max_tokens_default, cfg.models["m"].max_tokens_default) == (32_000, None)


# 3. the routes clients call


def plain(body: dict[str, Any]) -> Any:
    prompt = count_chat_tokens(body["messages"], "cl100k_base")
    return reply(body, "ok", {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1})


def test_models_are_listed_and_found_in_openais_shape(tmp_path):
    extra = {"meta-llama/Llama-3.1-8B": {**PRICED}}
    with stack(tmp_path, plain, extra_models=extra) as s:
        r = httpx.get(f"{s.url}/v1/models", headers=s.auth())
        assert r.status_code == 200, r.text
        assert r.json() == {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "ragtrim"}
                                                       for m in ("gpt-4o", "gpt-4o-mini", "meta-llama/Llama-3.1-8B")]}
        for name in ("gpt-4o", "meta-llama/Llama-3.1-8B"):
            r = httpx.get(f"{s.url}/v1/models/{name}", headers=s.auth())
            assert r.status_code == 200 and r.json() == {"id": name, "object": "model", "created": 0, "owned_by": "ragtrim"}, r.text
        r = httpx.get(f"{s.url}/v1/models/gpt-5", headers=s.auth())
        assert r.status_code == 404, r.text
        error = r.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "model_not_found", "model"), error
        assert "'gpt-5'" in error["message"] and "gpt-4o, gpt-4o-mini, meta-llama/Llama-3.1-8B" in error["message"], error
        assert s.calls == [] and final_rows(s.service) == []


def test_models_need_a_key_as_the_usage_route_does(tmp_path):
    with stack(tmp_path, plain) as s:
        for path in ("/v1/models", "/v1/models/gpt-4o"):
            assert httpx.get(f"{s.url}{path}").status_code == 401
            assert httpx.get(f"{s.url}{path}", headers={"Authorization": "Bearer rtk_nope"}).status_code == 401


def test_the_openai_sdk_lists_and_retrieves_models(tmp_path):
    openai = pytest.importorskip("openai")
    with stack(tmp_path, plain) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["gpt-4o", "gpt-4o-mini"]
        assert client.models.retrieve("gpt-4o-mini").owned_by == "ragtrim"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-5")


@pytest.mark.parametrize("method, path", [("POST", "/v1/completions"), ("POST", "/v1/audio/speech"), ("GET", "/nowhere")])
def test_an_unknown_routes_404_names_the_routes_served(tmp_path, method, path):
    with stack(tmp_path, plain) as s:
        r = httpx.request(method, f"{s.url}{path}", json={"model": "gpt-4o", "input": "hi"}, headers=s.auth())
        assert r.status_code == 404, r.text
        error = r.json()["error"]
        assert error["type"] == "not_found_error" and f"{method} {path}" in error["message"], error
        for route in ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/embeddings", "GET /v1/models",
                      "POST /v1/optimize", "GET /v1/usage"):
            assert route in error["message"], error
        assert s.calls == []


@pytest.mark.parametrize("path", ["/chat/completions", "/models"])
def test_a_base_url_without_v1_is_told_to_add_it_not_served(tmp_path, path):
    with stack(tmp_path, plain) as s:
        method = "POST" if path == "/chat/completions" else "GET"
        r = httpx.request(method, f"{s.url}{path}", headers=s.auth(),
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]} if method == "POST" else None)
        assert r.status_code == 404, r.text
        message = r.json()["error"]["message"]
        assert f"{method} /v1{path}" in message and "base_url" in message and "/v1" in message, message
        assert s.calls == [] and final_rows(s.service) == []


def test_a_wrong_method_says_which_the_route_takes(tmp_path):
    with stack(tmp_path, plain) as s:
        r = httpx.get(f"{s.url}/v1/chat/completions", headers=s.auth())
        assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
        assert "GET /v1/chat/completions" in r.json()["error"]["message"] and "POST" in r.json()["error"]["message"]


# 4. safety_identifier


def test_safety_identifier_names_the_user_after_user():
    assert tags_of({"safety_identifier": "alice"}, {}, {}).user == "alice"
    assert tags_of({"user": "bob", "safety_identifier": "alice"}, {}, {}).user == "bob"
    assert tags_of({"user": None, "safety_identifier": "alice", "metadata": {"user": "carol"}}, {}, {}).user == "alice"
    assert tags_of({}, {}, {"x-ragtrim-user": "dave"}).user == "dave"


def test_a_bad_safety_identifier_is_a_400_naming_it(tmp_path):
    with stack(tmp_path, plain) as s:
        r = s.post(safety_identifier=5)
        assert r.status_code == 400 and r.json()["error"]["param"] == "safety_identifier", r.text
        assert "safety_identifier must be a non-empty string" in r.json()["error"]["message"]


def whole_cap(body: dict[str, Any]) -> Any:
    """An answer that writes its whole cap."""
    prompt, cap = count_chat_tokens(body["messages"], "cl100k_base"), body["max_tokens"]
    return reply(body, "ok", {"prompt_tokens": prompt, "completion_tokens": cap, "total_tokens": prompt + cap})


def test_a_per_user_budget_holds_for_a_client_sending_safety_identifier(tmp_path):
    with stack(tmp_path, whole_cap) as s:
        budget(s.service, "acme", "tokens", 100, scope="user", scope_value="alice")
        codes = [s.post(max_tokens=50, safety_identifier="alice").status_code for _ in range(3)]
        assert codes == [200, 429, 429], codes
        assert [r["user"] for r in final_rows(s.service)] == ["alice"] * 3
        assert s.calls[0]["safety_identifier"] == "alice"  # forwarded as it came


# 5. a chat without a user message


SYSTEM_ONLY = [{"role": "system", "content": "Write a haiku about Paris."}]


@pytest.mark.parametrize("messages", [SYSTEM_ONLY, [{"role": "developer", "content": "Write a haiku about Paris."}]])
def test_a_chat_without_a_user_message_is_served_when_it_has_no_documents(tmp_path, monkeypatch, messages):
    with stack(tmp_path, plain) as s:
        def no_optimizer(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the optimizer ran for a chat without documents")

        monkeypatch.setattr(s.service, "optimize", no_optimizer)
        for extra in ({}, {"documents": []}, {"stream": True}):
            r = s.post(messages=messages, **extra)
            assert r.status_code == 200, r.text
            assert s.calls[-1]["messages"] == messages  # no documents' system message added
        assert [(row["action"], row["budget_used"]) for row in final_rows(s.service)] == [("ok", None)] * 3


def test_documents_still_need_a_user_message_or_a_query(tmp_path):
    with stack(tmp_path, plain) as s:
        r = s.post(messages=SYSTEM_ONLY, documents=DOCS)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages", r.text
        assert "documents" in r.json()["error"]["message"] and "query" in r.json()["error"]["message"]
        assert s.calls == []
        r = s.post(messages=SYSTEM_ONLY, documents=DOCS, query="What is the capital of France?")
        assert r.status_code == 200, r.text
        assert "Paris is the capital" in json.dumps(s.calls[-1]["messages"])


# 6. stream_options


@pytest.mark.parametrize("options, relayed", [({"include_usage": True, "include_obfuscation": False}, True),
                                              ({"include_obfuscation": False}, False),
                                              ({"include_usage": False, "include_obfuscation": False}, False)])
def test_the_clients_other_stream_options_reach_the_upstream(tmp_path, options, relayed):
    with stack(tmp_path, plain) as s:
        r = s.post(stream=True, stream_options=options)
        assert r.status_code == 200, r.text
        assert s.calls[-1]["stream_options"] == {"include_usage": True, "include_obfuscation": False}
        assert ('"usage":{' in r.text) is relayed
        [row] = final_rows(s.service)
        assert row["usage_source"] == "upstream", row


# the review of the fixes above


@pytest.mark.parametrize("usage, charged", [
    # Gemini's totalTokenCount counts its tool-use prompt; converters count cache writes in the total: input, not output
    ({"prompt_tokens": 11, "completion_tokens": 10, "total_tokens": 20021}, 10),
    # reasoning reported: the total's excess is charged only up to the reasoning
    ({"prompt_tokens": 11, "completion_tokens": 10, "total_tokens": 20021, "completion_tokens_details": {"reasoning_tokens": 50}}, 60),
])
def test_a_total_above_prompt_and_completion_is_not_output_unless_it_is_reasoning(usage, charged):
    assert usage_of({"usage": usage}) == (11, charged)


def test_only_known_stream_options_reach_the_upstream(tmp_path):
    # vLLM's continuous_usage_stats would make a cut stream report a partial count, charged instead of the reservation
    with stack(tmp_path, plain) as s:
        r = s.post(stream=True, stream_options={"include_usage": False, "include_obfuscation": False, "continuous_usage_stats": True})
        assert r.status_code == 200, r.text
        assert s.calls[-1]["stream_options"] == {"include_usage": True, "include_obfuscation": False}


def test_models_and_healthz_answer_head_as_get(tmp_path):
    with stack(tmp_path, plain) as s:
        for path in ("/v1/models", "/v1/models/gpt-4o", "/healthz"):
            r = httpx.head(f"{s.url}{path}", headers=s.auth())
            assert r.status_code == 200 and r.content == b"", (path, r.status_code)


def test_a_chat_with_documents_and_a_query_but_no_user_message_asks_the_query():
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Answer from the documents."}],
            "ragtrim": {"documents": [{"id": "d1", "text": "Paris is the capital of France."}], "query": "capital of France?"}}
    assert parse_chat(body, {}, Limits(), default_preset="default", default_budget=None).question == "capital of France?"
