"""Gateway holes found by the seventh hunt (security), each closed (the scripts were /tmp/hunt-sec/p*.py).

1. An upstream error that quotes the gateway's Authorization header after client-controlled text never shows the
   client (or the ledger, or the log) a prefix of the upstream key: texts are scrubbed whole, then cut, and a key
   cut short at a text's end (by the upstream itself) is masked too.
2. NaN / Infinity in a request body (not JSON; Python's decoder takes them) is a 400 naming them, with a row,
   before anything is reserved or sent upstream; on /v1/optimize too.
3. A client that hangs up while sending its body is a 499 (the client left), not a 500 with an internal_error log.
4. ``PUT /v1/admin/budgets`` takes ``scope_value`` null as not given, and refuses one that is not a string.
5. A control character (NUL, which PostgreSQL refuses) in a query or path parameter of the usage and admin routes is
   a 400 naming the parameter, before any database call.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, Response

from ragtrim.serve.logs import JsonFormatter, get_logger
from ragtrim.serve.schema import reservations
from serve_fixtures import Stack, admin_key, final_rows, stack

UPSTREAM_KEY = "sk-UPSTREAMSECRET0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"  # 60 characters


@pytest.fixture
def log_lines() -> Any:
    """The gateway's JSON log lines, as written (a handler on the ``ragtrim.serve`` logger for this test)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = get_logger()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def ok_completion(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}})


# 1. The upstream key in an upstream's error text


def echoing_upstream(mode: str) -> Any:
    """An upstream that refuses every request quoting ``"bad " + pad + " from Bearer <key>"``, ``pad`` the client's
    ``metadata.pad`` (text the client controls, so it can slide the key across any cut the gateway makes)."""

    def answer(body: dict[str, Any]) -> Response:
        quoted = f"bad {body['metadata']['pad']} from Bearer {UPSTREAM_KEY}"
        if mode == "400-no-message":  # an error object without a message: the raw body is the message
            return Response(json.dumps({"error": {"type": "invalid_request_error"}, "detail": quoted}), status_code=400,
                            media_type="application/json")
        if mode == "401-message":  # the gateway's own fault: a 502 quoting the upstream's error
            return JSONResponse({"error": {"message": quoted}}, status_code=401)
        if mode.endswith("-cut-by-upstream"):  # the upstream cuts its own message, mid-key (quoted in JSON by a 502)
            return JSONResponse({"error": {"message": quoted[:260]}}, status_code=int(mode[:3]))
        return Response(quoted, status_code=500 if mode == "500-text" else 400)  # plain text (a stream's error)

    return answer


LEAK_MODES = [("400-no-message", False), ("401-message", False), ("400-cut-by-upstream", False), ("401-cut-by-upstream", False),
              ("500-text", True),
              ("400-text", True)]


@pytest.mark.parametrize("mode,stream", LEAK_MODES)
def test_no_prefix_of_the_upstream_key_reaches_the_client_the_ledger_or_the_log(tmp_path, monkeypatch, log_lines, mode, stream):
    monkeypatch.setenv("RAGTRIM_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    with stack(tmp_path, echoing_upstream(mode)) as s:
        for pad in range(150, 560, 20):  # steps shorter than the key: every cut at 300 or 500 lands inside it once
            r = s.post(stream=stream, metadata={"pad": "p" * pad})
            assert r.status_code in (400, 502), r.text
            assert UPSTREAM_KEY[:8] not in r.text, (pad, r.text[-120:])
        rows = final_rows(s.service)
    assert len(rows) == len(range(150, 560, 20)) and all(row["action"] == "failed" for row in rows)
    for row in rows:
        assert UPSTREAM_KEY[:8] not in row["error"] + row["detail"], row["error"][-120:]
    assert [line for line in log_lines() if UPSTREAM_KEY[:8] in line] == []


def test_scrub_masks_the_key_and_a_prefix_of_it_cut_at_the_texts_end():
    from ragtrim.serve.upstream import scrub_key

    key = UPSTREAM_KEY
    assert scrub_key(f"a {key} b {key}", key) == "a *** b ***"
    assert scrub_key(f"from Bearer {key[:20]}", key) == "from Bearer ***"
    assert scrub_key(f'{{"message": "from Bearer {key[:9]}"}}', key) == '{"message": "from Bearer ***"}'
    assert scrub_key(f"from Bearer {key[:4]}", key) == f"from Bearer {key[:4]}"  # too short to be the key's
    assert scrub_key("nothing here", key) == "nothing here" and scrub_key("x", None) == "x"


# 2. NaN and Infinity


NAN_BODIES = [
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":NaN}',
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"top_p":Infinity}',
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"tools":[{"type":"function",'
    '"function":{"name":"f","parameters":{"type":"object","x":-Infinity}}}]}',
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"metadata":{"a":NaN}}',
]

OVERFLOW_BODIES = [
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":1e999}',
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"metadata":{"a":-1e999}}',
]


def post_raw(s: Stack, path: str, raw: str) -> httpx.Response:
    return httpx.post(f"{s.url}{path}", content=raw, headers={**s.auth(), "Content-Type": "application/json"}, timeout=30)


