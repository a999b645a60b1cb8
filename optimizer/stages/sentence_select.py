"""Budgeted, coverage-aware choice of sentences from per-sentence scores.

The selector does not know how the scores were made (hand weights or a fitted model): it
takes sentences, one non-negative value each, and fills the token budget greedily with
diminishing returns. A sentence from a chunk already used is worth a little less
(``redundancy``), query words a taken sentence already mentions stop earning a bonus
(``coverage``, submodular coverage: Lin & Bilmes, ACL 2011), and when only a few sentences
fit the value is scaled per token (``density``, the cost-scaled greedy of budgeted
maximization: Khuller, Moss & Naor 1999). ``tight_sentences`` fades density and redundancy
as the budget grows. ``coverage_mode="add"`` adds the coverage bonus to the value (for
scores on a fixed scale, like the hand-weighted fusion); ``"scale"`` multiplies the value by
``1 + bonus`` (for relative probabilities, whose scale shrinks fast down the ranking). Kept sentences stay in document order inside their chunk; each kept
chunk's ``relevance`` is its best sentence's score.

>>> import numpy as np
>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> from optimizer.stages.sentence_signals import split_chunks
>>> chunks = [Chunk(id="a", text="Paris is the capital of France. It has many museums.")]
>>> ctx = StageContext.default(budget=8)
>>> sents = split_chunks(chunks, ctx)
>>> out = SentenceSelector()("capital of France?", chunks, sents, np.array([2.0, 0.5]), ctx)
>>> out[0].text
'Paris is the capital of France.'
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optimizer.headings import Subjects
from optimizer.overhead_tally import RecountTally, Tally
from optimizer.records import Chunk
from optimizer.render import group_by_title
from optimizer.stage import StageContext, StageOutput
from optimizer.sentences import code_blocks, field_counts, line_view
from optimizer.structure_frames import LineFrames, line_frames
from optimizer.stages.prefix_end import clause_end, word_end
from optimizer.stages.sentence_signals import Sentence, answer_part, query_mentions, terms_memo
from optimizer.text import case_marks, mostly_cjk, word_count
from optimizer.stages.wrap_cuts import LINES_REASON, LineCuts, Part, left_out, with_parts

CUT_REASON = "sentences: lower-scoring sentences left out for the budget"
"""The trace's reason for a chunk the selection kept only part of."""
REPEAT_REASON = "sentences: every sentence already kept, word for word, from another chunk"
"""The trace's reason for a chunk none of whose sentences was kept because others already say them all."""
SENTENCE_REPEAT_REASON = "sentences: already kept, word for word, from another chunk"
"""The trace's reason for a sentence range of a partly kept chunk that another chunk's kept sentence says."""
LEFT_OUT_REASON = "sentences: no sentence among the best within the budget"
"""The trace's reason for a chunk none of whose sentences ranked high enough to be kept in the budget."""
PREFIX_REASON = "sentences: its best sentence cut to the room left after the others"
"""The trace's reason for the end of a sentence left out for its length whose prefix took the room left (:meth:`SentenceSelector.prefix`)."""


class _Waits:
    """The sentences :meth:`SentenceSelector.greedy` holds back until the other sentences of their chunk have been
    offered (``later``), and how many sentences of each chunk are still to be offered."""

    def __init__(self, chunk_of: np.ndarray, later: Callable[[int], bool] | None) -> None:
        self.chunk_of = chunk_of
        self.later = later
        self.to_offer: dict[int, int] = {}
        if later is not None:
            for c in chunk_of.tolist():
                self.to_offer[c] = self.to_offer.get(c, 0) + 1
        self.held: dict[int, list[int]] = {}
        self.again: set[int] = set()

    def wait(self, i: int) -> bool:
        """Whether offered ``i`` waits (other sentences of its chunk are still to be offered); counts it offered."""
        if self.later is None:
            return False
        c = int(self.chunk_of[i])
        self.to_offer[c] -= 1
        if i in self.again or not self.to_offer[c] or not self.later(i):
            return False
        self.held.setdefault(c, []).append(i)
        return True

    def release(self, i: int, left: np.ndarray) -> bool:
        """After ``i`` was offered: when none of its chunk's sentences is left but those that waited, put them back
        in ``left`` (each offered once more, without waiting) and say so."""
        c = int(self.chunk_of[i])
        if self.later is None or self.to_offer[c] or c not in self.held:
            return False
        back = self.held.pop(c)
        left[back] = True
        self.again.update(back)
        self.to_offer[c] += len(back)
        return True


def _offers(total: np.ndarray, left: np.ndarray) -> Iterator[int]:
    """The sentences still ``left``, best ``total`` first (ties: lower index), while nothing is taken.

    The same order as taking ``argmax`` of ``total`` over ``left`` again and again (the caller
    clears ``left[i]`` for each one offered): the first by ``argmax``; only when that one
    was not taken (``total`` then stays the same) are the rest sorted once, instead of one
    ``argmax`` over every sentence per offer. Values that are not finite go one by one.
    """
    masked = np.where(left, total, -np.inf)
    first = int(np.argmax(masked))
    yield first
    rest = np.flatnonzero(left)
    if not np.isfinite(total[rest]).all():
        while left.any():
            yield int(np.argmax(np.where(left, total, -np.inf)))
        return
    yield from (int(i) for i in rest[np.argsort(-total[rest], kind="stable")])


REPEAT_MIN_WORDS = 4  # shorter lines ("}", "end", "See also.") repeat by nature, not by copying


def repeat_key(text: str) -> str | None:
    """The words of a sentence, case-folded, by which a verbatim repeat is known; None for short ones.

    Short is fewer than :data:`REPEAT_MIN_WORDS` words between white space (``return x;``), but for text
    written without them: a sentence mostly CJK, kana or hangul (:func:`~optimizer.text.mostly_cjk`) or a delimited
    row (``ORD-5004,Customer4,Austin,248.50``: commas, semicolons, bars or tabs) counts
    :func:`~optimizer.text.word_count`'s words, one "word" between spaces each long enough to be a copy.
    ``resp = self._session.get(url)`` is three words (a line of code by its word runs would be a repeat of
    any other function's). The words whose case changes what they say stay as written
    (:func:`~optimizer.text.case_marks`: ``5 mW`` does not repeat ``5 MW``).

    >>> repeat_key("She was the first woman  to win."), repeat_key("}"), repeat_key("It is 5 mW.") == repeat_key("It is 5 MW.")
    ('she was the first woman to win.', None, False)
    >>> repeat_key("ORD-5004,Customer4,Austin,248.50"), repeat_key("访客车辆最多可停放24小时。")
    ('ord-5004,customer4,austin,248.50', '访客车辆最多可停放24小时。')
    >>> repeat_key("resp = self._session.get(url)") is None
    True
    """
    words = text.split()
    if len(words) < REPEAT_MIN_WORDS and not (_unspaced(text) and word_count(text) >= REPEAT_MIN_WORDS):
        return None
    marks = case_marks(text)
    return " ".join(words).casefold() + (f"\x00{marks}" if marks else "")


