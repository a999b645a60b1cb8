"""A kept line of nested structure (YAML, JSON, TOML, code) comes with the less-indented lines above it
that say what it belongs to, counted in the budget; a bare key or bracket is never kept alone; a
table row comes with its header row (optimizer/structure_frames.py, the sentence selector)."""

from __future__ import annotations

import re

import pytest

from optimizer import Pipeline, make_stage
from optimizer.structure_frames import frame_only_line, line_frames
from optimizer.tokenizer import get_tokenizer


def _svc(name: str, image: str, reps: int, cpu: str, mem: str, extra: str) -> str:
    return (f"{name}:\n  image:\n    repository: registry.acme.io/{image}\n    tag: \"2.7.1\"\n"
            f"  replicaCount: {reps}\n  resources:\n    requests:\n      cpu: {cpu}\n      memory: 256Mi\n"
            f"    limits:\n      cpu: \"{cpu}\"\n      memory: {mem}\n" + extra)


HELM = [
    {"id": "api", "title": "chart/values.yaml", "text": _svc("api", "api", 2, "500m", "512Mi", "  service:\n    type: ClusterIP\n    port: 8080\n")},
    {"id": "worker", "title": "chart/values.yaml", "text": _svc("worker", "worker", 3, "1", "1Gi", "  autoscaling:\n    enabled: true\n    maxReplicas: 8\n")},
    {"id": "sched", "title": "chart/values.yaml", "text": _svc("scheduler", "worker", 1, "250m", "384Mi", "  schedule:\n    timezone: UTC\n")},
    {"id": "redis", "title": "chart/values.yaml", "text": _svc("redis", "redis", 1, "250m", "300Mi", "  persistence:\n    size: 8Gi\n")},
]
COMPOSE = [
    {"id": "y0", "title": "docker-compose.yml", "text": "services:\n  api:\n    image: registry.acme.io/api:2.7.1\n    environment:\n"
     "      DATABASE_URL: postgres://db:5432/app\n      WORKERS: \"8\"\n    deploy:\n      resources:\n        limits:\n"
     "          memory: 512M\n          cpus: \"1.5\""},
    {"id": "y1", "title": "docker-compose.yml", "text": "  worker:\n    image: registry.acme.io/worker:2.7.1\n    command: [\"celery\", \"-A\", "
     "\"app\", \"worker\", \"--concurrency\", \"6\"]\n    depends_on:\n      - redis\n      - db\n    deploy:\n      replicas: 3\n"
     "      resources:\n        limits:\n          memory: 1G"},
    {"id": "y6", "title": "docker-compose.yml", "text": "  scheduler:\n    image: registry.acme.io/worker:2.7.1\n    command: [\"celery\", \"-A\", "
     "\"app\", \"beat\", \"--loglevel\", \"info\"]\n    deploy:\n      replicas: 1\n      restart_policy:\n        condition: on-failure\n"
     "        max_attempts: 7"},
]
JSONS = [
    {"id": f"j{i}", "title": "config/production.json", "text": t} for i, t in enumerate([
        '{\n  "server": {\n    "listen": {\n      "host": "0.0.0.0",\n      "port": 9443,\n      "tls": {\n        "cert": "/etc/ssl/api.pem",\n'
        '        "min_version": "TLS1.2"\n      }\n    }\n  }\n}',
        '{\n  "database": {\n    "primary": {\n      "url": "postgres://db-1:5432/app",\n      "pool": {\n        "min": 2,\n        "max": 20,\n'
        '        "idle_timeout_s": 300\n      }\n    }\n  }\n}',
        '{\n  "rate_limits": {\n    "default": {\n      "per_minute": 600,\n      "burst": 100\n    },\n    "export": {\n      "per_minute": 6,\n'
        '      "burst": 2\n    }\n  }\n}',
        '{\n  "features": {\n    "pdf_cache": {\n      "enabled": true,\n      "max_entries": 10000\n    },\n    "new_checkout": {\n'
        '      "enabled": false,\n      "rollout_percent": 15\n    }\n  }\n}',
    ])
]
TOML = [
    {"id": f"t{i}", "title": "pyproject.toml", "text": t} for i, t in enumerate([
        '[tool.poetry]\nname = "billing"\nversion = "1.4.0"\ndescription = "Billing service"',
        '[tool.pytest.ini_options]\naddopts = "-ra -q --strict-markers"\ntestpaths = ["tests"]\nfilterwarnings = ["error"]',
        '[tool.coverage.report]\nfail_under = 87\nshow_missing = true\nskip_covered = true',
        '[tool.ruff]\nline-length = 110\ntarget-version = "py310"\nignore = ["E501"]',
    ])
]
CASES = {
    "helm": ("What is the memory limit of the worker?", HELM),
    "compose": ("How many replicas of the celery worker service run?", COMPOSE),
    "json": ("What is the maximum database pool size?", JSONS),
    "toml": ("What coverage percentage must the tests reach (fail_under)?", TOML),
}


