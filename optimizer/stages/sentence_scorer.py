"""The fitted sentence scorer: standardized features times shipped weights (numpy only at run time).

A scorer file (JSON, shipped under ``optimizer/data/``, written by ``bench/fit_scorer.py``)
holds two linear models over :mod:`optimizer.stages.sentence_features` columns: ``plain``
for chunks without a retriever signal and ``retriever`` for chunks that carry
``Chunk.score`` (or come ranked). Each is a conditional logit: within a question, the
probability that sentence ``i`` holds the answer is ``softmax(z @ coef)`` with ``z`` the
standardized features. The selector gets ``exp(s_i - max s)``, the probability relative to
the best sentence, so dividing by tokens (``density``) means answer probability per token.

>>> import numpy as np
>>> m = LinearModel(names=("bm25", "lead"), mean=np.array([0.5, 0.2]), scale=np.array([0.5, 0.4]), coef=np.array([2.0, 1.0]))
>>> m.logits(np.array([[1.0, 0.0], [0.0, 1.0]])).round(3).tolist()
[1.5, 0.0]
>>> load_scorer("default").plain.names[:2]
('bm25', 'bm25_chunk')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.embeddings import EMBEDDERS
from optimizer.stages.sentence_features import BASE, MINILM, RETRIEVER, SentenceFeatures

SHIPPED = ("default", "quality")
_KNOWN = frozenset(BASE + MINILM + RETRIEVER)


@dataclass(frozen=True)
class LinearModel:
    """``(x - mean) / scale @ coef`` over the named feature columns."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in _KNOWN]
        if unknown:
            raise ValueError(f"scorer: unknown feature(s) {unknown}; known: {', '.join(sorted(_KNOWN))}")
        sizes = {len(self.names), len(self.mean), len(self.scale), len(self.coef)}
        if len(sizes) != 1:
            raise ValueError(f"scorer: names, mean, scale and coef must have one entry per feature, got sizes {sorted(sizes)}")
        if not np.all(np.asarray(self.scale) > 0):
            raise ValueError("scorer: every scale must be positive; refit the scorer")

    def logits(self, x: np.ndarray) -> np.ndarray:
        """One score per row of ``x`` (columns in ``names`` order)."""
        return ((x - self.mean) / self.scale) @ self.coef

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": _floats(self.mean), "scale": _floats(self.scale), "coef": _floats(self.coef)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], part: str = "model") -> LinearModel:
        """The model stored under ``part`` (``plain`` or ``retriever``) of a scorer file; a missing key raises ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"scorer: {part} must be a mapping with names, mean, scale and coef, got {type(data).__name__}")
        missing = [key for key in ("names", "mean", "scale", "coef") if key not in data]
        if missing:
            raise ValueError(f"scorer: {part} lacks {', '.join(missing)} (it needs names, mean, scale and coef, one entry "
                             "per feature); write the file with bench/fit_scorer.py")
        return cls(
            names=tuple(data["names"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            coef=np.asarray(data["coef"], dtype=np.float64),
        )


def _floats(a: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in a]


@dataclass(frozen=True)
class FittedScorer:
    """A shipped or fitted scorer: which embedders its features need and its two linear models."""

    plain: LinearModel
    retriever: LinearModel
    static: str | None = "static"
    dense: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("static", "dense"):
            name = getattr(self, key)
            if name is not None and name not in EMBEDDERS:
                raise ValueError(
                    f"{key} names the embedder {name!r:.80}, which ragtrim does not have; known: {', '.join(EMBEDDERS)} "
                    f"(or null: no {key} features); write the file with bench/fit_scorer.py"
                )

    def model_for(self, features: SentenceFeatures) -> LinearModel:
        """``retriever`` when the chunks carried a retriever signal, else ``plain``."""
        return self.retriever if features.retriever else self.plain

    def logits(self, features: SentenceFeatures) -> np.ndarray:
        model = self.model_for(features)
        return model.logits(features.matrix(model.names))

    def score(self, features: SentenceFeatures) -> np.ndarray:
        """``exp(logit - max logit)``: each sentence's answer probability relative to the best (in (0, 1])."""
        s = self.logits(features)
        return np.exp(s - s.max()) if len(s) else s

    def to_dict(self) -> dict[str, Any]:
        return {"static": self.static, "dense": self.dense, "plain": self.plain.to_dict(),
                "retriever": self.retriever.to_dict(), "info": self.info}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedScorer:
        missing = {"plain", "retriever"} - set(data)
        if missing:
            raise ValueError(f"scorer file lacks {sorted(missing)}; write it with bench/fit_scorer.py")
        return cls(
            plain=LinearModel.from_dict(data["plain"], "plain"),
            retriever=LinearModel.from_dict(data["retriever"], "retriever"),
            static=data.get("static"),
            dense=data.get("dense"),
            info=dict(data.get("info", {})),
        )


def load_scorer(weights: str | Path) -> FittedScorer:
    """A shipped scorer by name (``"default"``, ``"quality"``) or a scorer JSON file by path.

    A file that is not a scorer raises ValueError naming the file and what is wrong in it.
    """
    if isinstance(weights, str) and weights in SHIPPED:
        text = resources.files("optimizer.data").joinpath(f"scorer-{weights}.json").read_text(encoding="utf-8")
    else:
        path = Path(weights)
        if not path.is_file():
            raise ValueError(
                f"sentences: weights must be one of {', '.join(SHIPPED)} or a scorer JSON file, got {str(weights)!r} "
                "(write one with bench/fit_scorer.py)"
            )
        text = path.read_text(encoding="utf-8")
    return _parse_scorer(text, str(weights))


def _parse_scorer(text: str, source: str) -> FittedScorer:
    """The scorer in JSON ``text``; any error names ``source`` (the file or shipped name)."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"the top level must be a mapping with plain and retriever, got {type(data).__name__}")
        return FittedScorer.from_dict(data)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"scorer file {source!r}: {exc}") from exc
