"""A tiny eval set in the common schema, written to a tmp file (shared by the eval tests)."""

from __future__ import annotations

import json
from pathlib import Path

FILLER = "Rivers cross the plains and farms grow wheat in long rows every summer."

TINY = [
    {
        "id": "q-paris",
        "question": "What is the capital of France?",
        "answers": ["Paris"],
        "chunks": [
            {"id": "q-paris-0", "title": "Lyon", "text": "Lyon is a large city in France. " + FILLER},
            {"id": "q-paris-1", "title": "France", "text": "The capital of France is Paris. " + FILLER, "gold": True},
            {"id": "q-paris-2", "title": "Farms", "text": FILLER + " " + FILLER},
        ],
    },
    {
        "id": "q-yes",
        "question": "Is Lyon in France?",
        "answers": ["yes"],
        "chunks": [
            {"id": "q-yes-0", "title": "Lyon", "text": "Lyon is a city in France. " + FILLER, "gold": True},
            {"id": "q-yes-1", "title": "Farms", "text": FILLER},
        ],
    },
    {
        "id": "q-hamlet",
        "question": "Who wrote the play Hamlet?",
        "answers": ["William Shakespeare", "Shakespeare"],
        "chunks": [
            {"id": "q-hamlet-0", "title": "Farms", "text": FILLER + " " + FILLER},
            {"id": "q-hamlet-1", "title": "Macbeth", "text": "Macbeth is a tragedy. " + FILLER},
            {"id": "q-hamlet-2", "title": "Hamlet", "text": "Hamlet is a play written by William Shakespeare. " + FILLER, "gold": True},
        ],
    },
    {
        "id": "q-none",
        "question": "What colour is the moon's hat?",
        "answers": [],
        "chunks": [{"id": "q-none-0", "title": "Moon", "text": "The Moon orbits the Earth. " + FILLER}],
    },
    {
        "id": "q-seine",
        "question": "Which river flows through Paris?",
        "answers": ["the Seine"],
        "chunks": [
            {"id": "q-seine-0", "title": "Loire", "text": "The Loire is the longest river in France. " + FILLER},
            {"id": "q-seine-1", "title": "Seine", "text": "The Seine flows through Paris to the sea. " + FILLER, "gold": True},
        ],
    },
]


def write_tiny(path: Path) -> Path:
    path.write_text("".join(json.dumps(obj) + "\n" for obj in TINY), encoding="utf-8")
    return path


def strip_timings(obj):
    """results.json without what legitimately varies between identical runs."""
    if isinstance(obj, dict):
        return {
            k: strip_timings(v)
            for k, v in obj.items()
            if k != "meta" and "latency" not in k and k not in ("seconds",)
        }
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def send_json(handler, body, status: int = 200, headers=None) -> None:
    """Answer an ``http.server`` request with ``body`` as JSON (the fake reader endpoints' replies)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)
