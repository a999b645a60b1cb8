"""Per-example metrics, exactly as defined in DESIGN.md.

Normalization is SQuAD's: lower case, drop punctuation, drop the articles a/an/the,
collapse white space (Rajpurkar et al., *SQuAD*, EMNLP 2016).

>>> normalize("The  Eiffel-Tower!")
'eiffeltower'
>>> answer_recall("[1] Paris\\nThe capital is Paris.", ["paris"])
1
>>> answer_recall("nothing here", ["yes"]) is None
True
>>> em("the Paris", ["Paris"]), round(f1("Paris France", ["Paris"]), 3)
(1, 0.667)
>>> miss(0, kept_chunk_ids=["c1"], answer_chunks=["c1", "c7"])
'cut'
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optimizer.records import Chunk

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
YES_NO = frozenset({"yes", "no"})


def normalize(text: str) -> str:
    """SQuAD normalization: lower, drop punctuation, drop articles, collapse white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def counts_for_recall(answers: Sequence[str]) -> bool:
    """Whether an example counts for answer recall: some answer that is not yes/no or empty."""
    return any(normalize(a) and normalize(a) not in YES_NO for a in answers)


def contains_answer(text: str, answers: Sequence[str]) -> int:
    """1 if any normalized (non-empty) answer is a substring of the normalized text, else 0."""
    norm = normalize(text)
    return int(any(normalize(a) and normalize(a) in norm for a in answers))


def answer_recall(context: str, answers: Sequence[str]) -> int | None:
    """Answer recall of a context; None for examples left out (all answers yes/no or empty)."""
    if not counts_for_recall(answers):
        return None
    return contains_answer(context, answers)


def accuracy(prediction: str, answers: Sequence[str]) -> int | None:
    """Reader accuracy: the substring test on the output; None for unanswerable examples.

    Yes/no answers count here (the reader can say them); an example with no answers at all
    is left out.
    """
    answers = [a for a in answers if normalize(a)]
    if not answers:
        return None
    return contains_answer(prediction, answers)