def _unspaced(text: str) -> bool:
    """Whether ``text`` is written without spaces between its words: mostly CJK, kana or hangul, or a delimited row
    (at least ``REPEAT_MIN_WORDS - 1`` of one field separator, :func:`~optimizer.sentences.field_counts`)."""
    return mostly_cjk(text) or max(field_counts(text)) >= REPEAT_MIN_WORDS - 1


class SubjectKeys(Sequence):  # type: ignore[type-arg]
    """Each sentence's :func:`repeat_key` (``keys[i]``), and whether a chunk's sentence repeats another chunk's
    (:meth:`repeats`): the same words, unless the query names each chunk's subject apart from the other's
    (:class:`~optimizer.headings.Subjects`: a comparison of two sibling pages, X200's and X300's sheets; the second copy
    then waits for its chunk's own sentences, :meth:`echoes`). When it names
    one only (the Marseille store's page, word for word Paris's), that chunk says the line and the other drops it
    (:meth:`yields`); a sibling the query does not ask for, or a mirror under another file name, repeats it."""

    def __init__(self, query: str, chunks: Sequence[Chunk], sents: Sequence[Sentence]) -> None:
        self.keys = _unit_keys(sents, chunks)
        self.subjects = Subjects(query, chunks)
        self.named = self.subjects.named
        self._yields, self._compared = self._shared(sents)

    def _shared(self, sents: Sequence[Sentence]) -> tuple[set[int], set[int]]:
        """``(yielding, compared)``: the sentences whose words a chunk the query asks about instead
        (:meth:`Subjects.outranks`) also says, and those whose words a chunk compared with theirs also says
        (:meth:`Subjects.both`); the subjects read only of chunks that share a sentence's words."""
        by_key: dict[str, set[int]] = {}
        for s, key in zip(sents, self.keys):
            if key is not None:
                by_key.setdefault(key, set()).add(s.chunk)
        if all(len(found) < 2 for found in by_key.values()):
            return set(), set()
        yielding: set[int] = set()
        compared: set[int] = set()
        for i, (s, key) in enumerate(zip(sents, self.keys)):
            if key is None or len(by_key[key]) < 2:
                continue
            if any(self.subjects.outranks(o, s.chunk) for o in by_key[key]):
                yielding.add(i)
            elif any(self.subjects.both(s.chunk, o) for o in by_key[key]):
                compared.add(i)
        return yielding, compared

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self.keys[i]

    def __len__(self) -> int:
        return len(self.keys)

    def yields(self, i: int) -> bool:
        """Whether sentence ``i`` is left to a chunk the query asks about instead of its own (which says it word for word)."""
        return i in self._yields

    def repeats(self, chunk: int, other: int) -> bool:
        """Whether a sentence of ``chunk`` repeats the same words in ``other`` (another chunk, not compared with it)."""
        return chunk != other and not self.subjects.both(chunk, other)

    def said(self, chunk: int, sayers: Sequence[int] | set[int]) -> bool:
        """Whether one of ``sayers`` (chunks that say a sentence's words) already says it for ``chunk`` (:meth:`repeats`)."""
        return any(self.repeats(chunk, other) for other in sayers)

    def echoes(self, i: int, chunk: int, sayers: Sequence[int] | set[int]) -> bool:
        """Whether sentence ``i`` of ``chunk`` says again what one of ``sayers`` (chunks that took its words) says, a
        chunk the query compares with ``chunk`` (:meth:`Subjects.both`): not a repeat, but nothing new either, so the
        greedy pass offers it after its chunk's own sentences (:meth:`SentenceSelector.greedy`'s ``later``)."""
        return i in self._compared and any(self.subjects.both(chunk, other) for other in sayers)

    @property
    def compares(self) -> bool:
        """Whether any sentence's words are said by two chunks the query compares (:meth:`echoes` can hold)."""
        return bool(self._compared)


def _unit_keys(sents: Sequence[Sentence], chunks: Sequence[Chunk] = ()) -> list[str | None]:
    """Each sentence's :func:`repeat_key`: a question joined to its answer repeats what its answer does (an answer
    given alone, or under the same question), unless another unit gives that answer under another question (``Does
    the X300 include a battery?`` and ``Does the X310 ...``, each ``Yes, ...``): then each unit is known by its whole
    text, and is a repeat only of a unit with the same question and answer. A line of a fenced code block of
    ``chunks`` (``sents``' chunks) has none (:func:`_in_code`): two functions share lines (``resp = self._session.get(url)``)
    that each needs, so one is no copy of the other."""
    answers = [answer_part(s.text) for s in sents]
    code = _in_code(sents, chunks)
    keys = [None if k in code else repeat_key(a) for k, a in enumerate(answers)]
    asked: dict[str, set[str | None]] = {}  # an answer's key -> the whole texts of the units that give it
    for s, a, key in zip(sents, answers, keys):
        if key is not None and len(a) < len(s.text):
            asked.setdefault(key, set()).add(repeat_key(s.text))
    if all(len(wholes) < 2 for wholes in asked.values()):
        return keys
    return [repeat_key(s.text) if key is not None and len(a) < len(s.text) and len(asked[key]) > 1 else key
            for s, a, key in zip(sents, answers, keys)]


def _in_code(sents: Sequence[Sentence], chunks: Sequence[Chunk]) -> set[int]:
    """The indices of ``sents`` that overlap a fenced code block (:func:`~optimizer.sentences.code_blocks`) of their chunk."""
    out: set[int] = set()
    fences: dict[int, tuple[tuple[int, int], ...]] = {}
    for k, s in enumerate(sents):
        if s.chunk >= len(chunks):
            continue
        if s.chunk not in fences:
            fences[s.chunk] = code_blocks(chunks[s.chunk].original_text)
        if any(fs < s.end and s.start < fe for fs, fe in fences[s.chunk]):
            out.add(k)
    return out


