"""Per-sentence relevance signals shared by the sentence scorers (hand-weighted and fitted).

Pure functions over a question's sentences: splitting chunks into sentences with offsets,
lexical terms, the chunk-mean cosine, the second hop's entity links and which query
words each sentence mentions. Nothing here chooses sentences; see
:mod:`optimizer.stages.sentence_select` for that.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> sents = split_chunks([Chunk(id="a", text="Paris is big. It is old.")], StageContext.default())
>>> [(s.chunk, s.start, s.end, s.position) for s in sents]
[(0, 0, 13, 0), (0, 14, 24, 1)]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

from optimizer.records import Chunk, indent_start
from optimizer.sentences import code_blocks, split_range
from optimizer.score_reading import DIRECTIONS, read_scores
from optimizer.stage import StageContext
from optimizer.subtitles import spoken
from optimizer.stages.surnames import lone_surnames, surname_chunks
from optimizer.scoring import minmax, titled_text
from optimizer.text import STOPWORDS, cased_words, content_words, entities, words

# Questions that ask for a number or a date.
NUMERIC_QUESTION = re.compile(
    r"^\s*(when|what year|which year|in what year|how (many|much|old|long|far|tall|big|large|high))\b"
    r"|\b(what|which) (year|date|decade|century)\b|\bhow (many|much)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a chunk, with offsets in the chunk's original text."""

    chunk: int  # index into the chunk list
    start: int
    end: int
    text: str
    position: int  # sentence number inside the chunk's kept text
    tokens: int


def split_chunks(chunks: Sequence[Chunk], context: StageContext) -> list[Sentence]:
    r"""Every sentence of every chunk's kept pieces, in order, with its token count.

    A question is one unit with the sentence after it (:func:`with_answers`): on a FAQ page the
    question matches the query best and says nothing, and its answer may share no word with it.

    >>> [s.text for s in split_chunks([Chunk(id="f", text="How do I reset it?\nHold the button. Then wait.")],
    ...                                StageContext.default())]
    ['How do I reset it?\nHold the button.', 'Then wait.']
    """
    out: list[Sentence] = []
    for ci, c in enumerate(chunks):
        context.check_deadline(f"splitting sentences (chunk {ci} of {len(chunks)})")
        original = c.original_text
        position = 0
        for ps, pe in c.kept_pieces:  # split each kept piece; offsets stay in original coordinates
            for s, e in with_answers(original, split_range(original, ps, pe)):  # a code block's piece is still split per line
                text = spoken(original, s, e)  # a subtitle cue's index and timing lines blanked: scored on what is said
                tokens = context.count(original[indent_start(original, s) : e])  # printed with its indentation (piece_joiner)
                out.append(Sentence(ci, s, e, text, position, tokens))
                position += 1
    return out


QUESTION_END = re.compile(r"[?？؟][\s\"'”’»)\]*_]*$")
_QUESTION_LINE = re.compile(r"[?？؟][\"'”’»)\]*_]*[ \t]*\r?\n\s*(?=\S)")  # a question ending its line, then more
# a sentence's end, then a question labelled "Q:" or "Question:" on its line
_NEXT_ASKED = re.compile(r"[.!?。！？؟]([\"'”’»)\]*_]*)[ \t]+(?=(?:Q|Question|QUESTION)[ \t]*[:：])")
# a question, then an answer labelled "A:" or "Answer:" on its line
_ANSWER_LABEL = re.compile(r"[?？؟][\"'”’»)\]*_]*[ \t]+(?=(?:A|Answer|ANSWER)[ \t]*[:：])")