def test_nan_and_infinity_in_a_body_are_a_400_naming_them_with_a_row(tmp_path):
    with stack(tmp_path, ok_completion) as s:
        for raw in NAN_BODIES:
            r = post_raw(s, "/v1/chat/completions", raw)
            assert r.status_code == 400, (raw, r.text)
            message = r.json()["error"]["message"]
            assert "NaN" in message and "Infinity" in message and "not JSON" in message, message
        for raw in OVERFLOW_BODIES:  # valid JSON numbers that overflow a float to infinity
            r = post_raw(s, "/v1/chat/completions", raw)
            assert r.status_code == 400 and "too large for a 64-bit float" in r.json()["error"]["message"], (raw, r.text)
        r = post_raw(s, "/v1/optimize", '{"query":"q","chunks":[{"id":"a","text":"x","score":NaN}]}')
        assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"], r.text
        assert s.calls == []
        rows = final_rows(s.service)
        assert [(x["endpoint"], x["action"], x["status"]) for x in rows] == [("chat", "failed", 400)] * (
            len(NAN_BODIES) + len(OVERFLOW_BODIES)) + [("optimize", "failed", 400)]
        with s.service.engine.connect() as c:
            assert c.execute(reservations.select().where(reservations.c.state == "held")).all() == []
        assert post_raw(s, "/v1/chat/completions", NAN_BODIES[0].replace("NaN", "0.5")).status_code == 200


# 3. A client that hangs up while sending its body


def hang_up_mid_body(s: Stack, path: str, key: str) -> None:
    """Send ``path`` headers announcing a 1,000-byte body, one byte of it, then close the connection."""
    host, port = s.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000\r\n\r\n{".encode())
        time.sleep(0.2)  # let the gateway start reading the body before the connection closes


def test_a_client_hanging_up_mid_body_is_a_499_not_an_internal_error(tmp_path, log_lines):
    with stack(tmp_path, ok_completion) as s:
        admin = admin_key(s.service)
        hang_up_mid_body(s, "/v1/admin/tenants", admin)
        hang_up_mid_body(s, "/v1/chat/completions", s.key)
        hang_up_mid_body(s, "/v1/optimize", s.key)
        deadline = time.monotonic() + 30
        while len(final_rows(s.service)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = final_rows(s.service)
        assert [(x["endpoint"], x["action"], x["status"]) for x in rows] == [("chat", "failed", 499), ("optimize", "failed", 499)]
        assert all("internal error" not in x["error"] and "left" in x["error"] for x in rows), rows
        metrics = httpx.get(f"{s.url}/metrics", headers={"Authorization": f"Bearer {admin}"}).text
        counted = [line for line in metrics.splitlines() if line.startswith("ragtrim_requests_total")]
        assert not any('status="500"' in line for line in counted) and any('status="499"' in line for line in counted)
    assert [line for line in log_lines() if "internal_error" in line or "Traceback" in line] == []


# 4. scope_value null or not a string


def test_a_budgets_scope_value_null_is_not_given_and_a_non_string_is_a_400(tmp_path):
    with stack(tmp_path, ok_completion) as s:
        h = {"Authorization": f"Bearer {admin_key(s.service)}"}
        put = {"tenant": "acme", "unit": "tokens", "limit": 1000}
        r = httpx.put(f"{s.url}/v1/admin/budgets", headers=h, json={**put, "scope": "user", "scope_value": None})
        assert r.status_code == 400 and r.json()["error"]["param"] == "scope_value", r.text
        r = httpx.put(f"{s.url}/v1/admin/budgets", headers=h, json={**put, "scope": "user", "scope_value": ["alice"]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "scope_value", r.text
        assert "must be a string" in r.json()["error"]["message"]
        r = httpx.put(f"{s.url}/v1/admin/budgets", headers=h, json={**put, "period": "month", "scope": "tenant", "scope_value": None})
        assert r.status_code == 200 and r.json()["scope_value"] == "", r.text
        budgets = httpx.get(f"{s.url}/v1/admin/budgets", headers=h).json()["data"]
        assert sorted((b["scope"], b["scope_value"], b["period"]) for b in budgets) == [("tenant", "", "day"), ("tenant", "", "month")]


# 5. Control characters in query and path parameters


@pytest.mark.parametrize("path,param", [("/v1/usage?tenant=a%00b", "tenant"), ("/v1/usage?since=2026%00", "since"),
                                        ("/v1/usage?by=user%00", "by"), ("/v1/admin/keys?tenant=a%00b", "tenant"),
                                        ("/v1/admin/budgets?tenant=a%0Ab", "tenant")])
def test_a_control_character_in_a_query_parameter_is_a_400_naming_it(tmp_path, path, param):
    with stack(tmp_path, ok_completion) as s:
        r = httpx.get(f"{s.url}{path}", headers={"Authorization": f"Bearer {admin_key(s.service)}"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == param and error["message"].startswith(f"{param} holds the control character"), error


@pytest.mark.parametrize("path,param", [("/v1/admin/keys/k%00", "key_id"), ("/v1/admin/budgets/b%00", "budget_id")])
def test_a_control_character_in_a_path_parameter_is_a_400_naming_it(tmp_path, path, param):
    with stack(tmp_path, ok_completion) as s:
        r = httpx.delete(f"{s.url}{path}", headers={"Authorization": f"Bearer {admin_key(s.service)}"})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