def _echoes(keys: SubjectKeys, sents: Sequence[Sentence], said: dict[str, list[int]]) -> Callable[[int], bool] | None:
    """The greedy pass's ``later`` (:meth:`SentenceSelector.greedy`): whether sentence ``i`` is the second copy of a
    line two compared pages share, ``said`` holding the chunks that took each line (None when the query compares none)."""
    if not keys.compares:
        return None

    def later(i: int) -> bool:
        key = keys[i]
        return key is not None and keys.echoes(i, sents[i].chunk, said.get(key, ()))

    return later


def subject_keys(query: str, chunks: Sequence[Chunk], sents: Sequence[Sentence]) -> SubjectKeys:
    """The :class:`SubjectKeys` of ``sents`` for ``query``."""
    return SubjectKeys(query, chunks, sents)


def _once_each(sents: Sequence[Sentence], keys: SubjectKeys, score: np.ndarray) -> list[int]:
    """Indices of ``sents`` in order, leaving out a sentence another chunk says word for word with a higher score
    (:meth:`SubjectKeys.repeats`)."""
    sayers: dict[str, list[int]] = {}
    out = set()
    for i in sorted(range(len(sents)), key=lambda i: (-score[i], i)):
        key, chunk = keys[i], sents[i].chunk
        if key is None:
            out.add(i)
        elif not keys.yields(i) and not keys.said(chunk, sayers.get(key, ())):
            out.add(i)
            if chunk not in sayers.setdefault(key, []):
                sayers[key].append(chunk)
    return sorted(out)


def _only_repeats(sents: Sequence[Sentence], keys: SubjectKeys, chosen: dict[int, list[int]]) -> set[int]:
    """The chunks none of whose sentences was taken and each of which another chunk's taken sentence says."""
    sayers = _sayers(keys, chosen)
    if not sayers:
        return set()
    left: dict[int, list[str | None]] = {}
    for s, key in zip(sents, keys):
        if s.chunk not in chosen:
            left.setdefault(s.chunk, []).append(key)
    return {ci for ci, ks in left.items() if all(k is not None and keys.said(ci, sayers.get(k, ())) for k in ks)}