def with_answers(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    r"""``spans`` (sentences of ``text``) with each question that ends its line joined to the sentence
    on the next line when that one is no question, as on a FAQ page: the question matches the query
    best and carries no answer. A question followed on its line by an answer labelled ``A:`` or
    ``Answer:`` (``Q: ...? A: ...``) is joined to it too. A question inside a paragraph (a rhetorical
    one) stays a sentence of its own, and so does a line of a fenced code block (``WHERE id = ?``).
    A sentence run on past its end into the next ``Q:`` is cut there first (:func:`_asked_apart`).

    >>> t = "Q: Can I pay later?\nA: Yes, within 30 days. Why? Who knows?"
    >>> [t[s:e] for s, e in with_answers(t, [(0, 19), (20, 43), (44, 48), (49, 59)])]
    ['Q: Can I pay later?\nA: Yes, within 30 days.', 'Why?', 'Who knows?']
    >>> t = "Q: Can I pay later? A: Yes. Is it safe? Yes."
    >>> [t[s:e] for s, e in with_answers(t, [(0, 19), (20, 27), (28, 39), (40, 44)])]
    ['Q: Can I pay later? A: Yes.', 'Is it safe?', 'Yes.']
    """
    spans = _asked_apart(text, spans)
    out: list[tuple[int, int]] = []
    code = None
    k = 0
    while k < len(spans):
        s, e = spans[k]
        if k + 1 < len(spans) and _answered(text, (s, e), spans[k + 1]):
            code = code if code is not None else code_blocks(text)
            if not any(cs < spans[k + 1][1] and s < ce for cs, ce in code):
                e = spans[k + 1][1]
                k += 1
        out.append((s, e))
        k += 1
    return out


def _asked_apart(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    r"""``spans`` (sentences of ``text``) each cut before a question labelled ``Q:`` or ``Question:`` that
    starts after a sentence's end on its line: blingfire reads ``No.`` as an abbreviation, and in
    ``Q: ...? A: No. Q: ...?`` left the next question with the answer, the first question alone.
    A line of a fenced code block is left as it is.

    >>> t = "Q: Cash? A: No. Q: Cards? A: Yes."
    >>> [t[s:e] for s, e in _asked_apart(t, [(0, 8), (9, 33)])]
    ['Q: Cash?', 'A: No.', 'Q: Cards? A: Yes.']
    """
    out: list[tuple[int, int]] = []
    code = None
    for s, e in spans:
        for m in _NEXT_ASKED.finditer(text, s, e):
            code = code if code is not None else code_blocks(text)
            if not any(cs < e and s < ce for cs, ce in code):
                out.append((s, m.start() + 1 + len(m.group(1))))
                s = m.end()
        out.append((s, e))
    return out


def _answered(text: str, question: tuple[int, int], answer: tuple[int, int]) -> bool:
    """Whether the sentence ``answer`` of ``text`` answers the sentence ``question`` before it (see
    :func:`with_answers`): a question ending its line then no question on the next line, or a question
    then an ``A:`` or ``Answer:`` label on its line."""
    s, e = question
    if not QUESTION_END.search(text[s:e]) or QUESTION_END.search(text[slice(*answer)]):
        return False
    mark = _last_mark(text, s, e)
    if _QUESTION_LINE.match(text, mark, answer[0] + 1):
        return True
    label = _ANSWER_LABEL.match(text, mark)
    return label is not None and label.end() == answer[0]


def _last_mark(text: str, s: int, e: int) -> int:
    """The position of the last question mark in ``text[s:e]`` (the sentence may end in closing quotes)."""
    return max(text.rfind(m, s, e) for m in "?？؟")


def answer_part(text: str) -> str:
    r"""The answer of a unit :func:`with_answers` joined (the text after its question's line, or from the
    ``A:`` label on it), else ``text``: what a word-for-word repeat in another chunk is known by.

    >>> answer_part("How do I reset it?\nHold the button."), answer_part("It is 5 m."), answer_part("Q: Why? A: Rain.")
    ('Hold the button.', 'It is 5 m.', 'A: Rain.')
    """
    if "?" not in text and "？" not in text and "؟" not in text:  # both patterns open with a question mark
        return text
    found = [m for m in (_QUESTION_LINE.search(text), _ANSWER_LABEL.search(text)) if m]
    return text[min(found, key=lambda m: m.start()).end():] if found else text


def terms(text: str, stem: int = 0) -> list[str]:
    """Content words, truncated to ``stem`` characters when set (truncation stemming).

    An identifier is not truncated (see :func:`word_terms`): stemming would merge invoice
    ``40031871`` with ``40031877`` and ``getUserById`` with ``getUserSettings``.

    >>> terms("The director directed", stem=6), terms("getUserById of 40031871", stem=6)
    (['direct', 'direct'], ['getuse', 'getuserbyid', '40031871'])
    """
    if not stem:
        return content_words(text)
    if "_" not in text and not _camel_case(text):  # most text: word_terms's rule for plain words and numbers, faster
        if not _DIGIT.search(text):
            return [w[:stem] for w in content_words(text)]
        return [w if len(w) <= stem or _KEPT_WHOLE.search(w) else w[:stem] for w in content_words(text)]
    return [t for _, found in word_terms(text, stem) for t in found]


_KEPT_WHOLE = re.compile(r"[\d_]")
"""A word with a digit or an underscore (a number, a code, a snake_case name) is never truncated."""


_DIGIT = re.compile(r"\d")


def _snake_terms(word: str, stem: int) -> tuple[str, ...]:
    """A snake_case ``word``'s terms (one without a digit: ``service_12``, ``sku_4003187`` are codes, kept whole): the
    whole word (it tells ``get_user`` from ``get_users_by_id``), then each of its parts read as a word
    (``connection_timeout_in_seconds`` also meets "connection timeout" in a question).

    >>> _snake_terms("connection_timeout_in_seconds", 6), _snake_terms("__init__", 6)
    (('connection_timeout_in_seconds', 'connec', 'timeou', 'second'), ('__init__', 'init'))
    """
    parts = [p for p in word.split("_") if p and p not in STOPWORDS]
    found = [p if len(p) <= stem else p[:stem] for p in parts]
    return tuple(dict.fromkeys([word, *found]))
_CAMEL_ASCII = re.compile(r"[a-z][A-Z]")
# a lower-case letter, then an upper-case one, perhaps with marks, soft hyphens or zero-width characters
# between (words() keeps marks in a word and drops the others)
_CAMEL = regex.compile(r"\p{Ll}[\p{M}\u00ad\u200b\u2060\ufeff]*\p{Lu}")


def _camel_case(text: str) -> bool:
    """A lower-case letter followed by an upper-case one in ``text`` (``getUserById``, ``JavaScript``)."""
    return (_CAMEL_ASCII if text.isascii() else _CAMEL).search(text) is not None


def _code_name(word: str) -> bool:
    """A camelCase identifier: lower camel (``getUserById``) or two humps or more (``PaymentGatewayConfig``), not a
    name with one inner capital (``McDonald``, ``YouTube``, ``LaValle``), which reads as a word (one term, not two:
    a question naming it would count it twice).

    >>> [_code_name(w) for w in ("getUserById", "PaymentGatewayConfig", "McDonald", "YouTube", "iPhone")]
    [True, True, False, False, True]
    """
    humps = len((_CAMEL_ASCII if word.isascii() else _CAMEL).findall(word))
    return humps >= 2 or (humps == 1 and word[:1].islower())


def word_terms(text: str, stem: int) -> list[tuple[str, tuple[str, ...]]]:
    """Each content word of ``text`` with its terms for ``stem`` (:func:`terms` is these terms, in order).

    A word no longer than ``stem``, or with a digit, is its own term; a snake_case word without one is
    itself and its parts, each read so (:func:`_snake_terms`). A camelCase
    identifier (read before lower-casing; :func:`_code_name`, not a name like ``McDonald``) is its stem and the whole word: the whole word tells two
    identifiers apart, the stem still meets the word written in lower case. Any other word is its
    first ``stem`` characters. The rule reads one word at a time, so a query and a chunk read the
    same word alike, and the terms of two texts joined are the terms of each.

    >>> word_terms("The directors of getUserById and get_user", 6)
    [('directors', ('direct',)), ('getuserbyid', ('getuse', 'getuserbyid')), ('get_user', ('get_user', 'get', 'user'))]

    ``stem`` 0: each word is its own term.
    """
    if not stem:
        return [(w, (w,)) for w in content_words(text)]
    found = words(text)
    cased = cased_words(text) if _camel_case(text) else []
    aligned = len(cased) == len(found) and all(c.lower() == w for c, w in zip(cased, found))
    out: list[tuple[str, tuple[str, ...]]] = []
    for i, w in enumerate(found):
        if w in STOPWORDS:
            continue
        if "_" in w and not _DIGIT.search(w):
            out.append((w, _snake_terms(w, stem)))
        elif len(w) <= stem or _KEPT_WHOLE.search(w):
            out.append((w, (w,)))
        elif aligned and _code_name(cased[i]):
            out.append((w, (w[:stem], w)))
        else:
            out.append((w, (w[:stem],)))
    return out


def terms_memo(context: StageContext, stem: int = 0) -> dict[str, list[str]]:
    """This run's memo of :func:`terms` (text -> terms) for ``stem``: scorer and selector share it."""
    return context.cache.memo(f"terms:{stem}")


def memo_terms(text: str, stem: int, memo: dict[str, list[str]] | None) -> list[str]:
    """:func:`terms` of ``text``, from ``memo`` when it has them (then filled); callers must not change the list."""
    if memo is None:
        return terms(text, stem)
    found = memo.get(text)
    if found is None:
        found = memo[text] = terms(text, stem)
    return found


def checked_terms(texts: Sequence[str], stem: int, memo: dict[str, list[str]] | None, context: StageContext,
                  what: str = "texts") -> list[list[str]]:
    """``[memo_terms(t, stem, memo) for t in texts]``, checking the run's deadline every :data:`TERMS_PER_CHECK` texts."""
    out: list[list[str]] = []
    for start in range(0, len(texts), TERMS_PER_CHECK):
        context.check_deadline(f"reading the words of {what} ({start} of {len(texts)})")
        out.extend(memo_terms(t, stem, memo) for t in texts[start : start + TERMS_PER_CHECK])
    return out


def titled_terms(sents: Sequence[Sentence], chunks: Sequence[Chunk], texts: Sequence[str], stem: int,
                 memo: dict[str, list[str]] | None, context: StageContext) -> list[list[str]]:
    """``checked_terms(texts, ...)`` for ``texts``, the :func:`titled` ``sents``: an ASCII ``"Title. sentence"``'s
    terms are read as the title's then the sentence's own (each from ``memo``, and the sentence's left in it).

    For ASCII text the two are the same list: a word (``\\w+``) never spans ``". "``, lower-casing is per
    character, a word hyphenated at a line end is joined within its own half (the rule needs a letter,
    hyphen, line break and letter, never a full stop), no camelCase spans it, and each word's terms
    depend on that word alone (:func:`word_terms`; :func:`terms` takes its shortcuts only where they give
    each word's terms). The sentence alone is what the second hop reads (:func:`_name_links`), so it is
    read once. Other text is read whole, as before.
    """
    out: list[list[str]] = []
    for start in range(0, len(texts), TERMS_PER_CHECK):
        context.check_deadline(f"reading the words of sentences ({start} of {len(texts)})")
        for k in range(start, min(len(texts), start + TERMS_PER_CHECK)):
            text, s = texts[k], sents[k]
            title = chunks[s.chunk].title
            if memo is None or text in memo or not (title and text.isascii() and text == f"{title}. {s.text}"):
                out.append(memo_terms(text, stem, memo))
                continue
            found = memo[text] = [*memo_terms(title, stem, memo), *memo_terms(s.text, stem, memo)]
            out.append(found)
    return out


TERMS_PER_CHECK = 256
"""Texts whose words are read between two checks of a run's deadline (:func:`checked_terms`)."""


def chunk_terms(
    chunks: Sequence[Chunk],
    sents: Sequence[Sentence],
    sent_terms: Sequence[list[str]],
    *,
    use_title: bool,
    stem: int = 0,
    memo: dict[str, list[str]] | None = None,
) -> list[list[str]]:
    """:func:`terms` of each chunk's scoring text (``chunk_texts``), reusing its sentences' terms.

    ``sent_terms`` are the terms of :func:`titled` ``sents``. Words never span white space
    or ``". "``, and lower-casing only looks across neither, so the terms of
    ``"Title. text"`` are the title's followed by each sentence's (its titled terms without
    the title's) whenever the chunk is uncut and white space separates its sentences and
    is all that lies around them; otherwise the text's terms are computed as usual.
    """
    spans: dict[int, list[int]] = {}
    for i, sent in enumerate(sents):
        spans.setdefault(sent.chunk, []).append(i)
    out: list[list[str]] = []
    for ci, c in enumerate(chunks):
        text = titled_text(c.title, c.text, use_title=use_title)
        own = spans.get(ci, [])
        edges = [0, *(x for i in own for x in (sents[i].start, sents[i].end)), len(c.text)]
        gaps = [c.text[edges[k] : edges[k + 1]] for k in range(0, len(edges), 2)]
        if c.pieces is not None or (memo is not None and text in memo) or not all(
            g.isspace() for g in gaps[1:-1]
        ) or not all(g == "" or g.isspace() for g in (gaps[0], gaps[-1])):
            out.append(memo_terms(text, stem, memo))
            continue
        head = memo_terms(c.title, stem, memo) if use_title and c.title else []
        if any(sent_terms[i][: len(head)] != head for i in own):  # cannot happen; checked anyway
            out.append(memo_terms(text, stem, memo))
            continue
        found = list(head)
        for i in own:
            found.extend(sent_terms[i][len(head) :])
        if memo is not None:
            memo[text] = found
        out.append(found)
    return out


def titled(sents: Sequence[Sentence], chunks: Sequence[Chunk], use_title: bool) -> list[str]:
    """Each sentence prefixed with its chunk's title (``"Title. Sentence"``) when asked and present."""
    return [f"{chunks[s.chunk].title}. {s.text}" if use_title and chunks[s.chunk].title else s.text for s in sents]


def chunk_cosines(chunk_of: np.ndarray, sent_vecs: np.ndarray, qvec: np.ndarray, n: int) -> list[float]:
    """Cosine of each chunk's mean sentence vector to the query (0 for a chunk without sentences)."""
    out = [0.0] * n
    grouped = bool(np.all(chunk_of[1:] >= chunk_of[:-1]))  # split_chunks's order: each chunk's sentences together
    bounds = np.searchsorted(chunk_of, np.arange(n + 1)) if grouped else None
    for c in range(n):
        # the same rows either way; a slice instead of a mask over every sentence per chunk
        rows = sent_vecs[bounds[c] : bounds[c + 1]] if bounds is not None else sent_vecs[chunk_of == c]
        if len(rows):
            mean = rows.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            out[c] = float(mean @ qvec) / norm if norm > 0 else 0.0
    return out


def chunk_name(chunk: Chunk, stem: int = 0, memo: dict[str, list[str]] | None = None) -> list[str]:
    """The words of the name a chunk is about: its title, else the first capitalized phrase of its text.

    >>> chunk_name(Chunk(id="a", text="Ana Ruiz directed it.")), chunk_name(Chunk(id="b", title="Moon Harbor", text="x"))
    (['ana', 'ruiz'], ['moon', 'harbor'])
    """
    return list(dict.fromkeys(memo_terms(chunk.title if chunk.title else next(iter(entities(chunk.text)), ""), stem, memo)))


def entity_links(
    sents: Sequence[Sentence],
    chunks: Sequence[Chunk],
    p1: np.ndarray,
    score: np.ndarray,
    *,
    hop_chunks: int,
    stem: int = 0,
    memo: dict[str, list[str]] | None = None,
    documents: bool = False,
) -> np.ndarray:
    """How strongly the first hop's sentences mention the entity each chunk is about.

    A chunk is about its title (else the first capitalized phrase of its text); a mention
    counts inside a capitalized phrase of the sentence. For each sentence of the
    ``hop_chunks`` best chunks (by ``p1``), the share of that name's words (weighted by
    rarity across chunks) it contains, times the sentence's first-round ``score`` scaled to
    [0, 1]; a chunk's link is the best such value from another chunk's sentence. ``memo``:
    see :func:`terms_memo`. With ``documents``, chunks sharing a title are pieces of one
    document: the hop reads every piece of the ``hop_chunks`` best documents (a document
    ranks by its best piece), and a sentence never links a piece of its own document.
    """
    names = [chunk_name(c, stem, memo) for c in chunks]
    doc, hop = _hop_read(names, chunks, p1, hop_chunks, documents)
    weight = np.array(minmax(list(score)))
    readers = {i: float(weight[i]) for i, s in enumerate(sents) if s.chunk in hop}
    return _name_links(sents, chunks, names, doc, readers, stem, memo)


def chained_links(
    sents: Sequence[Sentence],
    chunks: Sequence[Chunk],
    p1: np.ndarray,
    score: np.ndarray,
    *,
    hop_chunks: int,
    steps: int,
    scale: float = 1.0,
    stem: int = 0,
    memo: dict[str, list[str]] | None = None,
    documents: bool = False,
) -> np.ndarray:
    """:func:`entity_links`, then the links followed on from the chunks they bring in, up to ``steps`` link steps.

    A chunk is brought in when ``scale`` times its link beats its own prior ``p1`` (as
    ``link_lead`` reads it). Each further step reads the sentences of the chunks the last
    step brought in, each weighing its chunk's link (the link's strength where the first
    step has the sentence's scaled score), so a chain's link is a product of name shares:
    a partial name (a first name alone) weakens each later step further. A surname alone names
    its person in full where no other chunk's name has it (:mod:`optimizer.stages.surnames`:
    "directed by Valdis" and the chunk "Oren Valdis"). It stops early
    when a step brings no chunk in that was not read at its link's strength already (a chunk a weak path
    reached first is read again when a stronger one reaches it). ``steps`` 1 is :func:`entity_links`
    with that surname rule (:func:`entity_links` itself, a fitted scorer's feature, reads names word by word).

    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="a", title="Ana Ruiz", text="Ana Ruiz scored The Red Road."),
    ...           Chunk(id="b", title="The Red Road", text="The Red Road is a film by Tom Vale."),
    ...           Chunk(id="c", title="Tom Vale", text="Tom Vale married Eve Sol.")]
    >>> sents = split_chunks(chunks, StageContext.default())
    >>> p1, score = np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])
    >>> [round(float(x), 2) for x in chained_links(sents, chunks, p1, score, hop_chunks=1, steps=1)]
    [0.0, 1.0, 0.0]
    >>> [round(float(x), 2) for x in chained_links(sents, chunks, p1, score, hop_chunks=1, steps=3)]
    [0.0, 1.0, 1.0]
    """
    names = [chunk_name(c, stem, memo) for c in chunks]
    doc, read = _hop_read(names, chunks, p1, hop_chunks, documents)
    weight = np.array(minmax(list(score)))
    idf = _name_idf(chunks, names, stem, memo)
    surnames = _surnames(sents, chunks)
    link = _name_links(sents, chunks, names, doc, {i: float(weight[i]) for i, s in enumerate(sents) if s.chunk in read},
                       stem, memo, idf, surnames)
    read_at = {j: math.inf for j in read}  # the strength each chunk's sentences were read at (the first hop's: always)
    for _ in range(steps - 1):
        # brought in, and never read at this strength: a chunk a weak path reached first is read again when a
        # stronger one reaches it, so its links follow the strongest path, not the first
        reached = {j for j in range(len(chunks)) if scale * link[j] > p1[j] and link[j] > read_at.get(j, -1.0)}
        if not reached:
            break
        read_at.update((j, float(link[j])) for j in reached)
        readers = {i: float(link[s.chunk]) for i, s in enumerate(sents) if s.chunk in reached}
        link = np.maximum(link, _name_links(sents, chunks, names, doc, readers, stem, memo, idf, surnames))
    return link


def _surnames(sents: Sequence[Sentence], chunks: Sequence[Chunk]) -> dict[str, int]:
    """The chunks a surname alone names (:func:`~optimizer.stages.surnames.surname_chunks`)."""
    leads = [""] * len(chunks)
    for s in sents:
        if s.position == 0:
            leads[s.chunk] = s.text
    return surname_chunks(chunks, [c.title if c.title else next(iter(entities(c.text)), "") for c in chunks], leads)


def _hop_read(names: Sequence[list[str]], chunks: Sequence[Chunk], p1: np.ndarray, hop_chunks: int,
              documents: bool) -> tuple[list[Any], set[int]]:
    """Each chunk's document key and the chunks the hop reads: the ``hop_chunks`` best by ``p1`` (see :func:`entity_links`)."""
    order = np.argsort(-p1, kind="stable")
    if documents:
        # a document is a title; an untitled chunk (its name only guessed from its text) stands alone
        doc: list[Any] = [tuple(n) if n and c.title else ("#", j) for j, (n, c) in enumerate(zip(names, chunks))]
        best = list(dict.fromkeys(doc[int(i)] for i in order))[:hop_chunks]
        return doc, {j for j in range(len(chunks)) if doc[j] in best}
    return list(range(len(chunks))), set(int(i) for i in order[:hop_chunks])


def _name_idf(chunks: Sequence[Chunk], names: Sequence[list[str]], stem: int, memo: dict[str, list[str]] | None) -> dict[str, float]:
    """The rarity (IDF across ``chunks``, title included) of each word of the chunks' ``names``."""
    vocab = {w for name in names for w in name}
    df: Counter[str] = Counter()
    for c in chunks:
        df.update(vocab.intersection(memo_terms(f"{c.title}. {c.text}" if c.title else c.text, stem, memo)))
    return {w: math.log(1 + len(chunks) / (1 + df[w])) for w in df}


def _name_links(
    sents: Sequence[Sentence],
    chunks: Sequence[Chunk],
    names: Sequence[list[str]],
    doc: Sequence[Any],
    readers: dict[int, float],
    stem: int,
    memo: dict[str, list[str]] | None,
    idf: dict[str, float] | None = None,
    surnames: dict[str, int] | None = None,
) -> np.ndarray:
    """Each chunk's link from the ``readers`` sentences (index: weight).

    The link is the best ``weight`` times the share of the chunk's name words (rarity-weighted)
    a reader sentence mentions; a sentence never links a chunk of its own document. ``idf``:
    :func:`_name_idf` (None: computed here; a caller linking step after step computes it once).
    ``surnames``: :func:`_surnames`; a sentence that names one of those chunks by its surname alone
    mentions its whole name (None: names are read word by word only).
    """
    n = len(chunks)
    idf = _name_idf(chunks, names, stem, memo) if idf is None else idf
    # a mention of a named entity is capitalized ("comedy" in a sentence is not the chunk "Comedy");
    # names in scripts without case (CJK, ...) match plain words
    bridges = [
        (i, {w for ent in entities(sents[i].text) for w in memo_terms(ent, stem, memo)}, set(memo_terms(sents[i].text, stem, memo)))
        for i in sorted(readers)
    ]
    alone: dict[int, set[int]] = {}  # reader sentence -> the chunks it names by their surname alone
    for i, _, _ in bridges if surnames else ():
        alone[i] = {surnames[w] for w in lone_surnames(sents[i].text, surnames)}
    cased = [any(ch.isupper() for ch in (c.title if c.title else c.text)) for c in chunks]
    link = np.zeros(n)
    bridged = set().union(*(m | p for _, m, p in bridges))  # a name with none of these words gets no link
    for j, name in enumerate(names):
        if bridged.isdisjoint(name):
            continue
        total = sum(idf.get(w, 0.0) for w in name)
        if total <= 0:
            continue
        for i, mentioned, plain in bridges:
            words_i = mentioned if cased[j] else plain
            if doc[sents[i].chunk] == doc[j]:
                continue
            share = 1.0 if j in alone.get(i, ()) else sum(idf.get(w, 0.0) for w in name if w in words_i) / total
            link[j] = max(link[j], readers[i] * share)
    return link


def query_mentions(
    query: str,
    chunks: Sequence[Chunk],
    sents: Sequence[Sentence],
    *,
    stem: int = 0,
    use_title: bool = True,
    memo: dict[str, list[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which query words each sentence mentions (title included), and each word's weight.

    A word weighs by its rarity across the chunks (IDF); words no sentence mentions
    weigh nothing (nothing can cover them). Weights sum to 1. ``memo``: see :func:`terms_memo`.
    """
    words = list(dict.fromkeys(terms(query, stem)))
    if not words or not sents:
        return np.zeros((len(sents), 0), dtype=bool), np.zeros(0)
    texts = titled(sents, chunks, use_title)
    present = np.array([[w in ts for w in words] for ts in (memo_terms(t, stem, memo) for t in texts)], dtype=bool)
    chunk_of = np.array([s.chunk for s in sents])
    df = np.array([len(set(chunk_of[present[:, k]])) for k in range(len(words))])
    weight = np.where(df > 0, np.log1p(len(chunks) / (1.0 + df)), 0.0)
    total = weight.sum()
    return present, (weight / total if total > 0 else weight)


def retriever_scores(chunks: Sequence[Chunk], mode: str, context: StageContext) -> list[float] | None:
    """The retriever's ``Chunk.score`` per chunk, turned so that higher is better, or ``None`` if no chunk has one.

    ``mode`` ``"similarity"``: higher is better; ``"distance"``: lower is better (FAISS L2,
    pgvector ``<->``, LangChain's FAISS ``similarity_search_with_score``); ``"auto"`` and
    ``"order"``: as the run reads them (:meth:`StageContext.score_reading`, decided once on every
    chunk the run was given: a distance when the scores rise along the order they were handed
    over, at least four scored chunks, never falling, not all equal, since retrievers hand over
    their best first; else a similarity). A chunk without a score gets the worst given one.

    >>> chunks = [Chunk(id=k, text=k, score=s) for k, s in zip("abcd", [0.1, 0.3, 0.3, 0.9])]
    >>> given_order = StageContext.for_chunks(chunks, tokenizer=StageContext.default().tokenizer)
    >>> retriever_scores(chunks, "auto", given_order)
    [-0.1, -0.3, -0.3, -0.9]
    >>> retriever_scores(chunks, "similarity", given_order)
    [0.1, 0.3, 0.3, 0.9]
    """
    if mode == "ignore" or all(c.score is None for c in chunks):
        return None
    reading = read_scores(chunks, mode if mode in DIRECTIONS else context.score_reading(chunks).direction)
    return [reading.value(c) for c in chunks]  # the worst of these chunks' scores for one without


def retriever_signal(chunks: Sequence[Chunk], mode: str, context: StageContext) -> list[float] | None:
    """The retriever's score per chunk (higher is better), or ``None`` when there is none to use.

    ``mode`` ``"auto"``, ``"similarity"``, ``"distance"``: :func:`retriever_scores`;
    ``"order"``: that, else the given order read as a ranking (the first chunk highest);
    ``"ignore"``: never.

    >>> retriever_signal([Chunk(id="a", text="x", score=0.2), Chunk(id="b", text="y")], "auto", StageContext.default())
    [0.2, 0.2]
    >>> retriever_signal([Chunk(id="a", text="x"), Chunk(id="b", text="y")], "order", StageContext.default())
    [-0.0, -1.0]
    """
    scores = retriever_scores(chunks, mode, context)
    if scores is not None or mode != "order":
        return scores
    return [-float(context.input_order.get(c.id, i)) for i, c in enumerate(chunks)]
