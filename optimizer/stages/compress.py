"""Query-aware sentence extraction: keep the best whole sentences, with exact offsets, to fill the budget.

Each sentence (title-prefixed, so "She served as ..." still knows whom it is about) gets a
fused score: BM25 over sentences, the chunk's BM25 (or an earlier rerank's relevance) as a
prior, the embedding cosine to the query (static model2vec by default), a small bonus for
a chunk's lead sentence and, for when/how-many questions, for sentences with numbers.

**Second hop.** A passage that answers a multi-hop question often shares no word with
it ("the woman who portrayed X" → a sentence about "Shirley Temple" → her position). So a
second round expands the query with the salient terms (capitalized phrases, locally rare
words) of the best first-round sentences and re-scores everything; the two rounds are
summed. This is pseudo-relevance feedback (Rocchio 1971; Lavrenko & Croft, *Relevance-Based
Language Models*, SIGIR 2001) applied per question, in the spirit of iterative retrieval
for multi-hop QA (Xiong et al., *Answering Complex Open-Domain Questions with Multi-Hop
Dense Retrieval*, ICLR 2021).

**Scorer and selector.** The stage is a scorer plus a selector. ``scorer="weighted"`` is the
hand-weighted fusion described here; ``scorer="fitted"`` computes the feature matrix of
:mod:`optimizer.stages.sentence_features` and scores it with shipped, learned weights
(:mod:`optimizer.stages.sentence_scorer`; fitted by ``bench/fit_scorer.py``), using the
retriever's ``Chunk.score`` when the chunks carry one. Either way the scores go to
:class:`optimizer.stages.sentence_select.SentenceSelector`.

Sentences are then picked greedily until the budget (``context.budget`` minus the
renderer's overhead) is filled. The greedy has diminishing returns: a sentence from a
chunk already used is worth a little less (``redundancy``), and query words a taken
sentence already mentions stop earning a bonus (``coverage``), so "X or Y?" gets both X
and Y. When only a few sentences fit, value is scaled per token (``density``) so that two
short sentences can beat one long one; both that and the spreading fade as the budget
grows (``tight_sentences``). Kept sentences stay in document order inside their
chunk, and the chunk's ``relevance`` is its best sentence's score, so the packer keeps the
best first.

**Page furniture.** A PDF's running header and page-number footer, a web page's menu, repeated
exactly at the edges of most of the call's chunks (:mod:`optimizer.furniture`), are cut out first:
no sentence carries them, no paragraph is headed by them, none is kept (the trace names them). An
untitled chunk's lone first-line title stays: its identifier.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> chunks = [Chunk(id="a", title="Paris", text="Paris is the capital of France. It has many museums. The Seine crosses it.")]
>>> out = SentenceExtract(model=None)("What is the capital of France?", chunks, StageContext.default(budget=12))
>>> out[0].text, out[0].pieces
('Paris is the capital of France.', ((0, 31),))
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.embeddings import EMBEDDERS, embed_texts, get_embedder
from optimizer.furniture import copies, find_furniture, strip_furniture, with_reasons
from optimizer.records import Chunk
from optimizer.stage import Stage, StageContext, StageOutput
from optimizer.stages.sentence_features import RETRIEVER_MODES, sentence_features
from optimizer.stages.sentence_scorer import FittedScorer, load_scorer
from optimizer.stages.sentence_select import SentenceSelector
from optimizer.scoring import bm25_plus_scores, chunk_texts, minmax
from optimizer.stages.paragraphs import TITLED, ParagraphViews
from optimizer.stages.sentence_signals import (
    NUMERIC_QUESTION,
    Sentence,
    checked_terms,
    chunk_cosines,
    chunk_name,
    chunk_terms as chunk_term_lists,
    chained_links,
    memo_terms,
    retriever_signal,
    split_chunks,
    terms,
    terms_memo,
    titled,
    titled_terms,
    word_terms,
)
from optimizer.text import content_words, entities, has_number
from optimizer.validate import finite_number, non_negative_int, yes_no

SCORERS = ("weighted", "fitted")


def _check_settings(*, model: str | None, hops: int, order: str, ratio: float, fill: float, scorer: str,
                    coverage_mode: str, retriever: str, neighbours: int) -> None:
    """The :class:`SentenceExtract` settings that can be wrong, checked with errors that say how."""
    if model is not None and model not in EMBEDDERS:
        raise ValueError(f"sentences: model must be None or one of {', '.join(EMBEDDERS)}, got {model!r}")
    if hops not in (1, 2):
        raise ValueError(f"sentences: hops must be 1 or 2, got {hops!r}")
    if order not in ("relevance", "document"):
        raise ValueError(f"sentences: order must be 'relevance' or 'document', got {order!r}")
    for pname, value in (("ratio", ratio), ("fill", fill)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"sentences: {pname} must be a number in (0, 1], got {value!r}")
    if scorer not in SCORERS:
        raise ValueError(f"sentences: scorer must be one of {', '.join(SCORERS)}, got {scorer!r}")
    if coverage_mode not in ("add", "scale"):
        raise ValueError(f"sentences: coverage_mode must be 'add' or 'scale', got {coverage_mode!r}")
    if retriever not in RETRIEVER_MODES:
        raise ValueError(f"sentences: retriever must be one of {', '.join(RETRIEVER_MODES)}, got {retriever!r}")
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 0:
        raise ValueError(f"sentences: neighbours must be a non-negative integer, got {neighbours!r}")


_WEIGHTS = ("lexical", "dense", "chunk_prior", "chunk_dense", "lead", "numeric", "hop_weight", "density",
            "neighbour_weight", "redundancy", "lead_follow", "coverage", "retriever_weight")
"""Settings of :class:`SentenceExtract` that are weights: numbers of 0 or more."""

_COUNTS = ("hop_chunks", "hop_sentences", "hop_terms", "tight_sentences", "stem")
"""Settings of :class:`SentenceExtract` that are counts: whole numbers of 0 or more."""

_FLAGS = ("hop_link", "use_title")
"""Settings of :class:`SentenceExtract` that are yes/no."""


def _check_kinds(stage: Any) -> None:
    """``stage``'s weights, counts and flags are of their kind (a quoted ``"1"`` or ``"false"`` from a config is
    refused here, naming the setting, instead of failing every run inside numpy or silently reading as true)."""
    defaults = _defaults()
    for pname in _WEIGHTS:
        finite_number(getattr(stage, pname), f"{stage.name}: {pname}", at_least=0, example=defaults[pname])
    for pname in _COUNTS:
        non_negative_int(getattr(stage, pname), f"{stage.name}: {pname}")
    for pname in _FLAGS:
        yes_no(getattr(stage, pname), f"{stage.name}: {pname}")


@functools.cache
def _defaults() -> dict[str, Any]:
    """The defaults of :class:`SentenceExtract`'s settings (examples in its errors), read once."""
    return {name: p.default for name, p in inspect.signature(SentenceExtract.__init__).parameters.items()}