@dataclass(frozen=True)
class SentenceSelector:
    """Greedy, budgeted sentence selection (see the module docstring for each knob).

    ``ratio`` is the share of tokens kept when the run has no budget, ``fill`` the share of
    the budget aimed for, ``order`` ``"relevance"`` (best chunk first, the other kept chunks of
    its title right after it, so a title prints once) or ``"document"``.
    ``stem`` and ``use_title`` only shape the query-word matching of ``coverage``.
    """

    density: float = 0.0
    tight_sentences: int = 0
    redundancy: float = 0.3
    lead_follow: float = 0.0
    coverage: float = 0.0
    ratio: float = 0.5
    fill: float = 1.0
    order: str = "relevance"
    stem: int = 0
    use_title: bool = True
    coverage_mode: str = "add"

    def __post_init__(self) -> None:
        if self.coverage_mode not in ("add", "scale"):
            raise ValueError(f"sentences: coverage_mode must be 'add' or 'scale', got {self.coverage_mode!r}")

    def target(self, sents: Sequence[Sentence], context: StageContext) -> int:
        """Tokens to fill: ``fill`` of the budget, or ``ratio`` of the sentences without one."""
        if context.budget is None:
            return max(1, int(sum(s.tokens for s in sents) * self.ratio))
        return int(context.budget * self.fill)

    def tight(self, sents: Sequence[Sentence], target: int, power: int) -> float:
        """``(tight_sentences / room) ** power``, at most 1 (1 when ``tight_sentences`` is 0).

        ``room`` is how many sentences of average length the budget holds.
        """
        if not self.tight_sentences or not sents:
            return 1.0
        room = max(target, 1) / max(1.0, sum(s.tokens for s in sents) / len(sents))
        return min(1.0, (self.tight_sentences / room) ** power)

    def greedy(
        self,
        sents: Sequence[Sentence],
        value: np.ndarray,
        mentions: np.ndarray | None,
        weight: np.ndarray | None,
        redundancy: float,
        accept: Callable[[int], bool] | None = None,
        check: Callable[[str], None] | None = None,
        instead: Callable[[int], int] | None = None,
        later: Callable[[int], bool] | None = None,
    ) -> Iterator[int]:
        """Sentence indices, best first, updated as sentences are taken.

        Taking a sentence lowers the value of its chunk's other sentences by ``redundancy``
        and, the first time, raises that chunk's lead sentence by ``lead_follow``; with
        ``coverage``, the query words it mentions stop earning a bonus for the others.
        ``accept(i)`` says whether offered sentence ``i`` was taken (default: always); one
        left out (say, too long for what is left of the budget) changes nothing, so the
        query words it mentions still earn their bonus for the next ones. ``check(where)``, when
        given, is the run's deadline check (:meth:`~optimizer.stage.StageContext.check_deadline`),
        called every round: a round re-scores every sentence left and may try many of them (each try
        of a new chunk counts its overhead), so one round costs far more than the check. ``instead(i)``, when
        given, is the sentence taking offered ``i`` took in its place (a table's header row offered brings a row
        under it): that one's query words stop earning the bonus. ``later(i)``, when given, says whether offered ``i``
        waits until every other sentence of its chunk has been offered (the second copy of a line two compared pages
        share, :meth:`SubjectKeys.echoes`): it is offered again then, once, at its value, so the lines that tell the
        pages apart come first and the shared one takes what room they leave.
        """
        cover = bool(self.coverage) and mentions is not None and weight is not None and mentions.shape[1] > 0
        if not redundancy and not self.lead_follow and not cover and later is None:
            for i in sorted(range(len(sents)), key=lambda i: (-value[i], i)):
                yield i
                if accept is not None:
                    accept(i)
            return
        chunk_of = np.array([s.chunk for s in sents])
        lead_of: dict[int, int] = {}
        for i, s in enumerate(sents):
            lead_of.setdefault(s.chunk, i)
        current = value.astype(float).copy()
        left = np.ones(len(sents), dtype=bool)
        touched: set[int] = set()
        open_words = np.ones(mentions.shape[1]) if cover and mentions is not None else None
        waits = _Waits(chunk_of, later)
        rounds = 0
        while left.any():
            if check is not None:
                check(f"choosing sentences ({rounds} taken of {len(sents)})")
            rounds += 1
            if cover and mentions is not None and weight is not None and open_words is not None:
                bonus = self.coverage * (mentions @ (weight * open_words))
                total = current * (1.0 + bonus) if self.coverage_mode == "scale" else current + bonus
            else:
                total = current
            taken = None
            released = False
            for i in _offers(total, left):
                left[i] = False
                if waits.wait(i):
                    continue
                yield i
                if accept is None or accept(i):
                    taken = i
                if waits.release(i, left):  # the lines that waited for its chunk: offered again, at their value
                    released = True
                if taken is not None or released:
                    break
            if taken is None:
                if released:
                    continue
                return
            c = sents[taken].chunk
            if redundancy:
                current[chunk_of == c] -= redundancy
            if self.lead_follow and c not in touched:
                current[lead_of[c]] += self.lead_follow
            if open_words is not None and mentions is not None:
                open_words[mentions[taken if instead is None else instead(taken)]] = 0.0
            touched.add(c)

    def pick(self, query: str, chunks: Sequence[Chunk], sents: Sequence[Sentence], score: np.ndarray,
             context: StageContext, keys: SubjectKeys, frames: LineFrames | None = None
             ) -> tuple[dict[int, list[int]], list[Chunk], int, dict[int, tuple[int, int, int]], tuple[int, int] | None, list[Sentence]]:
        """``(chosen sentence indices per chunk, the kept chunks as they render, target tokens, too long, cut, the
        sentences as taken)``: :meth:`choose`, then :meth:`prefix` (``cut``: the sentence kept as a prefix and where
        it ends, or None). ``frames``: the lines of nested structure kept with each line (:func:`sentence_frames`)."""
        chosen, layout, target, too_long, exact, kept = self.choose(query, chunks, sents, score, context, keys, frames)
        chosen, layout, cut = self.prefix(chunks, kept, score, chosen, layout, target, too_long, context, exact, frames)
        return chosen, layout, target, too_long, cut, kept

    def prefix(self, chunks: Sequence[Chunk], sents: Sequence[Sentence], score: np.ndarray, chosen: dict[int, list[int]],
               layout: list[Chunk], target: int, too_long: dict[int, tuple[int, int, int]], context: StageContext,
               exact: int | None, frames: LineFrames | None = None) -> tuple[dict[int, list[int]], list[Chunk], tuple[int, int] | None]:
        """Give the room the fill left to a prefix of the first sentence left out for its length alone
        (offered before a sentence that was taken: it ranked above it), cut at the last word that fits
        (never inside a figure; after a clause among its last words when one ends there: :meth:`_prefix_end`).

        The greedy pass takes every sentence that fits, so what it leaves no whole sentence could
        use; a sentence longer than what is left (a long clause, an unsplittable record) is otherwise
        lost whole. The prefix is made only when the exact rendered count can hold
        :data:`~optimizer.packer.MIN_FRAGMENT_TOKENS` of it (a shorter fragment is not worth its
        header, as for the packer), counted again once the cut backed up to a word, and never takes the
        rendering over ``target``; a question joined to its answer is never cut to the question alone.
        ``exact``: the exact rendered count of ``layout`` (:meth:`choose` counted it; None without a budget).
        """
        from optimizer.packer import MIN_FRAGMENT_TOKENS, token_cut

        grouped = self.order == "relevance"
        if exact is None or not too_long:
            return chosen, layout, None
        ci, (_, _, i) = next(iter(too_long.items()))
        s = sents[i]
        more = {**chosen, ci: sorted([*frames.frames[i], i]) if frames else [i]}  # its frame lines printed with it
        order = [c for c in chosen] + [ci]
        room = target - exact - (context.overhead([chunks[c] for c in order], grouped=grouped) - context.overhead([chunks[c] for c in chosen], grouped=grouped))
        answer = len(s.text) - len(answer_part(s.text))  # a question joined to its answer: where the answer starts
        while room >= MIN_FRAGMENT_TOKENS:
            end = self._prefix_end(s.text, token_cut(s.text, room, context), answer, context)
            if end is None:
                break
            shorter = [*sents[:i], replace(s, end=s.start + end), *sents[i + 1 :]]
            grown = self.layout(chunks, shorter, score, more, order)
            over = (context.rendered(grown, grouped=grouped) or 0) - target
            if over <= 0:
                return more, grown, (i, s.start + end)
            room -= over
        return chosen, layout, None

    @staticmethod
    def _prefix_end(text: str, k: int, answer: int, context: StageContext) -> int | None:
        """Where a prefix of ``text`` cut at ``k`` ends: at a word, never inside a figure
        (:func:`~optimizer.stages.prefix_end.word_end`), after a clause among its last words when that
        still holds :data:`~optimizer.packer.MIN_FRAGMENT_TOKENS`; None when what is left is shorter than
        that, or, for a question joined to its answer (``answer``: where it starts), holds none of the answer."""
        from optimizer.packer import MIN_FRAGMENT_TOKENS

        end = word_end(text, k)
        if end <= answer or context.count(text[:end]) < MIN_FRAGMENT_TOKENS:
            return None
        clause = clause_end(text, end, floor=answer)
        if clause is not None and clause < end and context.count(text[:clause]) >= MIN_FRAGMENT_TOKENS:
            return clause
        return end

    def choose(self, query: str, chunks: Sequence[Chunk], sents: Sequence[Sentence], score: np.ndarray,
               context: StageContext, keys: SubjectKeys, frames: LineFrames | None = None
               ) -> tuple[dict[int, list[int]], list[Chunk], int, dict[int, tuple[int, int, int]], int | None, list[Sentence]]:
        """``(chosen sentence indices per chunk, the kept chunks as they render, target tokens, too long, their
        exact rendered count, the sentences as taken)`` (the count None without a budget or a renderer; the
        sentences as taken: ``sents``, a sentence of hard-wrapped lines too long for the room left narrowed to
        the run of its lines taken, :mod:`~optimizer.stages.wrap_cuts`).

        ``too long``: for a chunk left out whose best sentence lost on length, not rank (a sentence
        offered after it was taken), that sentence's tokens, the room it did not fit and its index
        (:meth:`_fill`), in the order they were offered.

        ``keys``: the sentences' :class:`SubjectKeys`; a sentence another chunk's taken one says is not taken.

        The greedy pass counts each sentence, joiner and header alone, mostly an upper bound of the
        rendered count. When the context can count the rendering exactly and the pass overstated
        it, the pass runs again with the difference as extra room, and its choice is kept if its
        exact count still fits the target. When the pass understated it (tokens can merge across a
        joiner: the space after ``[1]`` with the first byte of a CJK character), it runs again with
        the overshoot as less room until the choice fits, so the packer never cuts the chosen
        sentences in text order (dropping the best) while a smaller choice of whole ones fits. The overstated
        case's second pass is not run when no choice of the first could change in that much more room (its
        ``slack``, :func:`_left_out`): it would choose alike, and the first pass's choice is kept then anyway.
        """
        target = self.target(sents, context)
        density = self.density * self.tight(sents, target, 2)
        value = score / np.power(np.array([max(1, s.tokens) for s in sents], dtype=float), density)
        mentions, weight = (
            query_mentions(query, chunks, sents, stem=self.stem, use_title=self.use_title, memo=terms_memo(context, self.stem))
            if self.coverage
            else (None, None)
        )
        redundancy = self.redundancy * self.tight(sents, target, 1)
        grouped = self.order == "relevance"
        if context.budget is not None and sum(s.tokens for s in sents) <= target:  # maybe all of it fits
            every: dict[int, list[int]] = {}
            for i in _once_each(sents, keys, score):
                every.setdefault(sents[i].chunk, []).append(i)
            every = _with_frames(every, frames)
            whole = self.layout(chunks, sents, score, every, list(every))
            exact_whole = context.rendered(whole, grouped=grouped)
            if exact_whole is not None and exact_whole <= target:
                return every, whole, target, {}, exact_whole, list(sents)
        cuts = LineCuts(chunks, sents, query, context, self.stem)
        first: dict[str, Any] = {}  # the first pass's spending, with its slack (_left_out)
        chosen, chunk_order, used, too_long, parts = self._fill(chunks, sents, keys, value, mentions, weight, redundancy, target, context, frames, cuts, first)
        layout = self.layout(chunks, with_parts(sents, parts), score, chosen, chunk_order)
        exact = context.rendered(layout, grouped=grouped) if context.budget is not None else None
        room = target
        while exact is not None and exact > target and used > 0:  # understated: leave the overshoot out
            room -= exact - target
            chosen, chunk_order, used, too_long, parts = self._fill(chunks, sents, keys, value, mentions, weight, redundancy, room, context, frames, cuts)
            layout = self.layout(chunks, with_parts(sents, parts), score, chosen, chunk_order)
            exact = context.rendered(layout, grouped=grouped)
        if exact is None or exact >= used or room < target:
            return chosen, layout, target, too_long, exact, with_parts(sents, parts)
        more_room = target + used - exact
        if more_room - target < first["slack"]:  # each choice of the first pass stands in that much more room: the same pass
            return chosen, layout, target, too_long, exact, with_parts(sents, parts)
        more, more_order, more_used, more_too_long, more_parts = self._fill(chunks, sents, keys, value, mentions, weight, redundancy, more_room, context, frames, cuts)
        if more_used > used:
            more_layout = self.layout(chunks, with_parts(sents, more_parts), score, more, more_order)
            more_exact = context.rendered(more_layout, grouped=grouped)
            if (more_exact or 0) <= target:
                return more, more_layout, target, more_too_long, more_exact, with_parts(sents, more_parts)
        return chosen, layout, target, too_long, exact, with_parts(sents, parts)

    def _fill(self, chunks: Sequence[Chunk], sents: Sequence[Sentence], keys: SubjectKeys, value: np.ndarray,
              mentions: np.ndarray | None, weight: np.ndarray | None, redundancy: float, room: int,
              context: StageContext, frames: LineFrames | None = None, cuts: LineCuts | None = None,
              spent: dict[str, Any] | None = None) -> tuple[dict[int, list[int]], list[int], int, dict[int, tuple[int, int, int]], dict[int, Part]]:
        """One greedy pass within ``room`` estimated tokens: ``(chosen, chunk order, estimated tokens used,
        too long, parts)``, ``too long`` being, per chunk left out whose best sentence was passed over for its
        length while a sentence offered after it still fitted, ``(its tokens, the room left for it, its index)``.
        ``parts``: with ``cuts``, the sentences of hard-wrapped lines too long for the room left that were taken
        as the run of their lines that fits (:meth:`~optimizer.stages.wrap_cuts.LineCuts.take`).

        With ``frames``, a line of nested structure is taken with its frame lines not yet taken, and
        costs theirs too (each with its joiner). The frame is a preference: when the line and its whole
        frame would not fit in ``room`` even alone, the line comes with as many of its nearest ancestors as
        fit, down to the line alone. A line whose whole frame fits ``room`` but not the room left when it
        is offered waits (a lower-ranked line may take that room with its whole frame). When the best
        line that waited is left out at the end, the pass runs again and takes that line at its rank with
        as many of its nearest ancestors as fit the room left then, down to the line alone: what ranked
        best is never lost at one budget and kept at a lower one for a frame it cannot have. A
        frame-only line is never taken on its own: offered, it brings the best line it frames not yet
        taken, with that line's frame (a bare ``service_12:`` that matches the query, its ``memory: 6Gi``). A table's
        header row offered, whose best row does not fit beside it in the room left, is taken alone when that row
        mentions no query word the header row does not (``Which columns does the export contain?``: the header row
        names them, a row of numbers under it says nothing asked); else the row comes as above, down to the row
        alone (``| Pro | $15/mo | 2 TB | 50 GB |`` for the Pro plan's upload limit)."""
        chosen, order, used, too_long, waited, parts = self._pass(chunks, sents, keys, value, mentions, weight, redundancy, room, context, frames, cuts=cuts, spent=spent)
        if waited:  # the best line that waited is left out: again, that line taken at its rank
            chosen, order, used, too_long, _, parts = self._pass(chunks, sents, keys, value, mentions, weight, redundancy, room, context, frames, waited[0], cuts, spent)
        return chosen, order, used, too_long, parts

    def _pass(self, chunks: Sequence[Chunk], sents: Sequence[Sentence], keys: SubjectKeys, value: np.ndarray,
              mentions: np.ndarray | None, weight: np.ndarray | None, redundancy: float, room: int,
              context: StageContext, frames: LineFrames | None, now: int | None = None, cuts: LineCuts | None = None,
              spent: dict[str, Any] | None = None
              ) -> tuple[dict[int, list[int]], list[int], int, dict[int, tuple[int, int, int]], list[int], dict[int, Part]]:
        """:meth:`_fill`'s greedy pass, line ``now`` taken at its rank with the nearest ancestors that fit the
        room left; also the lines that waited for their whole frame and were left out, best first, and the
        sentences taken as a run of their wrapped lines (``cuts``, :mod:`~optimizer.stages.wrap_cuts`)."""
        chosen: dict[int, list[int]] = {}
        chunk_order: list[int] = []
        spent = _fresh_spending(spent, frames)
        first_miss: dict[int, tuple[int, int, int, int]] = {}  # chunk -> (tokens, room left, sentences taken before, index)
        heads: dict[int, int] = {}  # a new chunk's extra overhead after chunk_order, until chunk_order grows
        tally = self._overhead_tally(chunks, context)
        said: dict[str, list[int]] = {}  # a taken sentence's words -> the chunks that took it
        taken: set[int] = set()
        under = _framed_by(frames) if frames else {}
        waited: list[int] = []  # lines whose whole frame fits the room but not the room left, best first
        parts: dict[int, Part] = {}  # sentences taken as a run of their wrapped lines (cuts: LineCuts)

        def cost_of(i: int) -> tuple[int, int]:
            """``(tokens line i costs taken now without its frame, the new chunk's overhead in them)``."""
            s = sents[i]
            if s.chunk not in chosen and s.chunk not in heads:
                heads[s.chunk] = tally.added(chunks[s.chunk])
            extra_head = 0 if s.chunk in chosen else heads[s.chunk]
            return s.tokens + (1 if s.chunk in chosen else 0) + extra_head, extra_head

        def fits(i: int, frame: list[int]) -> bool:
            return spent["used"] + cost_of(i)[0] + sum(sents[f].tokens + 1 for f in frame) <= room

        def take(i: int, alone: bool = False) -> bool:
            s, key = sents[i], keys[i]
            if frames and frames.frame_only[i] and not alone:  # a bare key or bracket: its best line not yet taken, framed by it
                offered = _offered(i, under, taken, frames, value, mentions, fits)
                return offered is not None and take(*offered)
            if key is not None and (keys.yields(i) or keys.said(s.chunk, said.get(key, ()))):  # said, word for word, by another chunk
                return False
            if frames and i in taken:  # a line already taken as a frame
                return False
            frame = [f for f in frames.frames[i] if f not in taken] if frames else []
            cost, extra_head = cost_of(i)
            frame, waits = _fitted_frame(frame, sents, cost, room, spent["used"], force=i == now)
            if waits:
                waited.append(i)
            cost += sum(sents[f].tokens + 1 for f in frame)
            if _left_out(i, cost, s.tokens, room, spent, cuts, parts):
                if s.chunk not in chosen:
                    first_miss.setdefault(s.chunk, (s.tokens, max(0, room - spent["used"] - extra_head), spent["taken"], i))
                return False
            cost += parts[i][2] - s.tokens if i in parts else 0  # a wrapped sentence too long: a run of its lines
            if s.chunk not in chosen:
                chosen[s.chunk] = []
                chunk_order.append(s.chunk)
                tally.take(chunks[s.chunk])
                heads.clear()
            chosen[s.chunk] += [*frame, i]
            taken.update([*frame, i])
            spent.update(used=spent["used"] + cost, taken=spent["taken"] + 1, line=i)  # line: greedy's instead
            if key is not None and i not in parts and s.chunk not in said.setdefault(key, []):
                said[key].append(s.chunk)
            return True

        deque(self.greedy(sents, value, mentions, weight, redundancy, take, context.check_deadline, lambda i: spent["line"], later=_echoes(keys, sents, said)), maxlen=0)
        if not chosen:  # nothing fits whole: give the packer the best sentence to cut (with the nearest frame lines that fit)
            self._cut_one(chosen, chunk_order, chunks, sents, value, room, context, frames)
        too_long = {c: (n, left, i) for c, (n, left, before, i) in first_miss.items() if c not in chosen and spent["taken"] > before}
        return chosen, chunk_order, spent["used"], too_long, [i for i in waited if i not in taken], parts

    def _cut_one(self, chosen: dict[int, list[int]], chunk_order: list[int], chunks: Sequence[Chunk], sents: Sequence[Sentence],
                 value: np.ndarray, room: int, context: StageContext, frames: LineFrames | None) -> None:
        """Into the empty ``chosen``: the best sentence for the packer to cut, with the nearest frame lines that fit."""
        best, picks = self._to_cut(chunks, sents, value, room, context, frames)
        chosen[sents[best].chunk] = picks
        chunk_order.append(sents[best].chunk)

    def _overhead_tally(self, chunks: Sequence[Chunk], context: StageContext) -> Tally:
        """What a new chunk adds to the overhead of the chunks taken, laid out as they will render: in relevance
        order after them, grouped by title (counted for the new chunk alone where it prints last, see
        :meth:`~optimizer.stage.StageContext.overhead_tally`; counting every chunk taken per chunk tried made
        the selection quadratic), in document order among them (every block counted again)."""
        if self.order == "relevance":
            return context.overhead_tally(grouped=True)
        at = {id(c): i for i, c in enumerate(chunks)}  # one object given twice renders the same in either place
        return RecountTally(lambda taken: context.overhead(sorted(taken, key=lambda c: at[id(c)]) if self.order == "document" else taken))

    def _to_cut(self, chunks: Sequence[Chunk], sents: Sequence[Sentence], value: np.ndarray, room: int,
                context: StageContext, frames: LineFrames | None) -> tuple[int, list[int]]:
        """When nothing fits whole: the best sentence (a frame-only line last) for the packer to cut, and the lines to
        keep with it (its nearest frame lines that fit ``room`` beside it, then itself)."""
        best = min(range(len(sents)), key=lambda i: (bool(frames and frames.frame_only[i]), -value[i], i))
        left = room - sents[best].tokens - context.overhead([chunks[sents[best].chunk]], grouped=self.order == "relevance")
        return best, ([*_innermost(list(frames.frames[best]), sents, left), best] if frames else [best])

    def layout(self, chunks: Sequence[Chunk], sents: Sequence[Sentence], score: np.ndarray,
               chosen: dict[int, list[int]], chunk_order: list[int]) -> list[Chunk]:
        """The kept chunks (offsets exact, relevance their best sentence's score) in the order they render."""
        out: list[Chunk] = []
        best_score: dict[int, float] = {}
        for ci in chunk_order:
            picks = sorted(chosen[ci], key=lambda i: sents[i].start)
            kept = chunks[ci].keep([(sents[i].start, sents[i].end) for i in picks])
            best_score[ci] = float(max(score[i] for i in picks))
            out.append(replace(kept, relevance=best_score[ci]))
        if self.order == "document":
            return [out[k] for k in sorted(range(len(chunk_order)), key=lambda k: chunk_order[k])]
        # best first, the other kept chunks of its title right after it: each title prints once
        return group_by_title([out[k] for k in sorted(range(len(chunk_order)), key=lambda k: (-best_score[chunk_order[k]], chunk_order[k]))])

    def __call__(self, query: str, chunks: Sequence[Chunk], sents: Sequence[Sentence], score: np.ndarray, context: StageContext) -> StageOutput:
        """Keep the chosen sentences of each chunk (offsets exact) and say why the rest went."""
        keys = subject_keys(query, chunks, sents)
        chosen, layout, target, too_long, cut, kept = self.pick(query, chunks, sents, score, context, keys, sentence_frames(chunks, sents))
        repeats = _only_repeats(sents, keys, chosen)
        reasons = {
            c.id: REPEAT_REASON if ci in repeats else _left_out_reason(too_long.get(ci))
            for ci, c in enumerate(chunks)
            if ci not in chosen and c.text.strip()
        }
        of_chunk: dict[int, list[int]] = {}
        for i, s in enumerate(sents):
            of_chunk.setdefault(s.chunk, []).append(i)
        sayers = _sayers(keys, chosen)
        ranges: dict[str, list[tuple[int, int, str]]] = {}
        for ci, own in of_chunk.items():  # a paragraph view left out whole still marks its repeats in the chunk it is part of
            picks = chosen.get(ci, [])
            if len(picks) < len(own):
                taken = set(picks)
                repeated = [i for i in own if i not in taken and keys.said(ci, sayers.get(keys[i], ()))]
                if ci in chosen:  # a sentence left out that was not a repeat went for the budget
                    reasons[chunks[ci].id] = CUT_REASON if len(own) > len(picks) + len(repeated) else SENTENCE_REPEAT_REASON
                # paragraph views of one chunk share its id and offsets: their ranges add up
                ranges.setdefault(chunks[ci].id, []).extend((sents[i].start, sents[i].end, SENTENCE_REPEAT_REASON) for i in repeated)
        for ci, lines in left_out(sents, kept).items():  # a wrapped sentence kept as a run of its lines: the others went for the room
            reasons.setdefault(chunks[ci].id, LINES_REASON)  # (whole sentences left out too: CUT_REASON stays the chunk's)
            ranges.setdefault(chunks[ci].id, []).extend((s, e, LINES_REASON) for s, e in lines)
        if cut is not None:  # the sentence kept as a prefix: its end went for the budget
            i, end = cut
            reasons[chunks[sents[i].chunk].id] = PREFIX_REASON
            ranges.setdefault(chunks[sents[i].chunk].id, []).append((end, sents[i].end, PREFIX_REASON))
        notes = {"sentences_in": len(sents), "sentences_kept": sum(len(v) for v in chosen.values()), "target_tokens": target}
        named = _named_repeats(chunks, keys, chosen, sayers)
        if named:
            notes["named_repeats"] = named
        return StageOutput(layout, reasons=reasons, notes=notes, range_reasons={i: r for i, r in ranges.items() if r})