def _lines(text: str) -> list[tuple[int, int, int]]:
    """``(start of text, end, indentation)`` of every non-blank line."""
    out, pos = [], 0
    for line in text.split("\n"):
        if line.strip():
            body = len(line) - len(line.lstrip())
            out.append((pos + body, pos + len(line), body))
        pos += len(line) + 1
    return out


def _ancestors(lines: list[tuple[int, int, int]], k: int) -> list[int]:
    """The lines above line ``k`` with less indentation, each the nearest one less indented than the last."""
    out, indent = [], lines[k][2]
    for j in range(k - 1, -1, -1):
        if lines[j][2] < indent:
            out.append(j)
            indent = lines[j][2]
    return out


def _kept_lines(result, chunk_id: str, text: str) -> set[int]:
    lines = _lines(text)
    return {k for k, (s, e, _) in enumerate(lines) for sp in result.spans if sp.chunk_id == chunk_id and sp.start < e and s < sp.end}


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("share", [0.2, 0.3, 0.4])
def test_kept_lines_come_with_their_frame_within_the_budget(preset: str, case: str, share: float) -> None:
    query, chunks = CASES[case]
    result = Pipeline.preset(preset).run(query, chunks, budget=share)
    budget = int(result.tokens_full * share)
    assert result.tokens <= budget
    assert get_tokenizer().count(result.text) == result.tokens
    for sp in result.spans:  # provenance exact
        src = next(c["text"] for c in chunks if c["id"] == sp.chunk_id)
        assert result.text[sp.context_start : sp.context_end] == src[sp.start : sp.end]
    partial: list[str] = []
    for c in chunks:
        lines = _lines(c["text"])
        kept = _kept_lines(result, c["id"], c["text"])
        headers = [j for j, (s, e, _) in enumerate(lines) if re.fullmatch(r"\[[^\]]+\]", c["text"][s:e])]

        def frame(j: int) -> list[int]:
            return _ancestors(lines, j) + [h for h in headers if h < j][-1:]

        for k in kept:
            missing = [j for j in frame(k) if j not in kept]
            # one line may lack part of its frame (its kept frame lines aside): the best line that waited for its
            # whole frame, taken at its rank with the nearest ancestors that fit (a value is never lost for its frame)
            if missing and not any(k in frame(j) for j in kept if j != k):
                partial.append(f"{c['id']}: {c['text'][lines[k][0]:lines[k][1]]!r} kept without {[c['text'][lines[j][0]:lines[j][1]] for j in missing]}")
            line = c["text"][lines[k][0] : lines[k][1]]
            if frame_only_line(line):  # a bare key or bracket is kept only over a line it frames
                assert any(k in frame(j) for j in kept), f"{c['id']}: {line!r} kept alone"
    assert len(partial) <= 1, partial


def test_the_worker_memory_limit_comes_with_limits_and_requests_is_not_mistaken_for_it() -> None:
    for preset in ("default", "quality"):
        result = Pipeline.preset(preset).run("What is the memory limit of the worker?", HELM, budget=0.2)
        block = result.text.split("\n\n")[0]
        assert "    limits:\n      memory: 1Gi" in block
        assert "  resources:\n    requests:" in block or "memory: 256Mi" not in block


