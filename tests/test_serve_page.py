"""The usage page rendered by a real headless browser (chromium), against a loopback server.

Runs wherever chromium exists (Debian: apt-get install chromium); when CI=true a missing
browser is a failure, not a skip.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import PEPPER, budget, chat_body, gateway_config, tenant_with_key

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None, "chromium is required in CI: apt-get install -y chromium"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


def test_usage_page_renders_spend_savings_quota_and_chart(tmp_path):
    import httpx

    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=10)) as up:
        service = Service(gateway_config(up), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            key = tenant_with_key(service, "acme")
            other = tenant_with_key(service, "globex")
            budget(service, "acme", "usd", 1_000_000, period="month")
            h = {"Authorization": f"Bearer {key}"}
            for user in ("ann", "bob", "ann"):
                assert httpx.post(f"{base}/v1/chat/completions", json=chat_body(user=user, feature="faq", budget=60), headers=h).status_code == 200
            httpx.post(f"{base}/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {other}"})
            usage = httpx.get(f"{base}/v1/usage", headers=h).json()["totals"]
            link = httpx.post(f"{base}/v1/usage/page-link", headers=h).json()["url"]
            assert key not in link
            dom = chromium("--dump-dom", f"{base}{link}").stdout
            shot = tmp_path / "usage.png"
            chromium(f"--screenshot={shot}", "--window-size=1000,1200", f"{base}{link}")
            bad = chromium("--dump-dom", f"{base}/usage?token=forged").stdout
            if os.environ.get("RAGTRIM_KEEP_SCREENSHOT"):
                shutil.copy(shot, os.environ["RAGTRIM_KEEP_SCREENSHOT"])
    text = html.unescape(dom)
    assert '<span id="tenant">acme</span>' in text and "globex" not in text
    spent = int(usage["cost_micro"])
    assert f'id="total-spent">${spent // 1_000_000}.{spent % 1_000_000:06d}<' in text
    assert re.search(r'id="total-requests">3<', text)
    assert "<svg" in text and text.count('class="bar-cost"') == 1 and 'class="quota"' in text
    assert 'id="running-spend"' in text and 'id="budget-line"' in text
    assert re.search(r"<td>ann</td><td>2</td>", text) and re.search(r"<td>bob</td><td>1</td>", text)
    assert shot.stat().st_size > 10_000
    assert "invalid or expired" in bad and "total-spent" not in bad