def _left_out_reason(too_long: tuple[int, int, int] | None) -> str:
    """The trace's reason for a chunk none of whose sentences was kept: its best sentence was passed
    over for its length (``(tokens, room left)``; a shorter, lower-ranked sentence was taken after it,
    so it did not lose on rank), or none of its sentences ranked high enough to be taken in the budget."""
    if too_long is None:
        return LEFT_OUT_REASON
    return f"sentences: its best sentence ({too_long[0]} tokens) is longer than the room left ({too_long[1]})"


def _named_repeats(chunks: Sequence[Chunk], keys: SubjectKeys, chosen: dict[int, list[int]], sayers: dict[str, set[int]]) -> dict[str, str]:
    """For the trace: each kept chunk that kept a sentence another kept chunk says word for word, and why (the query
    names its subject, :meth:`SubjectKeys.repeats`)."""
    out: dict[str, str] = {}
    for ci, picks in chosen.items():
        apart = {w for i in picks if keys[i] is not None for cj in sayers[keys[i]] if keys.subjects.both(ci, cj)
                 for w in keys.subjects.apart(ci, cj)}
        if apart:
            names = ", ".join(sorted(apart))
            out[chunks[ci].id] = f"kept its sentences another chunk says word for word: the query names its subject ({names})"
    return out


