"""How a run reads the caller's ``Chunk.score``: a similarity (higher is better) or a distance (lower is better).

Retrievers hand over their best first, so scores that rise along the given order are distances
(FAISS L2, pgvector ``<->``, LangChain's FAISS ``similarity_search_with_score``, LlamaIndex's
``FaissVectorStore`` over ``IndexFlatL2``): at least four scored chunks, never falling, not all
equal. Anything else is a similarity. A :class:`~optimizer.Pipeline` decides once per run, on every
chunk it was given, unless a step's ``retriever`` setting (the sentence stage's) says
``"similarity"`` or ``"distance"``; every stage and the packer then rank by that one reading
(:meth:`optimizer.stage.StageContext.relevances`), and a chunk without a score counts as the
worst given score (a cross-encoder's logits may all be negative: an unscored chunk is not 0).

>>> from optimizer import Chunk
>>> chunks = [Chunk(id=k, text=k, score=s) for k, s in zip("abcd", [0.2, 0.5, 0.9, 1.4])] + [Chunk(id="e", text="e")]
>>> reading = read_scores(chunks, "auto")
>>> reading.direction, [reading.value(c) for c in chunks]
('distance', [-0.2, -0.5, -0.9, -1.4, -1.4])
>>> read_scores(chunks[:3], "auto").direction   # three scores are too few to tell
'similarity'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from optimizer.records import Chunk

DIRECTIONS = ("similarity", "distance")
"""The two ways a score reads; a ``retriever`` setting naming one fixes it for the whole run."""

MIN_RISING = 4
"""Scored chunks needed before rising scores are read as distances."""


@dataclass(frozen=True)
class ScoreReading:
    """A run's reading of ``Chunk.score``: its ``direction`` and ``worst``, the worst given score as read.

    ``worst`` is what a chunk without a score counts as (None when no chunk has one).
    """

    direction: str = "similarity"
    worst: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"score direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")

    @property
    def sign(self) -> float:
        """+1 for similarities, -1 for distances: a score times this is higher when better."""
        return -1.0 if self.direction == "distance" else 1.0

    def value(self, chunk: Chunk) -> float | None:
        """``chunk``'s score as read, higher is better; the worst given one without a score (None: no chunk has one)."""
        if chunk.score is None:
            return self.worst
        return self.sign * float(chunk.score)


def rises_along_order(chunks: Sequence[Chunk], input_order: Mapping[str, int] | None = None) -> bool:
    """Whether the scores, read in the caller's order (``input_order``, else the list's), never fall and do rise.

    At least :data:`MIN_RISING` scored chunks.

    >>> rises_along_order([Chunk(id=k, text=k, score=s) for k, s in zip("abcd", [0.1, 0.3, 0.3, 0.9])])
    True
    """
    order = input_order or {}
    seq = [s for _, s in sorted((order.get(c.id, i), float(c.score)) for i, c in enumerate(chunks) if c.score is not None)]
    return len(seq) >= MIN_RISING and seq[-1] > seq[0] and all(a <= b for a, b in zip(seq, seq[1:]))


def score_direction(chunks: Sequence[Chunk], mode: str, input_order: Mapping[str, int] | None = None) -> str:
    """``"similarity"`` or ``"distance"``: ``mode`` when it names one, else (``"auto"``, ``"order"``,
    ``"ignore"``) a distance when the scores rise along the given order (:func:`rises_along_order`)."""
    if mode in DIRECTIONS:
        return mode
    return "distance" if rises_along_order(chunks, input_order) else "similarity"


def read_scores(chunks: Sequence[Chunk], mode: str = "auto", input_order: Mapping[str, int] | None = None) -> ScoreReading:
    """The :class:`ScoreReading` of ``chunks``: :func:`score_direction`, and their worst score as read."""
    direction = score_direction(chunks, mode, input_order)
    sign = -1.0 if direction == "distance" else 1.0
    known = [sign * float(c.score) for c in chunks if c.score is not None]
    return ScoreReading(direction, min(known) if known else None)


SCORE_DIRECTIONS = ("auto", *DIRECTIONS)
"""What a pipeline's ``score_direction`` may be: ``"auto"`` decides per run (:func:`score_direction`)."""


def check_score_direction(value: object, where: str = "score_direction") -> str:
    """``value`` when it is one of :data:`SCORE_DIRECTIONS`, else a ValueError naming it and the choices.

    >>> check_score_direction("cosine")
    Traceback (most recent call last):
    ...
    ValueError: score_direction must be one of 'auto', 'similarity', 'distance', got 'cosine'; 'similarity' when a higher score is better (cosine, dot product), 'distance' when lower is (L2), 'auto' to read scores rising along the given order as distances
    """
    if not isinstance(value, str) or value not in SCORE_DIRECTIONS:
        choices = ", ".join(repr(d) for d in SCORE_DIRECTIONS)
        raise ValueError(
            f"{where} must be one of {choices}, got {value!r}; 'similarity' when a higher score is better (cosine, "
            "dot product), 'distance' when lower is (L2), 'auto' to read scores rising along the given order as distances"
        )
    return value


def reading_note(mode: str, reading: ScoreReading | None) -> str | None:
    """What a run's trace says of its reading of the scores (None when no chunk has a score).

    ``mode`` is what the run was told (``"similarity"``/``"distance"``) or ``"auto"``.

    >>> reading_note("auto", ScoreReading("distance", -1.4))
    "distance (rising along the given order; pass score_direction='similarity' if they are similarities)"
    >>> reading_note("distance", ScoreReading("distance", -1.4))
    'given: distance'
    """
    if reading is None or reading.worst is None:
        return None
    if mode in DIRECTIONS:
        return f"given: {reading.direction}"
    if reading.direction == "distance":
        return "distance (rising along the given order; pass score_direction='similarity' if they are similarities)"
    return "similarity (pass score_direction='distance' if they are distances)"
