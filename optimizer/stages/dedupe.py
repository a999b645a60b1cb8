"""Deduplication: exact copies, near-duplicates, semantic duplicates, and overlapping windows.

Every deduper keeps the best-scored copy (``relevance``, else the caller's ``score``; ties
go to the earlier chunk), keeps the survivors in their input order and says, for each
dropped chunk, which one it duplicates and how close they were.

A near or semantic duplicate is rarely an exact copy: a syndicated news story with an
updated figure, a corrected page, an edited passage that states a different fact. With
``differences="keep"`` (the default) such a chunk is cut down to the sentences it adds
(those whose normalized text is not already in the copy it duplicates, nor added by an
earlier copy of the same one), with provenance, instead of being dropped with them; only a
copy that adds nothing is dropped. ``differences="drop"`` drops every duplicate whole. A copy whose
subject (its title and heading line) the query names where its original's does not
(:class:`~optimizer.headings.Subjects`: ``X300`` or ``Marseille`` in the question, a sibling page built
from X200's or Paris's template) is the original: it says the shared sentences about what was asked, and
its original is deduped against it (the reason says so); both are kept whole only when the query names
each apart (a comparison; the trace's ``kept_whole`` note says so). A copy the query does not tell apart is a
duplicate whatever its title (a mirror under another file name, a sibling of a question naming
neither), and its reason says when its subject differed. A kept
line of a fenced code block keeps the block's fence lines, and a fence line whose code went goes
with it (:func:`~optimizer.stages.paragraphs.with_fences`): a lone fence would make the rest of
the context read as code.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> cs = [Chunk(id="a", text="Paris is in France.", score=0.1), Chunk(id="b", text="paris is in  France", score=0.9)]
>>> out = ExactDedupe()("q", cs, StageContext.default())
>>> [c.id for c in out], dict(out.reasons)
(['b'], {'a': 'exact duplicate of b'})
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.embeddings import EMBEDDERS, chunk_vectors, get_embedder
from optimizer.headings import Subjects, subject
from optimizer.records import Chunk
from optimizer.sentences import split_sentences
from optimizer.stage import Stage, StageContext, StageOutput
from optimizer.stages.paragraphs import with_fences
from optimizer.text import case_marks, jaccard, normalized, shingles
from optimizer.validate import non_negative_int, yes_no

DIFFERENCES = ("keep", "drop")


def _check_differences(stage: str, value: str) -> None:
    if value not in DIFFERENCES:
        raise ValueError(f"{stage}: differences must be 'keep' (a duplicate keeps the sentences it adds) or 'drop', got {value!r}")


def _sentence_keys(chunk: Chunk) -> list[tuple[str, tuple[int, int]]]:
    """``(key, span in the current text)`` of each sentence of ``chunk`` (:func:`sentence_key`)."""
    text = chunk.text
    return [(sentence_key(text[s:e]), (s, e)) for s, e in split_sentences(text)]


_UNITS = frozenset("%‰‱°")  # with currencies: symbols that change what a sentence says wherever they are
_SIGNS = frozenset("+±<>≤≥≠=")  # ... and these before a number (``> 40``, ``>= 3.9``; not a quote's ``>``, not ``Ctrl+C``)
_BETWEEN_WORDS = re.compile(r"(?<=\w )(?:[<>!=]=|[<>])(?= \w)")
"""A comparison standing alone between two words (``used >= quota``, ``x != y``): not a quote's leading ``>``, an
arrow (``->``, ``=>``) or ``Ctrl+C``; a lone ``<`` or ``>`` only as :func:`_compares` reads it."""
_WORD_BEFORE = re.compile(r"\w+ $")
_WORD_AFTER = re.compile(r" (\w+)")
_MINUS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-"})  # NFKC keeps these apart


def sentence_key(text: str) -> str:
    """A sentence as a duplicate's sentences are compared: :func:`normalized` (case, spacing and
    punctuation do not count; with ``joined``, so ``server.port``, ``max_upload_size``, ``3.9`` and ``C++``
    stay whole), plus the symbols that change what it says, in order: a sign, a currency, a comparison (before a
    number or standing alone between two words), a unit (``-5 °C`` is not ``5 °C``, ``€120`` is not ``$120``,
    ``<= 3.9`` is not ``>= 3.9``, ``!= 5`` is not ``== 5``, ``used > quota`` is not ``used >= quota``), plus the
    words whose case changes what they say (:func:`case_marks`: ``5 mW`` is not ``5 MW``).
    Markup and decoration (backticks, ``>``, ``|``, ``™``, emoji) do not count, a hyphen between words does
    not (``well-known``), and a minus is a minus however it is typed (``−5``, ``–5``, ``-5``): a dash counts
    only before a digit and after no letter or digit.

    >>> sentence_key("It is -5 °C.") == sentence_key("It is 5 °C."), sentence_key("It is −5 °C.") == sentence_key("It is -5 °C.")
    (False, True)
    >>> sentence_key("The fee is “$120”, paid yearly!") == sentence_key('the fee is "$120" paid yearly')
    True
    >>> sentence_key("Run `pip install ragtrim` now ✅") == sentence_key("Run pip install ragtrim now")
    True
    >>> sentence_key("> Dose < 40 mg.") == sentence_key("Dose > 40 mg."), sentence_key("> Press Ctrl+C.") == sentence_key("Press Ctrl C.")
    (False, True)
    >>> sentence_key("Use --max-upload-size.") == sentence_key("Use --max_upload_size."), sentence_key("5 mW") == sentence_key("5 MW")
    (False, False)
    """
    plain = unicodedata.normalize("NFKC", text).translate(_MINUS)  # in its case: a menu path's words are capitalised
    between = {k for m in _BETWEEN_WORDS.finditer(plain) if _compares(plain, m) for k in range(m.start(), m.end())}
    symbols = [ch for k, ch in enumerate(plain)
               if k in between or ch in _UNITS or unicodedata.category(ch) == "Sc"
               or (ch in _SIGNS and _before_number(plain, _past_equals(plain, k + 1)))
               or (ch == "!" and plain[k + 1 : k + 2] == "=" and _before_number(plain, _past_equals(plain, k + 1)))
               or (ch == "-" and plain[k + 1 : k + 2].isdigit() and not plain[k - 1 : k].isalnum())]
    base = normalized(text, joined=True)
    marks = case_marks(text)
    if marks:
        symbols.append("\x00" + marks)
    return f"{base}\x00{''.join(symbols)}" if symbols else base


def _compares(text: str, m: re.Match[str]) -> bool:
    """Whether ``m``, a match of :data:`_BETWEEN_WORDS` in ``text``, compares the words beside it: ``>=``, ``<=``,
    ``!=`` and ``==`` do, a lone ``<`` or ``>`` unless a word beside it is capitalised (a menu path, ``Settings >
    Privacy``, ``File > Save As``, which a copy writes with ``›`` or ``→``; ``tries < limit``, ``x > n_max`` compare).

    >>> [_compares(t, _BETWEEN_WORDS.search(t)) for t in ("Open Settings > Privacy", "while tries < limit", "Stop if Used >= Quota")]
    [False, True, True]
    """
    if len(m.group()) == 2:
        return True
    before = _WORD_BEFORE.search(text, max(0, m.start() - 64), m.start())
    after = _WORD_AFTER.match(text, m.end())
    return not any(w is not None and _capitalised(w.group().strip()) for w in (before, after))


def _capitalised(word: str) -> bool:
    """Whether ``word`` is written as a name or a menu's entry is: a capital, then a small letter (``Settings``, not
    ``x``, ``N`` or ``MAX_SIZE``)."""
    return word[:1].isupper() and word[1:2].islower()


def _past_equals(text: str, k: int) -> int:
    """Where ``text[k:]`` goes on after the ``=`` it starts with, if any (``>=``, ``!=``, ``==``: the number comes after)."""
    while text[k : k + 1] == "=":
        k += 1
    return k


def _before_number(text: str, k: int) -> bool:
    """Whether a number (a digit, perhaps after a space, a minus or a currency) starts at ``text[k:]``."""
    rest = text[k : k + 3].lstrip(" ")
    return bool(rest) and (rest[0].isdigit() or (rest[0] in "-$€£¥" and rest[1:2].isdigit()))


class _Differences:
    """What each duplicate adds to the chunk it duplicates, sentence by sentence.

    The first duplicate of a chunk is compared with that chunk's sentences; a later one also
    with what earlier duplicates of it added, so two copies that change the same sentence
    the same way keep it once (in the better-scored copy: duplicates come best first).
    """

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = chunks
        self.seen: dict[int, set[str]] = {}

    def added(self, i: int, original: int) -> tuple[Chunk, int] | None:
        """``chunks[i]`` cut to the sentences it adds to ``chunks[original]`` and their number, or None."""
        seen = self.seen.get(original)
        if seen is None:
            seen = self.seen[original] = {key for key, _ in _sentence_keys(self.chunks[original]) if key}
        dup = self.chunks[i]
        new = [(key, span) for key, span in _sentence_keys(dup) if key and key not in seen]
        if not new:
            return None
        seen.update(key for key, _ in new)
        kept = [r for _, (s, e) in new for r in dup.map_range(s, e)]
        return dup.keep(with_fences(dup, kept)), len(new)  # a kept line of code is printed inside its block


@dataclass(frozen=True)
class _Duplicate:
    """A chunk found to duplicate ``original``: ``what`` it is and ``how`` close (for the reason)."""

    original: int
    what: str
    how: str


def _other_subject(copy: tuple[str, str], original: tuple[str, str]) -> bool:
    """Whether a chunk of subject ``copy`` is about another subject than one of ``original`` (:func:`~optimizer.headings.subject`).

    Both are titled and the titles differ (the Marseille store's page under its own title, word for word
    Paris's; a mirror under another file name), or the copy opens with a heading line naming neither the
    original's heading nor its title (``X300 cordless drill``, then X200's sheet line for line). Such a copy
    is still a duplicate unless the query names its subject (:func:`~optimizer.headings.asked_apart`); the
    reason then says its subject differed.
    """
    (copy_title, copy_heading), (title, heading) = copy, original
    return bool(copy_title and title and copy_title != title) or bool(copy_heading and copy_heading not in (heading, title))


class _Subjects(Subjects):
    """:class:`~optimizer.headings.Subjects` for the dedupers: how a copy stands to an original (:meth:`relation`), and
    what the trace says of a copy kept or dropped."""

    def __init__(self, query: str, chunks: Sequence[Chunk]) -> None:
        super().__init__(query, chunks)
        self.kept_whole: dict[str, str] = {}

    def relation(self, copy: int, original: int) -> str:
        """``"both"``: a comparison, each kept whole; ``"swap"``: the query asks about ``copy`` and not ``original``, which
        is the copy of the two; ``"copy"``: ``copy`` may duplicate ``original`` as before."""
        if self.both(copy, original):
            return "both"
        return "swap" if self.outranks(copy, original) else "copy"

    def duplicate(self, copy: int, original: int, what: str, how: str) -> _Duplicate:
        """The :class:`_Duplicate` found, its ``how`` saying why a copy of another subject is one."""
        named = self.apart(original, copy)
        if named:
            how += f"; the query names {self.chunks[original].id}'s subject ({', '.join(sorted(named))}), not its own"
        elif _other_subject(subject(self.chunks[copy]), subject(self.chunks[original])):
            how += "; another subject, but the query names no subject of its own"
        return _Duplicate(original, what, how)

    def keep_whole(self, copy: int, original: int, what: str, how: str) -> None:
        """Say in the trace why ``copy``, a ``what`` of ``original`` by ``how``, was kept whole (a comparison)."""
        names, others = (", ".join(sorted(self.apart(a, b))) for a, b in ((copy, original), (original, copy)))
        other = self.chunks[original].id
        self.kept_whole[self.chunks[copy].id] = (f"{what} of {other} ({how}) kept whole: the query names its subject ({names}) "
                                                 f"and {other}'s ({others})")

    def notes(self) -> dict[str, dict[str, str]]:
        return {"kept_whole": self.kept_whole} if self.kept_whole else {}


def _reduce(chunks: Sequence[Chunk], duplicates: dict[int, _Duplicate], differences: str, order: Sequence[int],
            notes: Mapping[str, Any] | None = None) -> StageOutput:
    """Drop each duplicate, or (``differences="keep"``) cut it to the sentences it adds; ``order``: :func:`_best_first`;
    ``notes`` for the trace."""
    diffs = _Differences(chunks) if differences == "keep" else None
    reduced: dict[int, Chunk] = {}
    reasons: dict[str, str] = {}
    for i in order:
        if i not in duplicates:
            continue
        d = duplicates[i]
        reason = f"{d.what} of {chunks[d.original].id} ({d.how})"
        kept = diffs.added(i, d.original) if diffs is not None else None
        if kept is not None:
            reduced[i], n = kept
            reason += f": kept the {n} sentence{'s' if n != 1 else ''} it adds"
        reasons[chunks[i].id] = reason
    out = [reduced.get(i, c) for i, c in enumerate(chunks) if i not in duplicates or i in reduced]
    return StageOutput(out, reasons=reasons, notes=dict(notes or {}))


def _best_first(chunks: Sequence[Chunk], context: StageContext) -> list[int]:
    """Indices best first by the run's reading of the scores (:meth:`StageContext.relevances`; ties: given order).

    Each deduper keeps the best copy: with distances (lower is better), the smallest one.
    """
    rel = context.relevances(chunks)
    return sorted(range(len(chunks)), key=lambda i: (-rel[i], i))


def _check_unit(stage: str, name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{stage}: {name} must be a number in (0, 1], got {value!r}")


class ExactDedupe(Stage):
    """Drop chunks whose normalized text (case, punctuation, spaces folded) equals a better one's.

    ``use_title`` makes the title part of the key (same text under two titles is kept twice).
    """

    name = "dedupe-exact"

    def __init__(self, *, use_title: bool = False) -> None:
        self.use_title = yes_no(use_title, f"{self.name}: use_title (the title is part of the duplicate key)")

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        seen: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for i in _best_first(chunks, context):
            c = chunks[i]
            key_text = normalized(c.text)
            if not key_text:
                continue
            if self.use_title:
                key_text = normalized(c.title or "") + "\x00" + key_text
            key = hashlib.blake2b(key_text.encode("utf-8"), digest_size=16).hexdigest()
            if key in seen:
                reasons[c.id] = f"exact duplicate of {seen[key]}"
            else:
                seen[key] = c.id
        return StageOutput([c for c in chunks if c.id not in reasons], reasons=reasons)


@functools.lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """datasketch's optimal ``(bands, rows)`` for a Jaccard ``threshold``, computed once per setting.

    Found by the search ``MinHashLSH(threshold=...)`` runs (datasketch's ``_optimal_param``:
    numerical integration over every split of ``num_perm``, tens of milliseconds), called
    directly: building a ``MinHashLSH`` would draw a storage name from the process-wide
    :mod:`random` generator, which is the caller's. The bands depend on the settings only, so
    :class:`NearDedupe` asks once per setting. Settings ``MinHashLSH`` refuses raise its ``ValueError``.

    >>> lsh_bands(0.8, 128)
    (9, 13)
    """
    from datasketch.lsh import _optimal_param

    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be in [0.0, 1.0]")
    if num_perm < 2:
        raise ValueError("Too few permutation functions")
    if any(w < 0.0 or w > 1.0 for w in weights) or sum(weights) != 1.0:
        raise ValueError("Weights must be in [0.0, 1.0] and sum to 1.0")
    bands, rows = _optimal_param(threshold, num_perm, *weights)
    if bands < 2:
        raise ValueError("The number of bands are too small (b < 2)")
    return bands, rows


class _BandIndex:
    """MinHash LSH banding, as datasketch's ``MinHashLSH`` with in-memory storage does it.

    Each MinHash's ``bands * rows`` hash values are cut into ``bands`` runs of ``rows``; two
    MinHashes are candidates when one run is equal in both. The same bands, rows and hash
    values as ``MinHashLSH(num_perm=..., params=(bands, rows))``, so the same candidates,
    without its storage layer (whose constructor draws from the process-wide :mod:`random`).

    >>> import numpy as np
    >>> index = _BandIndex(2, 2)
    >>> index.insert(0, np.array([1, 2, 3, 4], dtype=np.uint64))
    >>> index.query(np.array([1, 2, 9, 9], dtype=np.uint64)), index.query(np.array([1, 9, 3, 9], dtype=np.uint64))
    ({0}, set())
    """

    def __init__(self, bands: int, rows: int) -> None:
        self.ranges = [(b * rows, (b + 1) * rows) for b in range(bands)]
        self.tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]

    def insert(self, key: int, hashvalues: np.ndarray) -> None:
        """Index ``key`` under each band of ``hashvalues``."""
        for (start, end), table in zip(self.ranges, self.tables):
            table.setdefault(hashvalues[start:end].tobytes(), []).append(key)

    def query(self, hashvalues: np.ndarray) -> set[int]:
        """The keys that share at least one band with ``hashvalues``."""
        found: set[int] = set()
        for (start, end), table in zip(self.ranges, self.tables):
            found.update(table.get(hashvalues[start:end].tobytes(), ()))
        return found


# Entries (pairs) one sparse product may hold at once in _similar_pairs: bounds its memory
# (about 12 bytes an entry, a few copies while scipy builds and filters it).
_BLOCK_ENTRIES = 1 << 21


def _product(a, b):  # type: ignore[no-untyped-def]
    """``a @ b`` for two sparse matrices (one place, so a test can see every product's size)."""
    return a @ b


def _gather(matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The entries of ``rows`` of a CSR ``matrix``: for each, its place in ``rows``, its column, its value."""
    lengths = np.diff(matrix.indptr)[rows]
    ends = np.cumsum(lengths)
    where = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths) + np.repeat(matrix.indptr[rows], lengths)
    return np.repeat(np.arange(len(rows)), lengths), matrix.indices[where].astype(np.int64), matrix.data[where]


def _close_pairs(m, sizes: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float, out: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Mark in ``out`` the rows of ``m`` in a pair ``(a[k], b[k])`` with ``shared >= threshold * union``.

    The test of one full product: ``shared`` is the sum over columns of the product of the two
    rows' values, as in ``m @ m.T``. The pairs are taken in runs of at most about
    ``_BLOCK_ENTRIES`` entries; a pair both of whose rows are already marked is skipped (it
    can mark nothing), so a large group of near-copies is not compared pair by pair.
    """
    unknown = ~(out[a] & out[b])
    a, b = a[unknown], b[unknown]
    nnz = np.diff(m.indptr)
    cost = np.cumsum(nnz[a] + nnz[b])
    width = m.shape[1]
    lo = 0
    while lo < len(a):
        hi = max(lo + 1, int(np.searchsorted(cost, (cost[lo - 1] if lo else 0) + _BLOCK_ENTRIES, side="right")))
        pa, pb = a[lo:hi], b[lo:hi]
        unknown = ~(out[pa] & out[pb])
        pa, pb = pa[unknown], pb[unknown]
        if not len(pa):
            lo = hi
            continue
        place_a, col_a, val_a = _gather(m, pa)
        place_b, col_b, val_b = _gather(m, pb)
        code_a = place_a * width + col_a
        code_b = place_b * width + col_b  # sorted: places ascend, and columns within a row
        pos = np.minimum(np.searchsorted(code_b, code_a), max(len(code_b) - 1, 0))
        match = code_b[pos] == code_a if len(code_b) else np.zeros(len(code_a), dtype=bool)
        shared = np.bincount(place_a[match], weights=(val_a[match] * val_b[pos[match]]).astype(np.float64), minlength=len(pa))
        shared = np.rint(shared).astype(np.int64)
        union = sizes[pa] + sizes[pb] - shared
        close = shared >= threshold * union - 1e-9 * union
        out[pa[close]] = True
        out[pb[close]] = True
        lo = hi


def _no_check(where: str) -> None:
    """The deadline check of a run without a time limit."""


def _similar_pairs(sets: Sequence[set[str]], threshold: float, check: Callable[[str], None] = _no_check) -> list[int]:
    """Indices of the sets that have a partner with Jaccard similarity at or above ``threshold``.

    Exact, and a superset of what matters: shingles are matched by their Python hash (a
    collision can only add a pair, never hide one); :meth:`NearDedupe.__call__` still
    compares the real sets. Up to :data:`_ALL_PAIRS_UP_TO` sets, the shared-shingle counts of
    all pairs come from one sparse product (at most that many squared entries); above it,
    :func:`_pairs_by_prefix` keeps memory bounded however many chunks share a shingle.
    ``check`` is the run's deadline check (:meth:`~optimizer.stage.StageContext.check_deadline`), called between blocks.
    """
    from scipy import sparse

    n = len(sets)
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    keys = np.fromiter(map(hash, itertools.chain.from_iterable(sets)), dtype=np.int64, count=int(sizes.sum()))
    if not len(keys):
        return []
    _, cols = np.unique(keys, return_inverse=True)
    cols = cols.reshape(-1)
    rows = np.repeat(np.arange(n), sizes)
    member = sparse.csr_matrix((np.ones(len(keys), dtype=np.int64), (rows, cols)), shape=(n, int(cols.max()) + 1))
    if n <= _ALL_PAIRS_UP_TO:
        shared = sparse.triu(_product(member, member.T), k=1).tocoo()
        union = sizes[shared.row] + sizes[shared.col] - shared.data
        close = shared.data >= threshold * union - 1e-9 * union
        return sorted(set(shared.row[close].tolist()) | set(shared.col[close].tolist()))
    member.sum_duplicates()  # canonical: sorted column indices, one entry per (set, hash)
    return _pairs_by_prefix(member, sizes, threshold, collided=member.nnz < len(keys), check=check)


_CHECK_EVERY = 64
"""Chunks shingled, hashed or compared between two checks of the run's deadline (a few ms of work at most per chunk)."""

_ALL_PAIRS_UP_TO = 512
"""Up to this many chunks, :func:`_similar_pairs` takes one product of all pairs (at most 262,144 entries, a few
MB; the fastest way at the sizes retrievers hand over); above it, the bounded :func:`_pairs_by_prefix`."""


def _pairs_by_prefix(member, sizes: np.ndarray, threshold: float, *, collided: bool,  # type: ignore[no-untyped-def]
                     check: Callable[[str], None] = _no_check) -> list[int]:
    """:func:`_similar_pairs` in bounded memory, over the sets' hash rows ``member`` (CSR, canonical).

    * sets with the same shingles are one group (Jaccard 1: each member of a group of two
      or more is in), and only one set of each group is compared with the others;
    * candidate pairs share a shingle in their *prefixes* (Chaudhuri et al. 2006; Xiao et
      al., PPJoin, 2008): with the shingles of all sets in one order, rarest first, two sets
      with ``shared >= t * union`` share ``shared >= t * len(x)`` shingles, so one of the
      first ``len(x) - ceil(t * len(x)) + 1`` of ``x`` is among the first of ``y`` likewise.
      A shingle every chunk has (a source line, a footer) comes last and pairs nothing;
    * the products run over blocks of rows of at most about ``_BLOCK_ENTRIES`` entries, and a
      candidate's shared-shingle count is the same sum over shingles as one full product gives.

    ``collided``: two hashes of one set collided, so the count of a shared key can exceed 1 and
    the prefix bound does not hold; whole sets are compared then (still by blocks).
    """
    group_of, reps = _identical_groups(member, collided)
    counts = np.bincount(group_of[group_of >= 0], minlength=len(reps))
    m = member[reps]
    m.sort_indices()
    rep_in = _mark_candidates(m, _prefixes(m, sizes[reps], threshold, collided), sizes[reps], threshold, check)
    chosen = (counts >= 2) | rep_in
    return [i for i in range(len(group_of)) if group_of[i] >= 0 and chosen[group_of[i]]]


def _identical_groups(member, collided: bool) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Each row's group of identical hash rows (-1 for an empty row), and each group's first row."""
    groups: dict[bytes, int] = {}
    group_of = np.empty(member.shape[0], dtype=np.int64)
    reps: list[int] = []
    ptr, ind, dat = member.indptr, member.indices, member.data
    for i in range(member.shape[0]):
        if ptr[i] == ptr[i + 1]:
            group_of[i] = -1  # empty: no shingle, no pair
            continue
        row_key = ind[ptr[i] : ptr[i + 1]].tobytes() + (dat[ptr[i] : ptr[i + 1]].tobytes() if collided else b"")
        g = groups.setdefault(row_key, len(reps))
        if g == len(reps):
            reps.append(i)
        group_of[i] = g
    return group_of, np.array(reps, dtype=np.int64)


def _prefixes(m, sizes: np.ndarray, threshold: float, collided: bool):  # type: ignore[no-untyped-def]
    """The prefix of each row of ``m``: its rarest hashes, as many as a pair at ``threshold`` must share one of."""
    from scipy import sparse

    m_nnz = np.diff(m.indptr)
    if collided:
        prefix_len = m_nnz
    else:
        need = np.maximum(1, np.ceil((threshold - 1e-9) * sizes).astype(np.int64) - 1)  # one to spare
        prefix_len = np.minimum(m_nnz, sizes - need + 1)
    freq = np.bincount(m.indices, minlength=m.shape[1])
    rank = np.empty(m.shape[1], dtype=np.int64)
    rank[np.lexsort((np.arange(m.shape[1]), freq))] = np.arange(m.shape[1])
    entry_row = np.repeat(np.arange(m.shape[0]), m_nnz)
    order = np.lexsort((rank[m.indices], entry_row))
    position = np.arange(len(order)) - m.indptr[entry_row]  # entries of each row stay together
    take = order[position < prefix_len[entry_row]]
    return sparse.csr_matrix((np.ones(len(take), dtype=np.int64), (entry_row[take], m.indices[take])), shape=m.shape)


def _mark_candidates(m, prefix, sizes: np.ndarray, threshold: float,  # type: ignore[no-untyped-def]
                     check: Callable[[str], None] = _no_check) -> np.ndarray:
    """Which rows of ``m`` have a close partner, over candidate pairs (i < j) whose prefixes share a hash, by blocks."""
    prefix_t = prefix.T.tocsr()
    prefix_freq = np.bincount(prefix.indices, minlength=m.shape[1])
    bound = np.minimum(np.add.reduceat(np.append(prefix_freq[prefix.indices], 0), prefix.indptr[:-1]), m.shape[0])
    bound[np.diff(prefix.indptr) == 0] = 0
    found = np.zeros(m.shape[0], dtype=bool)
    start = 0
    while start < m.shape[0]:
        check(f"comparing near-duplicate candidates (row {start} of {m.shape[0]})")
        stop, total = start + 1, int(bound[start])
        while stop < m.shape[0] and total + int(bound[stop]) <= _BLOCK_ENTRIES:
            total += int(bound[stop])
            stop += 1
        cand = _product(prefix[start:stop], prefix_t).tocoo()
        a, b = cand.row.astype(np.int64) + start, cand.col.astype(np.int64)
        upper = b > a
        if upper.any():
            _close_pairs(m, sizes, a[upper], b[upper], threshold, found)
        start = stop
    return found


def _check_lsh(stage: str, threshold: float, num_perm: int, lsh_above: int, seed: int) -> None:
    """The MinHash LSH settings of :class:`NearDedupe`; a non-default ``(threshold, num_perm)`` is tried once (cached)."""
    non_negative_int(lsh_above, f"{stage}: lsh_above", what="chunks")
    non_negative_int(seed, f"{stage}: seed")
    if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 2:
        raise ValueError(f"{stage}: num_perm (MinHash permutations) must be an integer of 2 or more, e.g. 128, got {num_perm!r}")
    if (float(threshold), num_perm) == (0.8, 128):
        return  # the defaults: known to split into bands
    try:
        lsh_bands(float(threshold), num_perm)
    except ValueError as exc:
        raise ValueError(
            f"{stage}: num_perm={num_perm} cannot reach threshold={threshold} with MinHash LSH (datasketch: {exc}); "
            "raise num_perm (e.g. 128) or lower threshold (num_perm=128 reaches thresholds up to 0.98)"
        ) from None


class NearDedupe(Stage):
    """Drop near-duplicates: word-shingle Jaccard at or above ``threshold``, but for a copy whose subject the query names
    and its original's does not (:class:`_Subjects`; the module's docstring says why).

    Candidates come from MinHash LSH (datasketch's MinHash, banded by :class:`_BandIndex`;
    Broder, *On the resemblance and containment of documents*, 1997) once there are more than ``lsh_above`` chunks;
    below that every pair is compared. The reported Jaccard is the exact one on shingles.
    A near-duplicate keeps the sentences it adds (``differences="keep"``, the module's
    docstring says why), so a copy that changes one fact is cut to that sentence:

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> text = "The bridge opened in 1932. It is 503 metres long. Its arch is steel. It carries eight lanes."
    >>> a, b = Chunk(id="a", text=text), Chunk(id="b", text=text.replace("1932", "1931"))
    >>> out = NearDedupe(threshold=0.6)("q", [a, b], StageContext.default())
    >>> [c.text for c in out], out.reasons["b"]
    (['The bridge opened in 1932. It is 503 metres long. Its arch is steel. It carries eight lanes.', 'The bridge opened in 1931.'], 'near-duplicate of a (jaccard 0.68): kept the 1 sentence it adds')
    """

    name = "dedupe-near"

    def __init__(
        self,
        *,
        threshold: float = 0.8,
        shingle: int = 3,
        num_perm: int = 128,
        lsh_above: int = 64,
        seed: int = 1,
        differences: str = "keep",
    ) -> None:
        _check_unit(self.name, "threshold", threshold)
        _check_differences(self.name, differences)
        if isinstance(shingle, bool) or not isinstance(shingle, int) or shingle < 1:
            raise ValueError(f"{self.name}: shingle must be a positive integer, got {shingle!r}")
        _check_lsh(self.name, threshold, num_perm, lsh_above, seed)
        self.threshold = threshold
        self.shingle = shingle
        self.num_perm = num_perm
        self.lsh_above = lsh_above
        self.seed = seed
        self.differences = differences

    def warm_up(self) -> None:
        """Import datasketch and scipy's sparse matrices now (their first import takes a while)."""
        import datasketch  # noqa: F401
        import scipy.sparse  # noqa: F401

        lsh_bands(float(self.threshold), self.num_perm)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        check = context.check_deadline  # a no-op in a run without a time limit
        sets = []
        for start in range(0, len(chunks), _CHECK_EVERY):
            check(f"shingling chunks ({start} of {len(chunks)})")
            sets.extend(shingles(c.text, self.shingle) for c in chunks[start : start + _CHECK_EVERY])
        dropped: dict[int, _Duplicate] = {}
        kept: list[int] = []
        lsh = None
        hashes: dict[int, object] = {}
        involved = None
        if len(chunks) > self.lsh_above:
            # Only a chunk with a pair at or above the threshold can be dropped, or be what
            # another is a near-duplicate of: MinHash and LSH see those chunks only (a
            # MinHash depends on its own shingles alone, so theirs are the same as before)
            involved = set(_similar_pairs(sets, self.threshold, check))
            check("after finding near-duplicate pairs")
        if involved:
            from datasketch import MinHash

            lsh = _BandIndex(*lsh_bands(float(self.threshold), self.num_perm))
            # one permutation table for all chunks (MinHash.bulk), instead of one per MinHash
            order = sorted(involved)

            def batches():  # type: ignore[no-untyped-def]
                for k, i in enumerate(order):  # read by MinHash.bulk one at a time, so the deadline is checked as it hashes
                    if k % _CHECK_EVERY == 0:
                        check(f"hashing near-duplicate candidates ({k} of {len(order)})")
                    yield [x.encode("utf-8") for x in sets[i]]

            hashes = dict(zip(order, MinHash.bulk(batches(), num_perm=self.num_perm, seed=self.seed)))
        ranked = _best_first(chunks, context)
        subjects = _Subjects(query, chunks)
        for n, i in enumerate(ranked):
            if n % _CHECK_EVERY == 0:
                check(f"comparing chunks for near-duplicates ({n} of {len(chunks)})")
            if not sets[i]:
                continue
            if involved is not None and i not in involved:
                kept.append(i)  # nothing is as close as the threshold to it: kept, and nothing is its copy
                continue
            candidates = lsh.query(hashes[i].hashvalues) if lsh is not None else kept
            near = self._originals(i, sorted(c for c in candidates if c not in dropped), sets, subjects)
            if near["copy"]:
                best, best_j = near["copy"][0]
                dropped[i] = subjects.duplicate(i, best, "near-duplicate", f"jaccard {best_j:.2f}")
                continue
            for j, sim in near["swap"]:  # the query asks about i, not j: j is the copy
                dropped[j] = subjects.duplicate(j, i, "near-duplicate", f"jaccard {sim:.2f}")
            if near["both"]:
                (j, sim), *_ = near["both"]
                subjects.keep_whole(i, j, "near-duplicate", f"jaccard {sim:.2f}")
            kept.append(i)
            if lsh is not None:
                lsh.insert(i, hashes[i].hashvalues)
        return _reduce(chunks, dropped, self.differences, ranked, subjects.notes())

    def _originals(self, i: int, candidates: Sequence[int], sets: Sequence[set[str]], subjects: _Subjects
                   ) -> dict[str, list[tuple[int, float]]]:
        """The candidates chunk ``i`` is near at or above the threshold, nearest first, with their Jaccard, by their
        :meth:`_Subjects.relation` to ``i``: ``copy`` (i's originals), ``swap`` (i's copies), ``both`` (a comparison)."""
        out: dict[str, list[tuple[int, float]]] = {"copy": [], "swap": [], "both": []}
        for j in candidates:
            small, large = sorted((len(sets[i]), len(sets[j])))
            if small < self.threshold * large * (1 - 1e-9):
                continue  # Jaccard <= smaller / larger: this pair cannot reach the threshold
            sim = jaccard(sets[i], sets[j])
            if sim >= self.threshold:
                out[subjects.relation(i, j)].append((j, sim))
        for found in out.values():
            found.sort(key=lambda x: -x[1])  # stable: the earlier candidate first on a tie
        return out


class SemanticDedupe(Stage):
    """Drop chunks whose embedding cosine to a better-scored kept chunk is at least ``threshold``.

    Uses the static embeddings by default; above ``faiss_above`` chunks the neighbour search
    runs on a faiss inner-product index instead of the full similarity matrix.
    """

    name = "dedupe-semantic"

    def __init__(
        self, *, threshold: float = 0.95, model: str = "static", faiss_above: int = 512, differences: str = "keep"
    ) -> None:
        _check_unit(self.name, "threshold", threshold)
        _check_differences(self.name, differences)
        if model not in EMBEDDERS:
            raise ValueError(f"{self.name}: model must be one of {', '.join(EMBEDDERS)}, got {model!r}")
        self.threshold = threshold
        self.model = model
        self.faiss_above = faiss_above
        self.differences = differences

    def warm_up(self) -> None:
        get_embedder(self.model, build=True)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        live = [i for i, c in enumerate(chunks) if c.text.strip()]
        if len(live) < 2:
            return StageOutput(list(chunks))
        vecs = chunk_vectors(get_embedder(self.model), [chunks[i] for i in live], context, use_title=False)
        pos = {i: p for p, i in enumerate(live)}
        dropped: dict[int, _Duplicate] = {}
        if len(live) > self.faiss_above:
            index, kept_rows = self._faiss(vecs), []
        else:
            index, kept_rows = None, []
        ranked = _best_first(chunks, context)
        subjects = _Subjects(query, chunks)
        for i in ranked:
            if i not in pos:
                continue
            v = vecs[pos[i]]
            live_rows = [j for j in kept_rows if j not in dropped]
            relation = {j: subjects.relation(i, j) for j in live_rows} if subjects.named[i] else dict.fromkeys(live_rows, "copy")
            mates = [j for j in live_rows if relation[j] == "copy"]
            best, best_sim = self._nearest(v, vecs, pos, kept_rows, mates, index)
            if best >= 0 and best_sim >= self.threshold:
                dropped[i] = subjects.duplicate(i, best, "semantic duplicate", f"cosine {best_sim:.3f}")
                continue
            for j in live_rows:  # the query asks about i, not j: j is the copy when it is that near
                if relation[j] == "swap" and float(vecs[pos[j]] @ v) >= self.threshold:
                    dropped[j] = subjects.duplicate(j, i, "semantic duplicate", f"cosine {float(vecs[pos[j]] @ v):.3f}")
            if len(mates) + sum(1 for r in relation.values() if r == "swap") < len(live_rows):  # a comparison: say if that near
                apart = [j for j in live_rows if relation[j] == "both"]
                near, near_sim = self._nearest(v, vecs, pos, kept_rows, apart, index)
                if near >= 0 and near_sim >= self.threshold:
                    subjects.keep_whole(i, near, "semantic duplicate", f"cosine {near_sim:.3f}")
            kept_rows.append(i)
            if index is not None:
                index.add(v.reshape(1, -1))
        return _reduce(chunks, dropped, self.differences, ranked, subjects.notes())

    @staticmethod
    def _nearest(v: np.ndarray, vecs: np.ndarray, pos: Mapping[int, int], kept_rows: Sequence[int], mates: Sequence[int],
                 index: Any) -> tuple[int, float]:
        """The kept chunk among ``mates`` (those it may duplicate: :meth:`_Subjects.apart`) nearest to ``v`` and its cosine,
        ``(-1, -1.0)`` for none; with a faiss ``index`` (of ``kept_rows``, in order), among its 8 nearest."""
        if not mates:
            return -1, -1.0
        if index is None:
            sims = vecs[[pos[j] for j in mates]] @ v
            k = int(np.argmax(sims))
            return mates[k], float(sims[k])
        allowed = set(mates)
        best, best_sim = -1, -1.0
        sims, rows = index.search(v.reshape(1, -1), min(8, len(kept_rows)))
        for sim, row in zip(sims[0], rows[0]):
            if row >= 0 and kept_rows[row] in allowed and sim > best_sim:
                best, best_sim = kept_rows[row], float(sim)
        return best, best_sim

    @staticmethod
    def _faiss(vecs: np.ndarray):  # type: ignore[no-untyped-def]
        from optimizer.lazy import lazy_import

        faiss = lazy_import("faiss", extra="embeddings", purpose="semantic dedupe of large chunk sets")
        return faiss.IndexFlatIP(vecs.shape[1])


def held(span: tuple[int, int, int], hi: Chunk) -> list[tuple[int, int]]:
    """The part of range ``(start, end)`` of a chunk's original text that ``hi`` still keeps, where the
    span's third number maps it into ``hi``'s original text (``hi`` position = position + shift).

    A chunk an earlier step cut says only what it kept: trimming the rest of an overlap from the
    other chunk would print it nowhere.

    >>> hi = Chunk(id="a", text="one two three four").keep([(0, 7)])   # "one two"
    >>> held((0, 13, 4), hi)   # the other chunk's 0..13 is "two three four" in hi
    [(0, 3)]
    """
    start, end, shift = span
    return [(max(start, s - shift), min(end, e - shift)) for s, e in hi.kept_pieces if max(start, s - shift) < min(end, e - shift)]


def trimmed(lo: Chunk, removed: Sequence[tuple[int, int]], by: Sequence[str]) -> tuple[Chunk, str]:
    """``lo`` without the ``removed`` ranges of its original text (what better-ranked chunks ``by`` already say), and the trace's reason."""
    keep: list[tuple[int, int]] = []
    for s, e in lo.kept_pieces:
        pieces = [(s, e)]
        for rs, re_ in removed:
            pieces = [p for ps, pe in pieces for p in ((ps, min(pe, rs)), (max(ps, re_), pe)) if p[0] < p[1]]
        keep.extend(pieces)
    new = lo.keep(with_fences(lo, keep))  # the fences of the code it keeps, none of the code it loses
    return new, (f"overlaps {', '.join(by)}: repeated text trimmed" if new.text else f"contained in {', '.join(by)}")


class MergeOverlaps(Stage):
    """Trim the overlap between sliding-window chunks of one document from the lower-ranked one.

    Overlap is found from metadata when both chunks carry the same ``doc_key`` and a
    character offset ``start_key`` (the overlap is then checked against the texts), else
    from the text: a suffix of one chunk equal to a prefix of the other, at least
    ``min_overlap`` characters long. The lower-ranked chunk keeps only its new part, cut
    with :meth:`Chunk.keep`, so provenance stays exact; a chunk wholly inside another is
    dropped. Text detection only pairs chunks of the same title (or both untitled) unless
    ``same_title_only`` is False. Candidate pairs come from lookups (windows of one document
    by offset, chunks holding another's first ``min_overlap`` characters), not from comparing
    every pair, so a thousand windows cost milliseconds.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> a = Chunk(id="w1", text="one two three four five six", score=0.9)
    >>> b = Chunk(id="w2", text="four five six seven eight", score=0.5)
    >>> out = MergeOverlaps(min_overlap=10)("q", [a, b], StageContext.default())
    >>> [c.text for c in out], out[1].pieces
    (['one two three four five six', 'seven eight'], ((14, 25),))
    """

    name = "dedupe-overlaps"

    def __init__(
        self,
        *,
        min_overlap: int = 40,
        doc_key: str = "doc_id",
        start_key: str = "start",
        same_title_only: bool = True,
    ) -> None:
        if isinstance(min_overlap, bool) or not isinstance(min_overlap, int) or min_overlap < 1:
            raise ValueError(f"{self.name}: min_overlap must be a positive number of characters, got {min_overlap!r}")
        self.min_overlap = min_overlap
        self.doc_key = doc_key
        self.start_key = start_key
        self.same_title_only = yes_no(same_title_only, f"{self.name}: same_title_only (pair chunks of one title only)")

    def _start(self, chunk: Chunk) -> int | None:
        """The chunk's character offset in its document, or None when absent or not a number."""
        try:
            return int(chunk.metadata[self.start_key])
        except (KeyError, TypeError, ValueError, OverflowError):
            return None

    def _meta_overlap(self, hi: Chunk, lo: Chunk) -> tuple[int, int, int] | None:
        """Range of ``lo``'s original text also covered by ``hi``, from document offsets, and the shift into ``hi``'s (:func:`held`)."""
        mh, ml = hi.metadata, lo.metadata
        if self.doc_key not in mh or self.doc_key not in ml or mh[self.doc_key] != ml[self.doc_key]:
            return None
        hs, ls = self._start(hi), self._start(lo)
        if hs is None or ls is None:
            return None
        he, le = hs + len(hi.original_text), ls + len(lo.original_text)
        a, b = max(hs, ls), min(he, le)
        if b - a < 1:
            return None
        if hi.original_text[a - hs : b - hs] != lo.original_text[a - ls : b - ls]:
            return None  # offsets do not describe these texts; fall back to text detection
        return a - ls, b - ls, ls - hs

    def _meta_pairs(self, chunks: Sequence[Chunk]) -> Iterator[tuple[int, int]]:
        """Pairs of chunks whose document offsets overlap: windows of one ``doc_key`` value, swept by start.

        Only these pairs can get a range from :meth:`_meta_overlap`; a value that cannot be
        hashed is paired with every chunk that carries a ``doc_key`` (it may equal any of them).
        """
        docs: dict[Any, list[tuple[int, int, int]]] = {}
        loose: list[int] = []
        keyed: list[int] = []
        for i, c in enumerate(chunks):
            if self.doc_key not in c.metadata:
                continue
            keyed.append(i)
            start = self._start(c)
            if start is None:
                continue
            try:
                docs.setdefault(c.metadata[self.doc_key], []).append((start, start + len(c.original_text), i))
            except TypeError:  # unhashable
                loose.append(i)
        for i in loose:
            yield from ((i, j) for j in keyed if j != i)
        for windows in docs.values():
            windows.sort()
            for k, (_, end, i) in enumerate(windows):
                after = k + 1
                while after < len(windows) and windows[after][0] < end:  # starts inside window i
                    yield i, windows[after][2]
                    after += 1

    def _copies(self, chunks: Sequence[Chunk], order: Sequence[int]) -> dict[int, int]:
        """Chunks whose whole text is a copy of a better-ranked chunk's, keeping the same pieces of it, of one
        title (any, without ``same_title_only``), each mapped to the best-ranked copy (``order``: indices best first).

        A copy keeping the same pieces says nothing that chunk does not, so it is trimmed by it alone,
        and the other copies are left out of the text lookup: n copies of one text cost n steps, not n²
        comparisons (a retriever returning one passage many times). Chunks with document offsets
        (``doc_key``) are left to them: two windows of one text may sit at different places.
        """
        best: dict[tuple[str | None, str, tuple[tuple[int, int], ...]], int] = {}
        out: dict[int, int] = {}
        for i in order:
            c = chunks[i]
            if len(c.original_text) >= self.min_overlap and self.doc_key not in c.metadata:  # offsets say where: they decide
                rep = best.setdefault((c.title if self.same_title_only else None, c.original_text, c.kept_pieces), i)
                if rep != i:
                    out[i] = rep
        return out

    def _text_pairs(self, chunks: Sequence[Chunk], check: Callable[[str], None] = _no_check,
                    copies: Mapping[int, int] | None = None) -> Iterator[tuple[int, int]]:
        """Pairs ``(i, j)`` of one title (any, without ``same_title_only``) where chunk ``i``'s first
        ``min_overlap`` characters occur in chunk ``j``, leaving out ``copies`` (:meth:`_copies`).

        Every range :meth:`_text_overlap` finds (a window edge, or one text inside the other)
        holds one chunk's ``min_overlap``-character prefix inside the other, so only these pairs
        are compared, found without comparing every pair (:meth:`_prefixes_in`).
        """
        groups: dict[str | None, list[int]] = {}
        for i, c in enumerate(chunks):
            if len(c.original_text) >= self.min_overlap and i not in (copies or {}):
                groups.setdefault(c.title if self.same_title_only else None, []).append(i)
        for members in groups.values():
            if len(members) > 1:
                yield from self._prefixes_in([chunks[i].original_text for i in members], members, check)

    def _prefixes_in(self, texts: Sequence[str], ids: Sequence[int], check: Callable[[str], None] = _no_check) -> Iterator[tuple[int, int]]:
        """``(ids[u], ids[v])`` for texts ``u``, ``v`` that :meth:`_text_overlap` may find an overlap of.

        With ``m`` = ``min_overlap``, every such pair has an order where ``u``'s first ``m``
        characters occur in ``v`` and either ``u``'s last ``m`` occur in ``v`` (``u`` inside ``v``) or
        ``v``'s last ``m`` occur in ``u`` (``v`` ends with ``u``'s start): both occurrences are found
        by lookups (:meth:`_found_in`), and each text is paired from the smaller of the two sets,
        so texts sharing a boilerplate opening (or ending) are not paired with each other unless
        they share both. ``check`` (the run's deadline) is called as the texts are read.
        """
        m = self.min_overlap
        heads: dict[str, list[int]] = {}
        tails: dict[str, list[int]] = {}
        for u, t in enumerate(texts):
            heads.setdefault(t[:m], []).append(u)
            tails.setdefault(t[-m:], []).append(u)
        heads_in = self._found_in(heads, texts, check)
        tails_in = self._found_in(tails, texts, check)
        hosts: dict[str, list[int]] = {}  # texts a tail occurs in
        for v, found in enumerate(tails_in):
            for tail in found:
                hosts.setdefault(tail, []).append(v)
        for v, t in enumerate(texts):
            if v % _CHECK_EVERY == 0:
                check(f"pairing window overlaps ({v} of {len(texts)})")
            starting = [heads[h] for h in heads_in[v]]  # texts whose start occurs in v
            ending = [tails[e] for e in tails_in[v]] + [hosts.get(t[-m:], [])]  # texts whose end is in v, or holding v's end
            if sum(map(len, starting)) <= sum(map(len, ending)):
                found = (u for group in starting for u in group
                         if texts[u][-m:] in tails_in[v] or t[-m:] in tails_in[u])
            else:
                found = (u for group in ending for u in group if texts[u][:m] in heads_in[v])
            yield from ((ids[u], ids[v]) for u in found if u != v)

    def _found_in(self, keys: Mapping[str, Any], texts: Sequence[str], check: Callable[[str], None]) -> list[set[str]]:
        """For each text, which of ``keys`` (strings of ``min_overlap`` characters, or shorter texts whole) occur in it.

        Near-linear: each key is indexed by its ``k``-character pieces at offsets ``0 .. step-1``,
        and each text's pieces are read only every ``step`` characters. An occurrence at ``q``
        holds the piece read at the next multiple of ``step`` (at offset below ``step``, ending
        within the key), so a key sharing no piece with a text does not occur in it; one that
        does is checked in full.
        """
        m = self.min_overlap
        step = max(1, m // 2)
        k = m - step + 1
        pieces: dict[str, list[str]] = {}
        for key in keys:
            for piece in {key[o : o + k] for o in range(step)}:
                pieces.setdefault(piece, []).append(key)
        out: list[set[str]] = []
        for b, t in enumerate(texts):
            if b % _CHECK_EVERY == 0:
                check(f"finding window overlaps ({b} of {len(texts)})")
            shared = pieces.keys() & {t[p : p + k] for p in range(0, len(t) - k + 1, step)}
            out.append({key for piece in shared for key in pieces[piece] if key in t})
        return out

    def _text_overlap(self, hi: Chunk, lo: Chunk) -> tuple[int, int, int] | None:
        """Range of ``lo``'s original text that overlaps ``hi`` at a window boundary, or lies inside it,
        and the shift into ``hi``'s original text (:func:`held`)."""
        a, b = hi.original_text, lo.original_text
        m = self.min_overlap
        if len(b) < m or len(a) < m:
            return None
        if len(b) <= len(a) and b in a:
            return 0, len(b), self._best_place(a, b, hi)
        best = None
        # suffix of hi == prefix of lo -> lo's prefix is redundant
        probe = b[:m]
        pos = a.find(probe)
        while pos != -1:
            if b.startswith(a[pos:]):
                best = (0, len(a) - pos, pos)
                break
            pos = a.find(probe, pos + 1)
        # suffix of lo == prefix of hi -> lo's suffix is redundant
        probe = a[:m]
        pos = b.find(probe)
        while pos != -1:
            if a.startswith(b[pos:]):
                if best is None or len(b) - pos > best[1] - best[0]:
                    best = (pos, len(b), -pos)
                break
            pos = b.find(probe, pos + 1)
        return best

    @staticmethod
    def _best_place(a: str, b: str, hi: Chunk) -> int:
        """Where in ``a`` (``hi``'s original text) ``b`` occurs: the first place, or, when an earlier step
        cut ``hi``, the place of which ``hi`` still keeps the most (its text may say ``b`` twice)."""
        first = a.find(b)
        if hi.kept_pieces == ((0, len(a)),):
            return first
        places, p = [], first
        while p != -1:
            places.append(p)
            p = a.find(b, p + 1)
        return max(places, key=lambda q: (sum(e - s for s, e in held((0, len(b), q), hi)), -q))

    def _candidates(self, chunks: Sequence[Chunk], rank: Sequence[int], check: Callable[[str], None] = _no_check,
                    copies: Mapping[int, int] | None = None) -> dict[int, list[int]]:
        """For each chunk, the better-ranked chunks it may overlap, best first (all others cannot)."""
        above: dict[int, set[int]] = {}
        for pairs in (self._meta_pairs(chunks), self._text_pairs(chunks, check, copies)):
            for n, (i, j) in enumerate(pairs):
                if n % 4096 == 4095:
                    check("pairing window overlaps")
                hi, lo = (i, j) if rank[i] < rank[j] else (j, i)
                above.setdefault(lo, set()).add(hi)
        return {lo: sorted(his, key=rank.__getitem__) for lo, his in above.items()}

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        order = _best_first(chunks, context)
        rank = [0] * len(chunks)
        for r, i in enumerate(order):
            rank[i] = r
        check = context.check_deadline  # a no-op in a run without a time limit
        copies = self._copies(chunks, order)
        candidates = self._candidates(chunks, rank, check, copies)
        current = {i: c for i, c in enumerate(chunks)}
        reasons: dict[str, str] = {}
        for n, lo_i in enumerate(order):
            if n % _CHECK_EVERY == 0:
                check(f"trimming window overlaps ({n} of {len(chunks)})")
            lo = chunks[lo_i]
            if not lo.text.strip():
                continue
            if lo_i in copies:
                copy = chunks[copies[lo_i]]
                current[lo_i], reasons[lo.id] = trimmed(lo, held((0, len(lo.original_text), 0), copy), [copy.id])
                continue
            removed: list[tuple[int, int]] = []
            by: list[str] = []
            for k, hi_i in enumerate(candidates.get(lo_i, ())):
                if k % 512 == 511:  # one document's many windows all overlapping this one
                    check(f"trimming window overlaps ({n} of {len(chunks)})")
                hi = chunks[hi_i]
                span = self._meta_overlap(hi, lo)
                if span is None and (not self.same_title_only or hi.title == lo.title) and hi_i not in copies:
                    span = self._text_overlap(hi, lo)
                ranges = held(span, hi) if span is not None else []
                if ranges:
                    removed.extend(ranges)
                    by.append(hi.id)
            if not removed:
                continue
            current[lo_i], reasons[lo.id] = trimmed(lo, removed, by)
        out = [current[i] for i in range(len(chunks)) if current[i].text or not chunks[i].text.strip()]
        return StageOutput(out, reasons=reasons)
