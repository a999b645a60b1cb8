"""Named pipeline presets, as plain configs (see :meth:`optimizer.Pipeline.preset`).

``full`` has no stages: everything, in the caller's order (the eval runs it once, without
a budget, as the reference; with a budget it is still cut to fit). ``truncate`` is the naive baseline. The
other baselines (``bm25-topk``, ``dense-topk``: the most relevant whole chunks that fit;
``sentence-dense``: MiniLM sentence extraction) mirror what users already have, so the eval
can compare side by side; ``bm25-pack`` is BM25 ranking with ragtrim's packer, which cuts the
chunk that crosses the budget at a sentence instead of skipping it. ``default`` is the recommended one.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

# The default sentence extraction: static embeddings, a hybrid BM25 + cosine chunk prior, query
# coverage and, at tight budgets, a cost-scaled greedy that spreads over chunks. Chosen on HotpotQA and 2Wiki, checked on
# squad2-pools and nq-multidoc (BENCHMARKS.md, "How default was chosen"). Given more than 64
# chunks, only the 64 best by BM25 and the retriever's score are split into sentences (fixed,
# not tuned; BENCHMARKS.md, "Issue 11, second round": recall within about a point at 100
# retrieved chunks, 1.4-1.7x bm25-pack's cost at 1,000 instead of 4-4.8x). The lead sentence of
# the chunk the second hop links to best gains its link (link_lead 1.0, link_chunks 1, chosen
# leave-one-dataset-out over the four bundled sets: BENCHMARKS.md, "Issue 11, sixth round" and
# "seventh round"). The static cosine weighs 2.0 in a question whose second hop finds no link
# and falls toward 0.5 as the link grows (dense, dense_linked; chosen the same way: "Issue 11,
# eleventh round"): single-passage questions lean on the embedding, bridge questions on words and links.
# Chunks that share a title are read as pieces of one document (documents: no link from a piece to
# its own document, the hop reads whole documents, a piece that opens with the title is a lead):
# retrievers return split documents ("Issue 11, twelfth round"). Words match on their first six
# letters ("directed" meets "director"; truncation stemming; identifiers, words with a digit, an
# underscore or camelCase, are not truncated, so invoice 40031871 is not 40031877: a fix, not a
# tuned setting), chosen leave-one-dataset-out over the four bundled sets, every fold choosing it
# ("Issue 11, thirteenth round"). A long chunk of several
# blank-line separated paragraphs is scored paragraph by paragraph, a paragraph's heading line read
# as its title (paragraphs; "Issue 11, nineteenth round": protocol written before the runs, checked
# on long chunks of questions no setting was chosen on; no bundled chunk has a blank line, so the
# bundled sets' output is unchanged). In a chunk with a title of its own, a paragraph's heading titles
# it after the chunk's title (titled_headings "joined", the stage's default; "Issue 11, twentieth
# round": the heading alone won where chunks were built but lost 10 points on generic section
# headings, and "joined" passed the rule written before the runs, in both presets). The hop follows
# links on from the chunks it brings in, up to 3 link steps (link_steps: a chain of 4 passages, the
# unseen target's longest, fixed from that, not tuned; `quality` too; "Thirty-seventh round": synthetic
# 3- and 4-hop chains, then the bundled sets), and a surname alone names the person a chunk is titled
# after ("Thirty-eighth round"; a rule, no setting).
SENTENCES_DEFAULT: dict[str, Any] = {
    "model": "static",
    "dense": 2.0,
    "dense_linked": 0.5,
    "chunk_dense": 0.25,
    "coverage": 0.5,
    "density": 0.3,
    "tight_sentences": 4,
    "candidates": 64,
    "link_lead": 1.0,
    "link_chunks": 1,
    "link_steps": 3,
    "documents": True,
    "stem": 6,
    "paragraphs": True,
}

# `quality` (and `thorough`) score with int8 MiniLM, whose cosine was never put through the
# eleventh round: they keep one cosine weight (1.0) for every question, and read every chunk alone
# (`documents` for `quality` failed the thirteenth round's rule by 0.2 points on one set). They match
# words on six letters too (`stem`, through the same protocol for `quality`; `thorough` not re-measured),
# and score long chunks paragraph by paragraph (`paragraphs`, nineteenth round, both presets).
SENTENCES_QUALITY: dict[str, Any] = {**SENTENCES_DEFAULT, "model": "minilm-int8", "dense": 1.0, "dense_linked": None,
                                     "documents": False}

PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "description": "everything, in the given order (the eval's reference: it runs once, without a budget)",
        "steps": [],
    },
    "truncate": {
        "description": "baseline: the first tokens of the context, in the given order",
        "steps": [{"stage": "select-truncate"}],
    },
    "bm25-topk": {
        "description": "baseline: the most relevant whole chunks by BM25 that fit the budget (never cut)",
        "steps": [{"stage": "rerank-bm25"}, {"stage": "select-whole"}],
    },
    "bm25-pack": {
        "description": "BM25 chunk ranking + ragtrim's packer (the chunk that crosses the budget is cut at a sentence)",
        "steps": [{"stage": "rerank-bm25"}],
    },
    "dense-topk": {
        "description": "baseline: the most relevant whole chunks by MiniLM cosine that fit the budget (never cut)",
        "steps": [{"stage": "rerank-dense", "params": {"model": "minilm"}}, {"stage": "select-whole"}],
    },
    "sentence-dense": {
        "description": "baseline: sentences by MiniLM cosine to the query (no lexical score, no second hop)",
        "steps": [
            {
                "stage": "compress-sentences",
                "params": {"model": "minilm", "lexical": 0.0, "dense": 1.0, "chunk_prior": 0.0, "lead": 0.0,
                           "numeric": 0.0, "hops": 1},
            }
        ],
    },
    "default": {
        "description": "recommended: trim the overlap of sliding windows, cut near-duplicates to what they add, then pick "
        "sentences by BM25 + static embeddings + a hybrid chunk prior with a second hop, covering the query's words, "
        "to fill the budget (no LLM, no MiniLM)",
        "steps": [
            {"stage": "dedupe-overlaps"},
            {"stage": "dedupe-near"},
            {"stage": "compress-sentences", "params": SENTENCES_DEFAULT},
        ],
    },
    "quality": {
        "description": "higher quality, slower: as default, with MiniLM sentence embeddings (int8 ONNX)",
        "steps": [
            {"stage": "dedupe-overlaps"},
            {"stage": "dedupe-near"},
            {"stage": "compress-sentences", "params": SENTENCES_QUALITY},
        ],
    },
}

# `quality` with the packaged Gemma as a reranker of the 8 best chunks (query likelihood, UPR) in
# front of the sentence stage, whose chunk prior then reads the LM's ranking. Seconds per
# question, not milliseconds, and no better than `quality` on held-out data (BENCHMARKS.md,
# "fourth round"); needs ragtrim[reader].
PRESETS["thorough"] = {
    "description": "experimental, slowest, needs ragtrim[reader]: as quality, with the 8 best chunks reranked by the packaged "
    "Gemma's likelihood of the question given each passage (UPR; seconds per question)",
    "steps": [
        {"stage": "dedupe-overlaps"},
        {"stage": "dedupe-near"},
        {"stage": "rerank-lm", "params": {"candidates": 8, "passage_tokens": 128}},
        {"stage": "compress-sentences", "params": SENTENCES_QUALITY},
    ],
}

# The fitted sentence scorer (optimizer/data/scorer-*.json, bench/fit_scorer.py): learned weights
# over sentence features, the retriever's score used when chunks carry one, and the selector
# settings the fit chose on the bundled sets (written in the scorer file's info.selector; a
# test keeps these equal). Under leave-one-dataset-out it does not beat the hand-weighted
# scorer on the two sets that one was not tuned on (BENCHMARKS.md), so it is opt-in.
SENTENCES_FITTED: dict[str, Any] = {
    "scorer": "fitted",
    "weights": "default",
    "density": 1.0,
    "tight_sentences": 0,
    "redundancy": 0.0,
    "coverage": 0.2,
}
SENTENCES_FITTED_QUALITY: dict[str, Any] = {**SENTENCES_FITTED, "weights": "quality"}

PRESETS["fitted"] = {
    "description": "experimental: window-overlap trim and near-dedupe, then sentences scored by the fitted (learned) "
    "scorer on cheap features (BM25, static embeddings, chunk prior, second hop, position; the retriever's score when given)",
    "steps": [
        {"stage": "dedupe-overlaps"},
        {"stage": "dedupe-near"},
        {"stage": "compress-sentences", "params": SENTENCES_FITTED},
    ],
}
PRESETS["fitted-quality"] = {
    "description": "experimental: as fitted, with int8 MiniLM sentence features fused in by the learned weights",
    "steps": [
        {"stage": "dedupe-overlaps"},
        {"stage": "dedupe-near"},
        {"stage": "compress-sentences", "params": SENTENCES_FITTED_QUALITY},
    ],
}


# The data each preset's settings were chosen on (or its weights fitted on): an eval of the preset on one of these
# sets is in-sample (optimistic), and `ragtrim eval` marks it ("in_sample" in results.json, a * in the report).
# `default` and `quality` (and `thorough`, which reuses quality's sentence settings; its LM reranker was not tuned):
# the hand settings were chosen on HotpotQA and 2Wiki (BENCHMARKS.md, "How `default` was chosen"); the second
# round's decisions on the fit-only dev sets nq-extra and squad-extra (bench/fit_extra.py; "Issue 11, second round").
# Settings added later were chosen leave-one-dataset-out over the bundled sets (with their dev sets), the fold holding
# each set out choosing the same value, so BENCHMARKS.md counts squad2-pools and nq-multidoc as out of sample. The
# fitted scorers: weights fitted on every set in their file's info.fitted_on (the four bundled sets and the two dev
# sets), the selector chosen on the bundled sets (info.selector_chosen_on); read from the file by `tuned_on`.
_HAND_TUNED_SETS = ("hotpotqa", "2wiki", "nq-extra", "squad-extra")
_HAND_TUNED_HOW = (
    "hand settings chosen on hotpotqa and 2wiki (BENCHMARKS.md, \"How default was chosen\"), later decisions on the dev "
    "sets nq-extra and squad-extra (\"Issue 11, second round\"); settings added after that were chosen "
    "leave-one-dataset-out, so squad2-pools and nq-multidoc count as out of sample"
)
TUNED_ON: dict[str, dict[str, Any]] = {
    "default": {"sets": _HAND_TUNED_SETS, "how": _HAND_TUNED_HOW},
    "quality": {"sets": _HAND_TUNED_SETS, "how": _HAND_TUNED_HOW},
    "thorough": {"sets": _HAND_TUNED_SETS, "how": "quality's sentence settings: " + _HAND_TUNED_HOW},
    "fitted": {"scorer": "default"},
    "fitted-quality": {"scorer": "quality"},
}


def tuned_on(name: str) -> dict[str, Any] | None:
    """``{"sets": [...], "how": "..."}``: the data preset ``name``'s settings were chosen or fitted on (None: none).

    >>> tuned_on("default")["sets"], tuned_on("truncate")
    (['hotpotqa', '2wiki', 'nq-extra', 'squad-extra'], None)
    >>> {"hotpotqa", "nq-multidoc", "squad2-pools"} <= set(tuned_on("fitted")["sets"])
    True
    """
    entry = TUNED_ON.get(name)
    if entry is None:
        return None
    if "scorer" not in entry:
        return {"sets": list(entry["sets"]), "how": entry["how"]}
    return _fitted_on(entry["scorer"])


def _fitted_on(scorer: str) -> dict[str, Any]:
    """The sets a shipped scorer file says its weights were fitted on (``info.fitted_on``) and how its selector was chosen."""
    import json
    from importlib import resources

    info = json.loads(resources.files("optimizer.data").joinpath(f"scorer-{scorer}.json").read_text(encoding="utf-8")).get("info", {})
    fitted = info.get("fitted_on") or {}
    sets = sorted({name for part in fitted.values() if isinstance(part, dict) for name in part})
    how = f"scorer weights fitted on these sets (optimizer/data/scorer-{scorer}.json, info.fitted_on)"
    if info.get("selector_chosen_on"):
        how += f"; selector settings chosen on the {info['selector_chosen_on']}"
    return {"sets": sets, "how": how}


# Presets that take seconds per question and need ragtrim[reader]: an eval's ``--pipelines all``
# leaves them out, so naming them is the way to run them.
ON_REQUEST = frozenset({"thorough"})


def list_presets(*, on_request: bool = True) -> list[str]:
    """Names of the presets; ``on_request=False`` leaves out the slow ones in :data:`ON_REQUEST`.

    >>> "thorough" in list_presets(), "thorough" in list_presets(on_request=False)
    (True, False)
    """
    return [name for name in PRESETS if on_request or name not in ON_REQUEST]


def preset_description(name: str) -> str:
    return str(preset_config(name).get("description", ""))


def preset_config(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name``'s config (with ``name`` filled in)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown preset {name!r}.{hint} Presets: {', '.join(PRESETS)}")
    config = copy.deepcopy(PRESETS[name])
    config["name"] = name
    return config