def test_line_frames_of_yaml_json_toml_and_lists() -> None:
    t = '{\n  "a": {\n    "b": 1\n  },\n  "c": 2\n}'
    spans = [(s, e) for s, e, _ in _lines(t)]
    f = line_frames(t, spans)
    assert [[t[slice(*spans[j])] for j in f.frames[k]] for k in range(len(spans))] == [[], ["{"], ["{", '"a": {'], ["{"], ["{"], []]
    assert f.frame_only == [True, True, False, True, False, True]
    t = "[tool.ruff]\nline-length = 110\nignore = [\"E501\"]"
    spans = [(s, e) for s, e, _ in _lines(t)]
    assert line_frames(t, spans).frames == [(), (0,), (0,)]
    t = "- Backend:\n  - Python 3.11\n  - Postgres 16\n- Frontend:\n  - React 18"
    spans = [(s, e) for s, e, _ in _lines(t)]
    assert line_frames(t, spans).frames == [(), (0,), (0,), (), (3,)]


def test_prose_with_an_indented_quote_and_diffs_get_no_frames() -> None:
    t = ("He wrote to the board that evening:\n    We will ship the new release next week, as planned.\n"
         "    The budget stays the same for this quarter and the next.\nNobody replied to him.")
    spans = [(s, e) for s, e, _ in _lines(t)]
    f = line_frames(t, spans)
    assert not any(f.frames) and not any(f.frame_only)
    t = "@@ -1,3 +1,3 @@ def f():\n     x = 1\n-    y = 2\n+    y = 3\n     return x"
    spans = [(s, e) for s, e, _ in _lines(t)]
    assert not any(line_frames(t, spans).frames)


def test_a_kept_table_row_comes_with_its_header() -> None:
    rows = [("Free", 1, "$0"), ("Starter", 3, "$19"), ("Team", 10, "$99"), ("Business", 25, "$249"), ("Scale", 50, "$449"),
            ("Growth", 100, "$799"), ("Pro", 200, "$1,400"), ("Enterprise", 500, "$2,900")]
    table = "| Plan | Seats | Monthly price |\n|------|-------|-------|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    t = table
    spans = [(s, e) for s, e, _ in _lines(t)]
    f = line_frames(t, spans)
    assert f.frames == [(), (), *[(0,)] * len(rows)] and f.frame_only == [True, True, *[False] * len(rows)]
    t = "name,age,city\nAnn,31,Lyon\nBo,4,Nice"
    spans = [(s, e) for s, e, _ in _lines(t)]
    assert line_frames(t, spans).frames == [(), (0,), (0,)]
    other = [{"id": f"o{i}", "title": "FAQ", "text": f"Invoices are sent on day {i} of the month. Refunds take {i + 3} days to reach the card."}
             for i in range(6)]
    chunks = [{"id": "plans", "title": "pricing.md", "text": table}, *other]
    for preset in ("default", "quality"):
        for share in (0.15, 0.3):
            result = Pipeline.preset(preset).run("How much is Scale?", chunks, budget=share)
            assert "| Scale | 50 | $449 |" in result.text
            assert result.text.split("\n")[1] == "| Plan | Seats | Monthly price |"


# A frame is a preference: what 7a590f5 (no frames) kept is never lost for a frame that does not fit.

def _pipelines(budget: int) -> dict[str, Pipeline]:
    custom = Pipeline([("s", make_stage("compress-sentences"))], budget=budget)
    return {"default": Pipeline.preset("default", budget=budget), "quality": Pipeline.preset("quality", budget=budget), "custom": custom}


def _assert_exact(result, chunks, budget: int) -> None:
    assert result.tokens <= budget
    assert get_tokenizer().count(result.text) == result.tokens
    for sp in result.spans:  # provenance exact
        src = next(c["text"] for c in chunks if c["id"] == sp.chunk_id)
        assert result.text[sp.context_start : sp.context_end] == src[sp.start : sp.end]