def _linked_leads(chunks: Sequence[Chunk], sents: Sequence[Sentence], p1: np.ndarray, hop: np.ndarray,
                  stem: int = 0, memo: dict[str, list[str]] | None = None, top: int = 0,
                  documents: bool = False) -> np.ndarray:
    """Per sentence: the second hop's link value if it is the lead of a chunk the hop brought in, else 0.

    A chunk is brought in when its link beats its own first-round prior. Only a chunk that is
    the one chunk about its name counts (:func:`chunk_name`: its title, else the first
    capitalized phrase of its text; no other chunk has the same): when several chunks share a
    name (passages of one document) the link does not say which of them it means, and their
    later passages' first sentences do not introduce the entity. With ``top`` > 0 only the
    ``top`` best-linked of those chunks count (ties: the earlier given); 0 = all of them.
    With ``documents``, a piece of a shared title counts too when its first sentence holds
    every word of the title (it opens, or restates, the document's subject).
    """
    names = [tuple(chunk_name(c, stem, memo)) for c in chunks]
    shared = Counter(names)
    named = np.array([shared[n] == 1 for n in names])
    if documents:
        first = {s.chunk: s for s in sents if s.position == 0}
        for j, n in enumerate(names):
            if not named[j] and n and chunks[j].title and j in first:
                named[j] = set(n) <= set(memo_terms(first[j].text, stem, memo))
    gain = np.where((hop > p1) & named, hop, 0.0)
    if top and np.count_nonzero(gain) > top:
        best = np.argsort(-gain, kind="stable")[:top]
        gain = np.where(np.isin(np.arange(len(gain)), best), gain, 0.0)
    return np.array([gain[s.chunk] if s.position == 0 else 0.0 for s in sents])


