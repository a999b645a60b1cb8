"""The Messages route's thirty-eighth-round leftovers: what ``count_tokens`` passes on, images and PDFs in the estimate,
a cut stream's cache price, and the reservation of a request that asks for no cache.

- Anthropic's count endpoint refuses a field it does not take (``temperature``, ``max_tokens``, ``metadata``, ...): the
  gateway passes on only those it takes (the fake refuses the others, as Anthropic does).
- The estimate (``count_tokens``'s fallback, the budget check's worst case, a cut stream's charge) counts an image as
  Anthropic's vision guide does (``width * height / 750`` once resized; the newer models' 28 px patches), its size read
  from its header; an image of unknown size, and a PDF, at a ceiling.
- A stream cut before ``message_start`` (no usage) of a request that asks for a 1-hour cache is charged its prompt at
  the 1-hour write price, as reserved (it was the input price).
- A request with no ``cache_control`` anywhere (none top-level either: Anthropic's automatic caching) reserves its prompt
  at the input price: Anthropic writes no cache for it.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import pytest

from ragtrim.serve.media_tokens import IMAGE_CEILING, PDF_MAX_PAGES, PDF_PAGE_TOKENS, image_size, image_tokens, media_tokens
from ragtrim.serve.plan import with_margin

import test_serve_messages as T
from serve_fixtures import budget, final_rows, spent_and_reserved

anthropic = pytest.importorskip("anthropic")
Image = pytest.importorskip("PIL.Image")
CLAUDE = T.CLAUDE
SOURCE = "X-Ragtrim-Token-Count"
HI = [{"role": "user", "content": "hi"}]
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


def image_bytes(width: int, height: int, fmt: str = "PNG", noise: bool = False) -> bytes:
    import random

    img = Image.new("RGB", (width, height), (200, 30, 30))
    if noise:  # a photo-like image: its PNG is large (its base64 far above its tokens)
        rng = random.Random(7)
        img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(width * height)])
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def image_block(width: int, height: int, fmt: str = "PNG", noise: bool = False) -> dict[str, Any]:
    data = base64.b64encode(image_bytes(width, height, fmt, noise)).decode()
    return {"type": "image", "source": {"type": "base64", "media_type": f"image/{fmt.lower()}", "data": data}}


def asking(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*blocks, {"type": "text", "text": "What is in it?"}]}]


# 1. count_tokens passes on only the fields Anthropic's count endpoint takes


GENERATION = {"max_tokens": 64, "stream": False, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"],
              "metadata": {"user_id": "alice"}, "service_tier": "auto"}


def test_count_tokens_drops_the_fields_anthropics_count_endpoint_refuses(tmp_path):
    tools = [{"name": "get_weather", "description": "The weather", "input_schema": {"type": "object"}}]
    counted = {"model": CLAUDE, "system": "Be brief.", "messages": [{"role": "user", "content": T.QUESTION}], "tools": tools,
               "tool_choice": {"type": "auto"}, "cache_control": {"type": "ephemeral"}}
    with T.live(tmp_path) as s:
        raw = T.httpx.post(f"{s.url}/v1/messages/count_tokens", json={**counted, **GENERATION},
                           headers={"x-api-key": s.key}, timeout=30)
        sent = s.fake.bodies[-1]
        plain = s.client().messages.count_tokens(**counted)
    assert raw.status_code == 200, raw.text
    assert raw.headers[SOURCE] == "upstream" and raw.json() == {"input_tokens": plain.input_tokens}
    assert sent == counted  # the count's own fields passed on as they came, the generation ones dropped


def test_the_fake_count_endpoint_refuses_a_field_as_anthropic_does():
    from starlette.testclient import TestClient

    from ragtrim.serve.fake_upstream import create_fake_upstream

    with TestClient(create_fake_upstream(latency_ms=0)) as client:
        refused = client.post("/v1/messages/count_tokens", json={"model": CLAUDE, "messages": HI, "temperature": 0.2})
        taken = client.post("/v1/messages/count_tokens", json={"model": CLAUDE, "messages": HI, "thinking": {"type": "disabled"}})
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "temperature: Extra inputs are not permitted"
    assert taken.status_code == 200 and taken.json()["input_tokens"] > 0


# 2. images and PDFs in the estimate


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "JPEG", "WEBP"])
@pytest.mark.parametrize("size", [(1000, 700), (31, 5), (4000, 3000)])
def test_an_images_size_is_read_from_its_header(fmt, size):
    assert image_size(image_bytes(*size, fmt=fmt)) == size


def test_image_tokens_follow_anthropics_formula_within_its_ceiling():
    assert image_tokens(1000, 1000) == math.ceil(1000 * 1000 / 750) == 1334  # the earlier models' estimate is the larger
    assert image_tokens(2000, 1500) == 72 * 54 == 3888  # the newer models': 28 px patches, no resize below 2,576 px
    assert image_tokens(8000, 8000) == image_tokens(2576, 2576) == IMAGE_CEILING == 4784  # resized within the ceiling
    assert image_tokens(4000, 100) == math.ceil(2576 / 28) * math.ceil(64.4 / 28)  # the long edge resized to 2,576 px


def test_media_tokens_read_images_in_tool_results_urls_at_the_ceiling_and_pdfs_by_their_pages():
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [image_block(1000, 1000)]}
    pdf = b"%PDF-1.4 1 0 obj <</Type /Pages /Count 3>> " + b"<</Type /Page>> " * 3
    pdf_block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                 "data": base64.b64encode(pdf).decode()}}
    assert media_tokens(asking(url)) == IMAGE_CEILING
    assert media_tokens([{"role": "user", "content": [result]}]) == 1334
    assert media_tokens(asking(pdf_block)) == 3 * PDF_PAGE_TOKENS
    unreadable = {**pdf_block, "source": {**pdf_block["source"], "data": base64.b64encode(b"%PDF-1.7 xref").decode()}}
    assert media_tokens(asking(unreadable)) == PDF_MAX_PAGES * PDF_PAGE_TOKENS
    assert media_tokens(asking()) == 0


def test_count_tokens_estimate_counts_an_image(tmp_path):
    body = {"model": CLAUDE, "messages": asking(image_block(1000, 1000))}
    with T.live(tmp_path, count_tokens_status=529) as s:
        raw = s.client().messages.with_raw_response.count_tokens(**body)
        text_only = s.client().messages.count_tokens(model=CLAUDE, messages=asking())
    assert raw.headers[SOURCE].startswith("estimated")
    assert raw.parse().input_tokens == with_margin(1334 + with_margin_inverse(text_only.input_tokens), T.ANTHROPIC_COUNT_MARGIN)


def with_margin_inverse(estimate: int) -> int:
    from ragtrim.serve.plan import without_margin

    return without_margin(estimate, T.ANTHROPIC_COUNT_MARGIN)


def test_a_request_with_an_image_reserves_it_and_a_dollar_budget_still_refuses_it(tmp_path):
    with T.live(tmp_path) as s:
        served = s.post({"model": CLAUDE, "max_tokens": 16, "messages": asking(image_block(1500, 1000, noise=False))})
        [row] = final_rows(s.service)
        budget(s.service, "acme", "usd", 10_000_000)
        refused = s.post({"model": CLAUDE, "max_tokens": 16, "messages": asking(image_block(1500, 1000))})
    assert served.status_code == 200 and refused.status_code == 400 and "cannot count" in refused.text
    assert row["reserved_tokens"] >= with_margin(image_tokens(1500, 1000), T.ANTHROPIC_COUNT_MARGIN) + with_margin(16, 0.4)


def test_an_images_bytes_do_not_make_the_upstreams_count_untrusted(tmp_path):
    big = image_block(300, 300, noise=True)  # ~360 KB of base64 for a 121-token image: far above 1 token per 32 bytes
    assert len(big["source"]["data"]) > 300_000
    with T.live(tmp_path) as s:
        r = s.post({"model": CLAUDE, "max_tokens": 16, "messages": asking(big)})
        [row] = final_rows(s.service)
    assert r.status_code == 200 and row["usage_source"] == "upstream" and not row["error"]


def test_a_stream_cut_before_its_usage_is_charged_its_image(tmp_path):
    with T.gateway_before(T.scripted(T.WORDS), tmp_path) as s:
        r = s.post({"model": CLAUDE, "max_tokens": 50, "stream": True, "messages": asking(image_block(1000, 1000))})
        [row] = final_rows(s.service)
    assert r.status_code == 200 and row["usage_source"] == "counted"
    assert row["prompt_tokens"] > 1334


# 3. a stream cut before message_start, with a 1-hour cache asked: the 1-hour write price


SYSTEM_1H = [{"type": "text", "text": "long policy " * 50, "cache_control": ONE_HOUR}]


@pytest.mark.parametrize("stream", [True, False])
def test_a_cut_answer_asking_for_a_1h_cache_is_charged_its_prompt_at_the_1h_write_price(tmp_path, stream):
    upstream = T.scripted(T.WORDS) if stream else T.answering(200, {"id": "m", "type": "message", "role": "assistant",
                                                                     "content": [{"type": "text", "text": "ok"}]})
    with T.gateway_before(upstream, tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        r = s.post({"model": CLAUDE, "max_tokens": 50, "stream": stream, "system": SYSTEM_1H, "messages": HI})
        [row] = final_rows(s.service)
        spent = spent_and_reserved(s.service)
    assert r.status_code == 200 and row["usage_source"] == "counted"
    p, c = row["prompt_tokens"], row["completion_tokens"]
    assert row["cost_micro"] == math.ceil(p * 6.0 + c * 15.0) <= row["reserved_micro"]  # was p * 3.0: the input price
    assert "charged as written to the 1-hour cache" in row["error"] and spent == (row["cost_micro"], 0)


def test_a_cut_answer_asking_for_no_cache_is_charged_the_input_price(tmp_path):
    with T.gateway_before(T.scripted(T.WORDS), tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        s.post({"model": CLAUDE, "max_tokens": 50, "stream": True, "system": "long policy " * 50, "messages": HI})
        [row] = final_rows(s.service)
    assert row["cost_micro"] == math.ceil(row["prompt_tokens"] * 3.0 + row["completion_tokens"] * 15.0)


# 4. no cache_control anywhere: reserved at the input price


def _reserved(tmp_path: Any, model: str, **fields: Any) -> int:
    usage = {"input_tokens": 10, "output_tokens": 1}
    with T.gateway_before(T.answering(200, {"id": "m", "type": "message", "role": "assistant", "content": [], "usage": usage}),
                          tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        r = s.post({"model": model, "max_tokens": 16, "system": "long policy " * 50, "messages": HI, **fields})
        [row] = final_rows(s.service)
    assert r.status_code == 200, r.text
    return int(row["reserved_micro"])


@pytest.mark.parametrize(("model", "price"), [("claude-haiku", 1.0), (CLAUDE, 3.0)])
def test_a_request_without_cache_control_reserves_its_prompt_at_the_input_price(tmp_path, model, price):
    out = math.ceil(with_margin(16, 0.4) * (5.0 if model == "claude-haiku" else 15.0))
    plain = _reserved(tmp_path / "plain", model) - out
    automatic = _reserved(tmp_path / "auto", model, cache_control={"type": "ephemeral"}) - out  # top-level: automatic caching
    one_hour = _reserved(tmp_path / "1h", model, cache_control=ONE_HOUR) - out
    assert automatic / plain == pytest.approx(1.25, rel=0.01) and one_hour / plain == pytest.approx(2.0, rel=0.01)
    prompt = plain / price  # the prompt reserved, with its margin, at the input price
    assert prompt == int(prompt) > 100