def _sayers(keys: Sequence[str | None], chosen: dict[int, list[int]]) -> dict[str, set[int]]:
    """For each kept sentence's :func:`repeat_key`, the chunks whose kept sentences say it.

    A chunk's left-out sentence that another chunk's kept sentence says went as a repeat, not for
    the budget, and the trace says so per range (one pass over the kept sentences, so the trace
    costs time linear in the sentences however many chunks there are).
    """
    out: dict[str, set[int]] = {}
    for cj, picks in chosen.items():
        for i in picks:
            if keys[i] is not None:
                out.setdefault(keys[i], set()).add(cj)
    return out



def sentence_frames(chunks: Sequence[Chunk], sents: Sequence[Sentence]) -> LineFrames | None:
    """The :class:`~optimizer.structure_frames.LineFrames` of ``sents`` (indices into ``sents``), each chunk's
    lines read on its original text; None when no sentence has a frame or is frame-only."""
    of_chunk: dict[int, list[int]] = {}
    for i, s in enumerate(sents):
        of_chunk.setdefault(s.chunk, []).append(i)
    frames: list[tuple[int, ...]] = [()] * len(sents)
    only = [False] * len(sents)
    header = [False] * len(sents)
    viewed: dict[str, str] = {}  # a chunk's line view, made once for all its paragraph views
    for ci, idx in of_chunk.items():
        if len(idx) < 2:
            continue
        text = chunks[ci].original_text
        if text not in viewed:  # views of one chunk share its text (the same object: found by identity)
            viewed[text] = line_view(text)
        view = viewed[text]
        local = line_frames(view, [(sents[i].start, sents[i].end) for i in idx], viewed=True)
        for k, i in enumerate(idx):
            frames[i] = tuple(idx[f] for f in local.frames[k])
            only[i] = local.frame_only[k]
            header[i] = local.stands_alone(k)
    found = LineFrames(frames, only, header)
    return found if found else None