def _rerank_prior(chunks: Sequence[Chunk]) -> list[float] | None:
    """An earlier rerank stage's ``relevance`` scaled to [0, 1] (0 where missing), or ``None`` if no chunk has one."""
    if any(c.relevance is not None for c in chunks):
        return minmax([c.relevance if c.relevance is not None else 0.0 for c in chunks])
    return None


class SentenceExtract(Stage):
    """Keep the highest-scoring whole sentences until the token budget is filled.

    Parameters
    ----------
    model:
        Embedding model for the dense part (``"static"``, ``"minilm"``) or ``None`` for
        lexical scoring only.
    lexical, dense, chunk_prior:
        Weights of sentence BM25, sentence-query cosine and the chunk-level prior (each
        scaled to [0, 1] per question before weighting).
    dense_linked:
        The sentence cosine's weight when the second hop's link is at full strength; ``None``
        (the default) = ``dense`` for every question. The weight used is ``dense + (dense_linked
        - dense) * g``, with ``g`` in [0, 1] the question's largest linked-lead gain (see
        ``link_lead``; 0 when the hop brings no chunk in). The first round, and so the hop
        itself, uses ``dense``.
    chunk_dense:
        Weight of the chunk-query cosine blended into the chunk prior next to the chunk's
        BM25 (a hybrid prior; 0 = BM25 only). The chunk's vector is the mean of its
        sentences' vectors, so nothing more is embedded. Ignored when an earlier stage set
        ``relevance``.
    lead:
        Bonus for the first kept sentence of a chunk (it usually names the entity).
    numeric:
        Bonus for sentences with a digit when the question asks when / how many.
    hops:
        1 = single round; 2 = second round with the query expanded by the best sentences.
    hop_chunks, hop_link:
        Entity links: a chunk gains a prior when sentences of the ``hop_chunks`` best
        chunks mention the entity it is about (its title, else its first capitalized phrase).
    link_steps:
        How many link steps the hop follows: 1 = the links from the ``hop_chunks`` best chunks
        only; each further step follows the links of the chunks the last one brought in (a
        chain of 4 passages takes 3 steps), its strength the reaching chunk's link times the
        name share (a surname alone names a chunk's person in full when no other chunk's name
        has it: :mod:`~optimizer.stages.surnames`), stopping when a step brings no new chunk in
        (:func:`~optimizer.stages.sentence_signals.chained_links`).
    hop_sentences, hop_terms:
        Term expansion (pseudo-relevance feedback): the ``hop_terms`` rarest words of the
        ``hop_sentences`` best sentences score the chunks again (0 turns it off).
    hop_weight:
        Weight of the second hop's chunk prior relative to the first's.
    link_lead:
        The lead sentence of a chunk the second hop brought in (its entity link beats its own
        first-round prior; no other chunk has its name: its title, else the first capitalized
        phrase of its text) gains this much times that link.
        The lead names and defines the bridge entity, where a multi-hop answer usually sits
        (a date, a full name, an office); 0 turns it off.
    paragraphs:
        Score each blank-line separated paragraph of a long chunk as a passage of its own (its
        prior, its lead, its links), then keep the chunk as one (:mod:`optimizer.stages.paragraphs`).
        A paragraph's heading line (``History``, ``## Early life``) titles that passage and is
        printed with whatever of its paragraph is kept, and so is a one-paragraph chunk's first
        line when it reads as a heading (``Title\ntext``, or a Markdown node ``## Install\n\nbody``).
        A fenced code block is a paragraph whose fence lines are printed with any kept line of it.
        Other chunks of one paragraph are unaffected. On in ``default`` and ``quality``. Off, every
        chunk is one passage, but a code block's fence lines are still never sentences of their
        own: they are printed (and counted) with any kept line of its code.
    titled_headings:
        In a chunk with a title of its own (LlamaIndex's wrapper takes ``title``, else
        ``file_name``), what a paragraph's heading line does: ``"joined"`` (default) titles the
        passage ``"<chunk title>: <heading>"``, so a generic section (``Early life``) keeps the
        entity the chunk is about; ``"heading"`` titles it with the heading alone; ``"off"``
        leaves headings as text, a sentence of their own. Untitled chunks always take the heading.
    documents:
        Read chunks that share a title as pieces of one document, as a retriever over split
        documents returns them (an untitled chunk stands alone): a sentence
        never links a piece of its own document; the hop reads every piece of the
        ``hop_chunks`` best documents; and in a shared title, a piece whose first sentence
        names the document counts as a lead for ``link_lead`` and ``dense_linked``. Off
        (``False``), each chunk stands alone and a shared name gets no lead.
    link_chunks:
        How many of those chunks gain: the ``link_chunks`` best-linked (0 = all of them). One
        keeps the budget on "the" passage the hop reaches instead of every passage it touches.
    density:
        Greedy value is ``score / tokens ** density`` (0: by score; 1: per token), the
        cost-scaled greedy of budgeted maximization (Khuller, Moss & Naor 1999; Lin &
        Bilmes 2010 use the same ``cost ** r``).
    tight_sentences:
        When > 0, the budget counts as tight while it holds at most this many sentences of
        average length, and ``density`` and ``redundancy`` apply in full only then. With room
        for ``k`` sentences, ``density`` shrinks as ``(tight_sentences / k) ** 2`` and
        ``redundancy`` as ``tight_sentences / k``: packing short sentences and spreading
        over chunks matter when only a few sentences fit; with room for many, the best
        ones fit anyway and whole passages read better than scattered sentences.
    neighbours:
        A sentence within this many positions of a better one inherits
        ``neighbour_weight`` times that score, when higher than its own.
    redundancy:
        Each sentence picked from a chunk lowers the value of that chunk's other sentences
        by this much, so the budget spreads over chunks (a sentence-level MMR).
    lead_follow:
        Once a sentence of a chunk is taken, that chunk's lead sentence gains this much
        (it usually names the entity the taken sentence talks about).
    coverage:
        Query coverage: a sentence gains this much times the share (rarity-weighted) of the
        query's words it mentions, title included, that no taken sentence mentions yet. A
        question naming two things ("X or Y?") then gets both covered before a third
        sentence about X (diminishing returns, as in submodular summarization: Lin & Bilmes,
        *A Class of Submodular Functions for Document Summarization*, ACL 2011).
    stem:
        Truncate words to this many characters for lexical matching ("directed" and
        "director" meet at 6); 0 turns it off. Identifiers are not truncated: a word with a
        digit or an underscore stays whole, a camelCase word is read as its stem and whole
        (``invoice 40031871`` is not ``40031877``, ``getUserById`` not ``getUserSettings``).
    ratio:
        Share of tokens to keep when the run has no budget.
    fill:
        Share of the budget to aim for (the packer enforces the hard limit anyway).
    use_title:
        Prefix each sentence with its chunk's title for scoring.
    order:
        ``"relevance"`` (best chunk first, the other kept chunks of its title right after it,
        so each title prints once and the budget pays for it once) or ``"document"`` (input order).
    scorer:
        ``"weighted"``: the hand-weighted fusion above (``lexical`` ... ``neighbours``);
        ``"fitted"``: a learned conditional logit over
        :mod:`~optimizer.stages.sentence_features` (``weights``); the embedders come from the
        weights file and ``model``, ``lexical`` ... ``neighbours`` are then unused.
    weights:
        The fitted scorer: a shipped name (``"default"``, ``"quality"``) or a scorer JSON path
        (``bench/fit_scorer.py`` writes them).
    coverage_mode:
        ``"add"``: the coverage bonus is added to the score; ``"scale"``: the score is
        multiplied by ``1 + bonus`` (what the fitted scorer's relative probabilities need).
    retriever:
        How to read the retriever's ``Chunk.score`` (used by the fitted scorer's retriever
        model and the hand-weighted chunk prior). ``"auto"``: when chunks carry scores, a
        distance (lower is better) if they rise along the order the chunks were handed to the
        run, else a similarity (decided once per run, for every step); ``"similarity"`` /
        ``"distance"``: say which, and the pipeline's other steps and packer read the scores so
        too; ``"order"``: as auto, and without scores the given order is read as the
        retriever's ranking; ``"ignore"``: never look (the other steps still rank by the scores,
        read as with ``"auto"``).
    retriever_weight:
        Hand-weighted scorer: weight of the retriever's min-max scaled score in the chunk
        prior, next to BM25's 1 and the cosine's ``chunk_dense`` (0 turns it off).
    candidates:
        When more chunks than this arrive (0: never), only this many, the best by BM25 plus
        the retriever's score (or an earlier rerank's ``relevance``), are split into sentences
        and scored; the others are dropped with a reason in the trace. Keeps the cost of
        long retrieved lists near one BM25 pass. With a budget, the next best chunks join them
        while the candidates' own tokens do not reach it (every chunk when all fit, as at
        ``budget=1.0``), so the cut never leaves room that more chunks would fill.
    """

    name = "compress-sentences"

    def __init__(
        self,
        *,
        model: str | None = "static",
        lexical: float = 1.0,
        dense: float = 1.0,
        chunk_prior: float = 1.5,
        chunk_dense: float = 0.0,
        lead: float = 0.3,
        numeric: float = 0.1,
        hops: int = 2,
        hop_chunks: int = 3,
        hop_link: bool = True,
        link_steps: int = 1,
        hop_sentences: int = 2,
        hop_terms: int = 0,
        hop_weight: float = 1.0,
        density: float = 0.0,
        tight_sentences: int = 0,
        neighbours: int = 0,
        neighbour_weight: float = 0.5,
        redundancy: float = 0.3,
        lead_follow: float = 0.0,
        coverage: float = 0.0,
        stem: int = 0,
        ratio: float = 0.5,
        fill: float = 1.0,
        use_title: bool = True,
        order: str = "relevance",
        scorer: str = "weighted",
        weights: str = "default",
        retriever: str = "auto",
        coverage_mode: str = "add",
        retriever_weight: float = 1.0,
        candidates: int = 0,
        link_lead: float = 0.0,
        link_chunks: int = 0,
        dense_linked: float | None = None,
        documents: bool = False,
        paragraphs: bool = False,
        titled_headings: str = "joined",
    ) -> None:
        _check_settings(model=model, hops=hops, order=order, ratio=ratio, fill=fill, scorer=scorer,
                        coverage_mode=coverage_mode, retriever=retriever, neighbours=neighbours)
        self.model = model
        self.lexical = lexical
        self.dense = dense
        self.chunk_prior = chunk_prior
        self.chunk_dense = chunk_dense
        self.lead = lead
        self.numeric = numeric
        self.hops = hops
        self.hop_chunks = hop_chunks
        self.hop_link = hop_link
        if isinstance(link_steps, bool) or not isinstance(link_steps, int) or link_steps < 1:
            raise ValueError(f"sentences: link_steps must be a whole number >= 1 (1 = the second hop's links only), got {link_steps!r}")
        self.link_steps = link_steps
        self.hop_sentences = hop_sentences
        self.hop_terms = hop_terms
        self.hop_weight = hop_weight
        self.density = density
        self.tight_sentences = tight_sentences
        self.neighbours = neighbours
        self.neighbour_weight = neighbour_weight
        self.redundancy = redundancy
        self.lead_follow = lead_follow
        self.coverage = coverage
        self.stem = stem
        self.ratio = ratio
        self.fill = fill
        self.use_title = use_title
        self.order = order
        self.scorer = scorer
        self.weights = str(weights) if isinstance(weights, Path) else weights
        self.retriever = retriever
        self.coverage_mode = coverage_mode
        self.retriever_weight = retriever_weight
        if not isinstance(candidates, int) or candidates < 0:
            raise ValueError(f"sentences: candidates must be a whole number >= 0 (0 = score every chunk), got {candidates!r}")
        self.candidates = candidates
        if isinstance(link_lead, bool) or not isinstance(link_lead, (int, float)) or link_lead < 0:
            raise ValueError(f"sentences: link_lead must be a number >= 0 (0 = off), got {link_lead!r}")
        self.link_lead = link_lead
        if isinstance(link_chunks, bool) or not isinstance(link_chunks, int) or link_chunks < 0:
            raise ValueError(f"sentences: link_chunks must be a whole number >= 0 (0 = every chunk the hop brings in), got {link_chunks!r}")
        self.link_chunks = link_chunks
        if dense_linked is not None and (isinstance(dense_linked, bool) or not isinstance(dense_linked, (int, float)) or dense_linked < 0):
            raise ValueError(f"sentences: dense_linked must be None (= dense) or a number >= 0, got {dense_linked!r}")
        self.dense_linked = dense_linked
        if not isinstance(documents, bool):
            raise ValueError(f"sentences: documents must be true or false, got {documents!r}")
        self.documents = documents
        if not isinstance(paragraphs, bool):
            raise ValueError(f"sentences: paragraphs must be true or false, got {paragraphs!r}")
        self.paragraphs = paragraphs
        if titled_headings not in TITLED:
            raise ValueError(f"sentences: titled_headings must be one of {', '.join(TITLED)}, got {titled_headings!r}")
        self.titled_headings = titled_headings
        _check_kinds(self)
        self.fitted: FittedScorer | None = load_scorer(weights) if scorer == "fitted" else None

    def warm_up(self) -> None:
        if self.fitted is not None:
            for name in (self.fitted.static, self.fitted.dense):
                if name is not None:
                    get_embedder(name, build=True)
        elif self.model is not None:
            get_embedder(self.model, build=True)

    @property
    def selector(self) -> SentenceSelector:
        """The budgeted, coverage-aware greedy this stage chooses with."""
        return SentenceSelector(
            density=self.density, tight_sentences=self.tight_sentences, redundancy=self.redundancy,
            lead_follow=self.lead_follow, coverage=self.coverage, ratio=self.ratio, fill=self.fill,
            order=self.order, stem=self.stem, use_title=self.use_title, coverage_mode=self.coverage_mode,
        )

    # -- the hand-weighted scorer ---------------------------------------------------------
    def _terms(self, text: str) -> list[str]:
        return terms(text, self.stem)

    def _expansion(self, query: str, sents: list[Sentence], bridge: np.ndarray) -> list[str]:
        """Salient terms of the best "bridge" sentences that the query does not already have.

        Words of capitalized phrases (entities) count double; each word is weighted by its
        rarity among this call's sentences and by its sentence's rank. The ``hop_terms`` best
        words come back as their terms (:func:`word_terms`, as the chunks' terms read them).
        """
        top = [int(i) for i in np.argsort(-bridge, kind="stable")[: self.hop_sentences]]
        qwords = set(content_words(query))
        df: Counter[str] = Counter()
        for s in sents:
            df.update(set(content_words(s.text)))
        n = len(sents)
        weights: dict[str, float] = {}
        read: dict[str, tuple[str, ...]] = {}  # each word's terms (camelCase in any sentence adds the whole word)
        for i in top:
            s = sents[i]
            entity_words = {w for ent in entities(s.text) for w in content_words(ent)}
            for w, found in word_terms(s.text, self.stem):
                if w in qwords or len(w) < 2 or w.isdigit():
                    continue
                idf = math.log(1 + n / (1 + df[w]))
                value = idf * (2.0 if w in entity_words else 1.0)
                weights[w] = max(weights.get(w, 0.0), value)
                read[w] = max(read.get(w, ()), found, key=len)
        best = sorted(weights, key=lambda w: (-weights[w], w))[: self.hop_terms]
        return [t for w in best for t in read[w]]

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> tuple[list[Sentence], np.ndarray]:
        """Every sentence of ``chunks`` and its score (fitted or hand-weighted, per ``scorer``)."""
        sents = split_chunks(chunks, context)
        if not sents:
            return sents, np.zeros(0)
        if self.fitted is not None:
            features = sentence_features(
                query, chunks, sents, context, static=self.fitted.static, dense=self.fitted.dense,
                retriever=self.retriever, hop_chunks=self.hop_chunks, stem=self.stem, use_title=self.use_title,
            )
            return sents, self.fitted.score(features)
        return sents, self._weighted(query, chunks, sents, context)

    def _chunk_prior(
        self, lexical: list[float], cos: list[float] | None, chunks: Sequence[Chunk], context: StageContext
    ) -> list[float]:
        """Each chunk's prior in [0, 1]: its BM25, plus its embedding cosine, plus the retriever's score.

        Each signal is min-max scaled per question, weighted (BM25 1, cosine ``chunk_dense``,
        retriever ``retriever_weight``), summed and scaled again. The retriever's score counts
        when chunks carry ``Chunk.score`` and ``retriever`` is not ``"ignore"`` (a chunk
        without one gets the lowest); with ``retriever="order"`` and no scores, the given
        order is read as the retriever's ranking. Without a retriever signal this is the
        hybrid prior of before, unchanged.
        """
        prior = minmax(lexical)
        if cos is not None:
            prior = minmax([b + self.chunk_dense * c for b, c in zip(prior, minmax(cos))])
        retrieved = retriever_signal(chunks, self.retriever, context)
        if retrieved is not None and self.retriever_weight:
            prior = minmax([p + self.retriever_weight * r for p, r in zip(prior, minmax(retrieved))])
        return prior

    def _weighted(self, query: str, chunks: Sequence[Chunk], sents: list[Sentence], context: StageContext) -> np.ndarray:
        """The hand-weighted fusion (the module docstring's recipe; the pre-fit ``default``)."""
        texts = titled(sents, chunks, self.use_title)
        memo = terms_memo(context, self.stem)
        sent_terms = titled_terms(sents, chunks, texts, self.stem, memo, context)
        chunk_terms = chunk_term_lists(chunks, sents, sent_terms, use_title=self.use_title, stem=self.stem, memo=memo)
        prior = _rerank_prior(chunks)
        sent_vecs = qvec = None
        embedder = None
        if self.model is not None and (self.dense or self.dense_linked):
            embedder = get_embedder(self.model)
            vecs = embed_texts(embedder, [query, *texts], context)
            qvec, sent_vecs = vecs[0], vecs[1:]
        q = self._terms(query)
        chunk_of = np.array([s.chunk for s in sents])
        base = np.zeros(len(sents))
        if self.lexical:
            base += self.lexical * np.array(minmax(bm25_plus_scores(q, sent_terms)))
        cosine = np.zeros(len(sents))
        if sent_vecs is not None and qvec is not None:
            cosine = np.array(minmax([float(x) for x in sent_vecs @ qvec]))
            base += self.dense * cosine
        if self.lead:
            base += self.lead * np.array([1.0 if s.position == 0 else 0.0 for s in sents])
        if self.numeric and NUMERIC_QUESTION.search(query):
            base += self.numeric * np.array([1.0 if has_number(s.text) else 0.0 for s in sents])
        if prior is None:
            cos = None
            if self.chunk_dense and embedder is not None and qvec is not None and sent_vecs is not None:
                cos = chunk_cosines(chunk_of, sent_vecs, qvec, len(chunks))
            prior = self._chunk_prior(bm25_plus_scores(q, chunk_terms), cos, chunks, context)
        p1 = np.array(prior)
        score = base + self.chunk_prior * p1[chunk_of]
        context.check_deadline("scoring sentences")
        if self.hops == 2 and self.hop_weight:
            link = np.zeros(len(chunks))
            if self.hop_link:
                link = np.maximum(link, chained_links(sents, chunks, p1, score, hop_chunks=self.hop_chunks, steps=self.link_steps,
                                                      scale=self.hop_weight, stem=self.stem, memo=memo, documents=self.documents))
            if self.hop_terms:
                e = self._expansion(query, sents, score)
                if e:
                    link = np.maximum(link, np.array(minmax(bm25_plus_scores(e, chunk_terms))))
            hop = self.hop_weight * link
            score = base + self.chunk_prior * np.maximum(p1, hop)[chunk_of]
            if self.link_lead or self.dense_linked is not None:
                gain = _linked_leads(chunks, sents, p1, hop, self.stem, memo, self.link_chunks, self.documents)
                score = score + self.link_lead * gain
                if self.dense_linked is not None and len(gain):
                    # the question leans on a second-hop link: move the cosine's weight toward dense_linked
                    score = score + (self.dense_linked - self.dense) * min(1.0, float(gain.max())) * cosine
        if self.neighbours:
            boosted = score.copy()
            for i, s in enumerate(sents):
                for j in range(max(0, i - self.neighbours), min(len(sents), i + self.neighbours + 1)):
                    if j != i and sents[j].chunk == s.chunk:
                        boosted[i] = max(boosted[i], self.neighbour_weight * score[j])
            score = boosted
        return score

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        if not chunks:
            return StageOutput([])
        found = find_furniture(chunks, context.check_deadline)  # this call's page headers, footers and menus
        if not found:
            return self._paragraphs(query, chunks, context, {})
        cut = copies(chunks, found)  # a footer's text stays once, never a heading
        return with_reasons(self._paragraphs(query, strip_furniture(chunks, cut), context, found), cut)

    def _paragraphs(self, query: str, chunks: Sequence[Chunk], context: StageContext, furniture: Mapping[str, Sequence[tuple[int, int]]]) -> StageOutput:
        """Sentences from ``chunks`` read paragraph by paragraph (:class:`ParagraphViews`), none headed by a ``furniture`` line."""
        split = ParagraphViews(chunks, self.titled_headings, split=self.paragraphs, skip=furniture)  # unsplit: code blocks keep their fences
        if split.views is not None:
            return split.merge(self._extract(query, split.views, split.context(context)), grouped=self.order == "relevance", context=context)
        return self._extract(query, chunks, context)

    def _extract(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        if self.candidates and len(chunks) > self.candidates:
            keep = set(self._candidate_indices(query, chunks, context))
            if len(keep) < len(chunks):
                return self._from_candidates(query, chunks, context, keep)
        return self._select(query, chunks, context)

    def _select(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        """Score every sentence of ``chunks`` and let the selector choose."""
        sents, score = self.scores(query, chunks, context)
        if not sents:
            return StageOutput([c for c in chunks if c.text.strip()])
        context.check_deadline("before choosing sentences")
        return self.selector(query, chunks, sents, score, context)

    def _from_candidates(self, query: str, chunks: Sequence[Chunk], context: StageContext, keep: set[int]) -> StageOutput:
        """Sentences from the chunks at indices ``keep`` only (:meth:`_candidate_indices`); the rest dropped with a reason.

        The chunks are ranked by the cheap part of the chunk prior (BM25, plus the retriever's
        score when they carry one, or an earlier rerank stage's ``relevance``), so a long list
        costs one BM25 pass over whole chunks instead of scoring every sentence.
        """
        picked = [c for i, c in enumerate(chunks) if i in keep]
        inner = self._select(query, picked, context) if picked else StageOutput([])
        out = inner if isinstance(inner, StageOutput) else StageOutput(list(inner))
        by = "an earlier rerank's relevance" if _rerank_prior(chunks) is not None else "BM25 and the retriever's score"
        reason = f"sentences: not among the {len(picked)} best of {len(chunks)} chunks by {by}"
        reasons = {**{c.id: reason for i, c in enumerate(chunks) if i not in keep}, **out.reasons}
        return StageOutput(out.chunks, reasons=reasons, notes={**out.notes, "candidates": len(picked), "chunks_in": len(chunks)},
                           range_reasons=out.range_reasons)

    def _candidate_indices(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[int]:
        """Indices of the ``candidates`` best chunks (ties: the earlier given), and after them the next best
        while the chosen ones' tokens stay within the budget: with room for more text than the
        ``candidates`` best hold, the cut would leave it empty (with room for all, every chunk comes).
        """
        prior = _rerank_prior(chunks)
        if prior is None:
            memo = terms_memo(context, self.stem)
            texts = chunk_texts(chunks, use_title=self.use_title)
            prior = self._chunk_prior(bm25_plus_scores(self._terms(query), checked_terms(texts, self.stem, memo, context, "chunks")),
                                      None, chunks, context)
        ranked = [int(i) for i in np.argsort(-np.array(prior), kind="stable")]
        if context.budget is None:
            return ranked[: self.candidates]
        held = 0
        for n, i in enumerate(ranked):
            held += context.count(chunks[i].text)
            if held > context.budget:  # the first n + 1 hold more than the budget: enough to choose from
                return ranked[: max(self.candidates, n + 1)]
        return ranked