K8S = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout-worker
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: worker
          image: registry.example.com/checkout-worker:2.4.1
          resources:
            limits:
              memory: 1Gi
              cpu: 500m
            requests:
              memory: 512Mi
              cpu: 250m"""


@pytest.mark.parametrize("budget", [15, 20, 25, 30, 40, 50])
def test_a_deep_line_whose_whole_frame_does_not_fit_comes_with_its_nearest_ancestors(budget: int) -> None:
    chunks = [{"id": "k", "title": "deploy/checkout-worker.yaml", "text": K8S}]
    for name, pipeline in _pipelines(budget).items():
        result = pipeline.run("What is the memory limit of the checkout worker?", chunks)
        _assert_exact(result, chunks, budget)
        assert "memory: 1Gi" in result.text, (name, result.text)
        if budget >= 20:  # room for its nearest ancestor: limits says whose memory it is
            assert "limits:\n              memory: 1Gi" in result.text, (name, result.text)


DEEP = [("  " * d + f"level_{d}_service_configuration_section:") for d in range(12)] + [
    "  " * 12 + v for v in ("retries: 5", "timeout_seconds: 32", "log_level: debug", "max_connections: 800")]


@pytest.mark.parametrize("fenced", [True, False])
@pytest.mark.parametrize("budget", [20, 40, 60, 100, 150])
def test_a_twelve_level_frame_that_does_not_fit_never_empties_the_context(budget: int, fenced: bool) -> None:
    text = "```yaml\n" + "\n".join(DEEP) + "\n```" if fenced else "\n".join(DEEP)
    chunks = [{"id": "y1", "title": "alpha.yaml", "text": text}]
    for name, pipeline in _pipelines(budget).items():
        result = pipeline.run("What is max_connections?", chunks)
        _assert_exact(result, chunks, budget)
        assert "max_connections: 800" in result.text, (name, budget, result.text)
        if budget >= 40:  # its nearest ancestor comes with it
            assert "level_11_service_configuration_section:\n" in result.text


INDENTED_PROSE = """    The village lay at the foot of the hills, and in winter the
road to the town was often closed for weeks at a time. The
children walked to school along the river instead, a route of some
six miles that their parents thought dangerous in the spring floods.
    In 1923 the council built a bridge over the river. It
cost 4,000 pounds and took two years to finish. The bridge
still stands today.
    The mill closed in 1961 after the flood. Most of the
workers moved to the town."""
POEM = """Whose woods these are I think I know
   His house is in the village though