def em(prediction: str, answers: Sequence[str]) -> int | None:
    """SQuAD exact match (max over answers); None when there is no answer."""
    answers = [a for a in answers if normalize(a)]
    if not answers:
        return None
    p = normalize(prediction)
    return int(any(p == normalize(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    p, g = normalize(prediction).split(), normalize(answer).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, answers: Sequence[str]) -> float | None:
    """SQuAD token F1 (max over answers); None when there is no answer."""
    answers = [a for a in answers if normalize(a)]
    if not answers:
        return None
    return max(_f1(prediction, a) for a in answers)


def evidence_recall(kept_chunk_ids: Iterable[str], gold_chunk_ids: Iterable[str]) -> float | None:
    """Share of gold chunks from which at least one sentence survives; None without gold.

    ``kept_chunk_ids`` are the ids of the chunks from which at least one whole sentence is in
    the rendered context (:func:`sentence_kept_ids`: kept from the chunk, or word for word from a copy
    of it); a fragment of a sentence does not count.

    >>> evidence_recall(["a", "c"], ["a", "b"])
    0.5
    """
    gold = set(gold_chunk_ids)
    if not gold:
        return None
    return len(gold & set(kept_chunk_ids)) / len(gold)


def sentence_kept_ids(spans: Iterable[Any], chunks: Iterable[Chunk], ids: Iterable[str] | None = None) -> tuple[str, ...]:
    """Ids of the chunks (of ``ids``, else all) from which at least one whole sentence survives in the context.

    ``spans`` are a pipeline result's kept pieces (``chunk_id``, ``start``, ``end`` in the chunk's
    original text); sentence bounds come from :func:`optimizer.sentences.split_sentences`. A sentence
    survives when it is kept whole from its own chunk, or from a copy of the chunk (:func:`_is_copy`)
    that the context keeps it from word for word (equal after :func:`normalize`): a deduplicator keeps
    one of two copies of a passage and drops the other, whose sentences are still there to read. The
    same sentence kept from an unrelated passage ("They have two sons." about someone else) is not
    the chunk's evidence and does not count.

    >>> from types import SimpleNamespace as S
    >>> from optimizer import Chunk
    >>> c = [Chunk(id="b", text="France is in Europe. Paris is its capital.")]
    >>> sentence_kept_ids([S(chunk_id="b", start=0, end=9)], c), sentence_kept_ids([S(chunk_id="b", start=0, end=20)], c)
    ((), ('b',))
    >>> copies = [Chunk(id="mirror", text="Paris is its capital. It is old."), Chunk(id="orig", text="Paris is its capital.")]
    >>> sentence_kept_ids([S(chunk_id="mirror", start=0, end=21)], copies, ids=["orig"])
    ('orig',)
    """
    chunks = list(chunks)
    keep = set(ids) if ids is not None else None
    wanted = [c for c in chunks if keep is None or c.id in keep]
    ranges: dict[str, list[tuple[int, int]]] = {}
    for span in spans:
        if span.end > span.start:
            ranges.setdefault(span.chunk_id, []).append((span.start, span.end))
    kept = {c.id: _kept_sentences(c.original_text, ranges[c.id]) for c in chunks if c.id in ranges}
    own = {c.id for c in wanted if kept.get(c.id)}
    if len(own) == len(wanted):
        return tuple(c.id for c in wanted)
    # each chunk that kept a whole sentence: its id, its kept sentences and all its sentences, normalized
    survivors = [(c.id, {normalize(t) for t in kept[c.id]}, _sentence_keys(c.original_text)) for c in chunks if kept.get(c.id)]
    return tuple(c.id for c in wanted if c.id in own or _kept_from_a_copy(c, survivors))


def _kept_sentences(text: str, kept: list[tuple[int, int]]) -> list[str]:
    """The sentences of ``text`` that lie wholly inside the union of the ``kept`` ranges."""
    from optimizer.sentences import split_sentences

    merged: list[list[int]] = []
    for start, end in sorted(kept):
        if merged and not text[merged[-1][1] : start].strip():  # overlapping, or only white space between
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [text[s:e] for s, e in split_sentences(text) if any(lo <= s and e <= hi for lo, hi in merged)]


def _sentence_keys(text: str) -> set[str]:
    """The normalized sentences of ``text`` (empty ones left out)."""
    from optimizer.sentences import split_sentences

    return {key for s, e in split_sentences(text) if (key := normalize(text[s:e]))}


def _is_copy(mine: set[str], theirs: set[str]) -> bool:
    """Whether a chunk whose sentences are ``theirs`` is a copy of one whose sentences are ``mine`` (both
    :func:`_sentence_keys`): more than half of ``mine`` are among ``theirs``.

    An exact copy, a near-duplicate (one sentence changed) and a longer passage that contains the chunk
    are copies; two passages that share a stock sentence are not.

    >>> a = _sentence_keys("Ann is a painter. She lives in Oslo. They have two sons.")
    >>> _is_copy(a, _sentence_keys("Ann is a painter. She lives in Bergen. They have two sons."))
    True
    >>> _is_copy(a, _sentence_keys("Bob is a singer. He lives in Rome. They have two sons."))
    False
    """
    return 2 * len(mine & theirs) > len(mine)


def _kept_from_a_copy(chunk: Chunk, survivors: Sequence[tuple[str, set[str], set[str]]]) -> bool:
    """Whether a sentence of ``chunk`` is kept whole from another chunk that is a copy of it (``survivors``: each chunk
    that kept a whole sentence, as its id, its kept sentences and all its sentences, normalized)."""
    mine = _sentence_keys(chunk.original_text)
    return any(other != chunk.id and mine & kept and _is_copy(mine, theirs) for other, kept, theirs in survivors)


MISS_KINDS = ("cut", "dropped", "absent")
"""Where a kept context lost the answer (:func:`miss`), in the order the report lists them."""


def answer_chunk_ids(chunks: Iterable[Chunk], answers: Sequence[str]) -> tuple[str, ...] | None:
    """Ids of the chunks whose rendered text (title and text) holds a normalized answer.

    None for an example answer recall leaves out. Yes/no answers never mark a chunk.

    >>> from optimizer import Chunk
    >>> answer_chunk_ids([Chunk(id="a", text="Lyon."), Chunk(id="b", text="In 1889.", title="Paris")], ["Paris"])
    ('b',)
    """
    if not counts_for_recall(answers):
        return None
    wanted = [a for a in answers if normalize(a) and normalize(a) not in YES_NO]
    return tuple(c.id for c in chunks if contains_answer(f"{c.title or ''}\n{c.original_text}", wanted))


def miss(answer_recall: int | None, *, kept_chunk_ids: Iterable[str], answer_chunks: Sequence[str] | None) -> str | None:
    """Why a context lacks the answer: None where it has it (or answer recall does not count), else

    - ``"cut"``: a chunk holding the answer kept some text, but not the answer (compression, or a
      budget that ended inside it);
    - ``"dropped"``: chunks hold the answer, and none of them kept any text (ranking,
      near-duplicate removal, or the budget);
    - ``"absent"``: no single chunk holds it (not retrieved, or split across chunks).

    >>> miss(0, kept_chunk_ids=["c2"], answer_chunks=["c1"]), miss(0, kept_chunk_ids=[], answer_chunks=[])
    ('dropped', 'absent')
    >>> miss(1, kept_chunk_ids=["c1"], answer_chunks=["c1"]) is None
    True
    """
    if answer_recall is None or answer_recall or answer_chunks is None:
        return None
    if not answer_chunks:
        return "absent"
    return "cut" if set(answer_chunks) & set(kept_chunk_ids) else "dropped"