def _with_frames(chosen: dict[int, list[int]], frames: LineFrames | None) -> dict[int, list[int]]:
    """``chosen`` with the frame lines of every chosen line added (in document order: sentence indices ascend)."""
    if not frames:
        return chosen
    return {ci: sorted({f for i in picks for f in frames.frames[i]} | set(picks)) for ci, picks in chosen.items()}


def _offered(i: int, under: dict[int, list[int]], taken: set[int], frames: LineFrames, value: np.ndarray,
             mentions: np.ndarray | None, fits: Callable[[int, list[int]], bool]) -> tuple[int, bool] | None:
    """What taking frame-only line ``i`` takes: ``(its best framed line not yet taken, False)``; ``(i, True)``, the
    line alone, for a table's header row whose best row does not fit beside it and adds no query word; None
    when no line it frames is left."""
    best = _best_framed(i, under, taken, frames, value, mentions)
    if best is None:
        return None
    if frames.stands_alone(i) and not _own_words(best, i, mentions) and not fits(best, [f for f in frames.frames[best] if f not in taken]):
        return i, True
    return best, False


def _best_framed(i: int, under: dict[int, list[int]], taken: set[int], frames: LineFrames, value: np.ndarray,
                 mentions: np.ndarray | None) -> int | None:
    """The best line frame-only line ``i`` frames (directly or deeper) not yet taken, itself no frame-only line; None
    when there is none or ``i`` is taken already. A line naming a query word ``i`` does not (:func:`_own_words`) goes
    first, then the higher value: the greedy pass raised the row naming the Pro plan by its query word, which the
    raw value does not hold (the header row, offered for 'upload', brought the Enterprise row)."""
    if i in taken:
        return None
    return max((j for j in under.get(i, ()) if j not in taken and not frames.frame_only[j]),
               key=lambda j: (_own_words(j, i, mentions), value[j], -j), default=None)