He will not see me stopping here
   To watch his woods fill up with snow"""


def test_prose_with_first_line_indents_or_indented_verse_gets_no_frames() -> None:
    from optimizer.sentences import split_sentences

    for text in (INDENTED_PROSE, POEM):
        f = line_frames(text, split_sentences(text))
        assert not f, [text[slice(*sp)] for sp in split_sentences(text)]


@pytest.mark.parametrize("budget", [30, 35, 40, 50])
def test_the_answer_in_indented_prose_is_kept_as_without_frames(budget: int) -> None:
    chunks = [{"id": "h", "title": "History of Ashby", "text": INDENTED_PROSE},
              {"id": "g", "title": "Geography of Ashby", "text": "Ashby lies on the river Wend, six miles north of the market town. "
               "The parish covers 2,300 acres of farmland."}]
    for name, pipeline in _pipelines(budget).items():
        result = pipeline.run("How much did the bridge cost?", chunks)
        _assert_exact(result, chunks, budget)
        assert "cost 4,000 pounds" in result.text, (name, result.text)


def test_a_bare_key_that_matches_the_query_brings_its_best_line() -> None:
    lines = []
    for i in range(40):
        lines += [f"service_{i}:", f"  image: repo/svc{i}:1.{i}", "  resources:", f"    memory: {i % 7 + 1}Gi"]
    chunks = [{"id": "big", "title": "compose.yaml", "text": "```yaml\n" + "\n".join(lines) + "\n```"}]
    for budget in (30, 60):
        for name in ("default", "custom"):
            result = _pipelines(budget)[name].run("What memory does service_12 get?", chunks)
            _assert_exact(result, chunks, budget)
            assert "service_12:\n  resources:\n    memory: 6Gi" in result.text, (name, budget, result.text)


def test_a_csv_whose_first_row_is_data_gets_no_header() -> None:
    t = "Monday,open,closed\nTuesday,9,17\nWednesday,9,17\nSunday,closed,closed"
    spans = [(s, e) for s, e, _ in _lines(t)]
    assert not line_frames(t, spans)
    t = "day,opens,closes\nMonday,closed,closed\nTuesday,9,17"  # a real header still heads its rows
    spans = [(s, e) for s, e, _ in _lines(t)]
    assert line_frames(t, spans).frames == [(), (0,), (0,)]


# Review core34c b2: a line whose whole frame fits the budget but not the room left after a better-ranked
# prose sentence waited and was never taken (memory: 3Gi lost at 55 and 60, kept at 50 and 70). The best
# line that waited is now taken at its rank with the nearest ancestors that fit.

WORKER_DOC = {"id": "doc", "title": "Scaling guide", "text": "Workers scale horizontally. Each worker processes one queue at a time. "
              "The default memory limit is set per deployment in the Helm values. Raise it when jobs are killed with OOM errors."}
WORKER_VALUES = {"id": "y", "title": "values.yaml", "text": (
    "worker:\n  deployment:\n    template:\n      spec:\n        containers:\n          main_container_configuration:\n"
    "            resources_configuration_block:\n              limits_for_this_container:\n                memory: 3Gi\n"
    "                cpu: 2\n  replicas: 4")}
CHECKOUT = {"id": "k", "title": "deploy/checkout.yaml", "text": (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout-worker\n  namespace: payments-production-eu-west\n"
    "spec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n        - name: checkout-worker-container\n"
    "          image: registry.example.com/checkout/worker:2.14.1\n          resources:\n            limits:\n"
    "              memory: 1Gi\n              cpu: 500m")}
ONCALL = {"id": "d", "title": "oncall notes", "text": "The checkout worker was OOM-killed twice last week during the sale. "
          "We should consider raising its memory limit before Black Friday."}
GATEWAY = {"id": "c", "title": "gateway.py", "text": (
    "```python\nclass PaymentGatewayConfiguration:\n    def __init__(self):\n        self.retry_attempts_before_giving_up = 5\n"
    "        self.connection_timeout_in_seconds = 45\n        self.currency = 'EUR'\n\n    def describe(self):\n"
    "        return f'{self.currency} gateway'\n```")}
PAYMENTS = {"id": "p", "title": "payments FAQ", "text": "Payments are retried automatically when the gateway does not answer. "
            "The timeout can be raised for slow banks. Contact support for a custom currency."}
WAITS = {  # question, chunks, value line, {pipeline: the budgets (of 15..85) at which 7a590f5 kept it}
    "helm_values": ("What is the worker memory limit?", [WORKER_DOC, WORKER_VALUES], "memory: 3Gi",
                    {"default": range(50, 90, 5), "quality": range(50, 90, 5), "custom": range(45, 90, 5)}),
    "k8s": ("What is the checkout worker's memory limit?", [ONCALL, CHECKOUT], "memory: 1Gi",
            {"default": range(55, 90, 5), "quality": [15, *range(50, 90, 5)], "custom": [15, *range(50, 90, 5)]}),
    "py_class": ("What is the payment gateway connection timeout?", [PAYMENTS, GATEWAY], "= 45",
                 {"default": [25, 30, 40, *range(55, 90, 5)], "quality": [35, *range(50, 90, 5)], "custom": range(55, 90, 5)}),
}
# k8s default at 65 and 70: the better-ranked '- name: checkout-worker-container' is taken first (at its rank, with
# the ancestors that fit) and leaves too little room for memory: 1Gi; 7a590f5 had no frames to pay for.
FRAME_COSTS = {("k8s", "default", 65), ("k8s", "default", 70)}


@pytest.mark.parametrize("case", sorted(WAITS))
def test_a_value_line_whose_frame_waits_is_kept_wherever_7a590f5_kept_it(case: str) -> None:
    query, chunks, value, kept_at = WAITS[case]
    lost = []
    for name, budgets in kept_at.items():
        for budget in budgets:
            result = _pipelines(budget)[name].run(query, chunks)
            _assert_exact(result, chunks, budget)
            if value not in result.text and (case, name, budget) not in FRAME_COSTS:
                lost.append((name, budget))
    assert not lost, lost