def _own_words(row: int, header: int, mentions: np.ndarray | None) -> bool:
    """Whether sentence ``row`` mentions a query word that sentence ``header`` does not (True when nobody counted them)."""
    return mentions is None or bool((mentions[row] & ~mentions[header]).any())


def _fresh_spending(spent: dict[str, Any] | None, frames: LineFrames | None) -> dict[str, Any]:
    """``spent`` (a new dict when None) emptied for a greedy pass (:meth:`SentenceSelector._pass`): tokens ``used``,
    sentences ``taken``, and ``slack``, the least extra room that could change a choice of the pass (:func:`_left_out`),
    0 from the start with ``frames``, whose fitting reads the room at every line (:func:`_fitted_frame`)."""
    spent = {} if spent is None else spent
    spent.clear()
    spent.update(used=0, taken=0, slack=0 if frames else math.inf)
    return spent


def _left_out(i: int, cost: int, tokens: int, room: int, spent: dict[str, Any], cuts: LineCuts | None,
              parts: dict[int, Part]) -> bool:
    """Whether line ``i`` (``tokens`` alone, ``cost`` taken now) is left out for the room: it costs more than is left of
    ``room`` and no run of its wrapped lines fits instead (``cuts``: taken into ``parts``).

    Lowers ``spent["slack"]`` to the least extra room that could take it: its overshoot, 0 for a sentence of wrapped
    lines (a longer run fits in more room). A pass whose slack is above what a second pass adds to the room makes
    every choice alike in that one (a choice reads the room only here, without frames), so it need not run
    (:meth:`SentenceSelector.choose`)."""
    over = spent["used"] + cost - room
    if over <= 0:
        return False
    if cuts is not None and cuts.lines(i):
        spent["slack"] = 0
        return not cuts.take(i, room - spent["used"] - cost + tokens, parts)
    spent["slack"] = min(spent["slack"], over)
    return True


def _fitted_frame(frame: list[int], sents: Sequence[Sentence], cost: int, room: int, used: int, *,
                  force: bool) -> tuple[list[int], bool]:
    """The frame lines to take with a line costing ``cost`` when ``used`` of ``room`` is spent, and whether the line waits.

    The whole frame when it fits; when line and whole frame would not fit ``room`` even alone (or ``force``: the line
    may not wait), its nearest lines that fit the room left (:func:`_innermost`); else the whole frame, the line
    waiting when that does not fit the room left but the line alone would."""
    whole = sum(sents[f].tokens + 1 for f in frame)
    if force or cost + whole > room:
        return _innermost(frame, sents, room - used - cost), False
    return frame, used + cost + whole > room and used + cost <= room


def _innermost(frame: list[int], sents: Sequence[Sentence], room: int) -> list[int]:
    """The nearest lines of ``frame`` (outermost first) that fit in ``room`` tokens, each with its joiner:
    all of it when it fits, else its innermost ancestors, down to none."""
    k = len(frame)
    while k and room >= sents[frame[k - 1]].tokens + 1:
        room -= sents[frame[k - 1]].tokens + 1
        k -= 1
    return frame[k:]


def _framed_by(frames: LineFrames) -> dict[int, list[int]]:
    """Per frame-only line, the lines whose frame holds it (the lines under a bare key, in order)."""
    out: dict[int, list[int]] = {}
    for j, chain in enumerate(frames.frames):
        for f in chain:
            if frames.frame_only[f]:
                out.setdefault(f, []).append(j)
    return out
