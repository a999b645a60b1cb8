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

Sentences are then picked greedily until the budget (``context.budget`` minus the
renderer's overhead) is filled. The greedy has diminishing returns: a sentence from a
chunk already used is worth a little less (``redundancy``), and query words a taken
sentence already mentions stop earning a bonus (``coverage``), so "X or Y?" gets both X
and Y. When only a few sentences fit, value is scaled per token (``density``) so that two
short sentences can beat one long one; both that and the spreading fade as the budget
grows (``tight_sentences``). Kept sentences stay in document order inside their
chunk, and the chunk's ``relevance`` is its best sentence's score, so the packer keeps the
best first.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> chunks = [Chunk(id="a", title="Paris", text="Paris is the capital of France. It has many museums. The Seine crosses it.")]
>>> out = SentenceExtract(model=None)("What is the capital of France?", chunks, StageContext.default(budget=12))
>>> out[0].text, out[0].pieces
('Paris is the capital of France.', ((0, 31),))
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optimizer.embeddings import EMBEDDERS, embed_texts, get_embedder
from optimizer.records import Chunk
from optimizer.sentences import split_sentences
from optimizer.stage import Stage, StageContext, StageOutput
from optimizer.stages.rerank import minmax
from optimizer.text import content_words, entities, has_number

# Questions that ask for a number or a date.
_NUMERIC_QUESTION = re.compile(
    r"^\s*(when|what year|which year|in what year|how (many|much|old|long|far|tall|big|large|high))\b"
    r"|\b(what|which) (year|date|decade|century)\b|\bhow (many|much)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Sentence:
    chunk: int  # index into the chunk list
    start: int  # offsets in the chunk's original text
    end: int
    text: str
    position: int  # sentence number inside the chunk's kept text
    tokens: int


def _bm25(query_terms: list[str], docs: list[list[str]]) -> list[float]:
    from rank_bm25 import BM25Plus

    if not docs or not query_terms:
        return [0.0] * len(docs)
    return [float(s) for s in BM25Plus([d or ["\u2205"] for d in docs]).get_scores(query_terms)]


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
    hop_sentences, hop_terms:
        Term expansion (pseudo-relevance feedback): the ``hop_terms`` rarest words of the
        ``hop_sentences`` best sentences score the chunks again (0 turns it off).
    hop_weight:
        Weight of the second hop's chunk prior relative to the first's.
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
        "director" meet at 6); 0 turns it off.
    ratio:
        Share of tokens to keep when the run has no budget.
    fill:
        Share of the budget to aim for (the packer enforces the hard limit anyway).
    use_title:
        Prefix each sentence with its chunk's title for scoring.
    order:
        ``"relevance"`` (best chunk first) or ``"document"`` (input order).
    """

    name = "sentences"

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
    ) -> None:
        if model is not None and model not in EMBEDDERS:
            raise ValueError(f"sentences: model must be None or one of {', '.join(EMBEDDERS)}, got {model!r}")
        if hops not in (1, 2):
            raise ValueError(f"sentences: hops must be 1 or 2, got {hops!r}")
        if order not in ("relevance", "document"):
            raise ValueError(f"sentences: order must be 'relevance' or 'document', got {order!r}")
        for pname, value in (("ratio", ratio), ("fill", fill)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"sentences: {pname} must be a number in (0, 1], got {value!r}")
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 0:
            raise ValueError(f"sentences: neighbours must be a non-negative integer, got {neighbours!r}")
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

    def warm_up(self) -> None:
        if self.model is not None:
            get_embedder(self.model, build=True)

    # -- scoring --------------------------------------------------------------------------
    def _sentences(self, chunks: Sequence[Chunk], context: StageContext) -> list[_Sentence]:
        out: list[_Sentence] = []
        for ci, c in enumerate(chunks):
            original = c.original_text
            position = 0
            for ps, pe in c.kept_pieces:  # split each kept piece; offsets stay in original coordinates
                for s, e in split_sentences(original[ps:pe]):
                    text = original[ps + s : ps + e]
                    out.append(_Sentence(ci, ps + s, ps + e, text, position, context.count(text)))
                    position += 1
        return out

    def _round(
        self,
        query: str,
        sents: list[_Sentence],
        sent_terms: list[list[str]],
        chunk_terms: list[list[str]],
        sent_vecs: np.ndarray | None,
        qvec: np.ndarray | None,
        prior: list[float] | None,
    ) -> np.ndarray:
        q = content_words(query)
        score = np.zeros(len(sents))
        if self.lexical:
            score += self.lexical * np.array(minmax(_bm25(q, sent_terms)))
        if self.chunk_prior:
            chunk_scores = prior if prior is not None else minmax(_bm25(q, chunk_terms))
            score += self.chunk_prior * np.array([chunk_scores[s.chunk] for s in sents])
        if self.dense and sent_vecs is not None and qvec is not None:
            score += self.dense * np.array(minmax([float(x) for x in sent_vecs @ qvec]))
        return score

    def _entity_links(self, sents: list[_Sentence], chunks: Sequence[Chunk], p1: np.ndarray, score: np.ndarray) -> np.ndarray:
        """How strongly the first hop's sentences mention the entity each chunk is about.

        A chunk is about its title (else the first capitalized phrase of its text); a
        mention counts inside a capitalized phrase of the sentence. For each
        sentence of the ``hop_chunks`` best chunks, the share of that name's words (weighted
        by rarity across chunks) it contains, times the sentence's first-round score scaled
        to [0, 1]; a chunk's link is the best such value from another chunk's sentence.
        """
        hop = set(int(i) for i in np.argsort(-p1, kind="stable")[: self.hop_chunks])
        df: Counter[str] = Counter()
        names: list[list[str]] = []
        for c in chunks:
            words_c = set(self._terms(f"{c.title}. {c.text}" if c.title else c.text))
            df.update(words_c)
            name = c.title if c.title else next(iter(entities(c.text)), "")
            names.append(list(dict.fromkeys(self._terms(name))))
        n = len(chunks)
        idf = {w: math.log(1 + n / (1 + df[w])) for w in df}
        weight = np.array(minmax(list(score)))
        # a mention of a named entity is capitalized ("comedy" in a sentence is not the chunk "Comedy");
        # names in scripts without case (CJK, ...) match plain words
        bridges = [
            (i, {w for ent in entities(s.text) for w in self._terms(ent)}, set(self._terms(s.text)))
            for i, s in enumerate(sents)
            if s.chunk in hop
        ]
        cased = [any(ch.isupper() for ch in (c.title if c.title else c.text)) for c in chunks]
        link = np.zeros(n)
        for j, name in enumerate(names):
            total = sum(idf.get(w, 0.0) for w in name)
            if total <= 0:
                continue
            for i, mentioned, plain in bridges:
                words_i = mentioned if cased[j] else plain
                if sents[i].chunk == j:
                    continue
                share = sum(idf.get(w, 0.0) for w in name if w in words_i) / total
                link[j] = max(link[j], weight[i] * share)
        return link

    def _terms(self, text: str) -> list[str]:
        """Content words, truncated to ``stem`` characters when set (truncation stemming)."""
        if self.stem:
            return [w[: self.stem] for w in content_words(text)]
        return content_words(text)

    def _expansion(self, query: str, sents: list[_Sentence], chunks: Sequence[Chunk], bridge: np.ndarray) -> list[str]:
        """Salient terms of the best "bridge" sentences that the query does not already have.

        Words of capitalized phrases (entities) count double; each word is weighted by its
        rarity among this call's sentences and by its sentence's rank.
        """
        top = [int(i) for i in np.argsort(-bridge, kind="stable")[: self.hop_sentences]]
        qwords = set(content_words(query))
        df: Counter[str] = Counter()
        for s in sents:
            df.update(set(content_words(s.text)))
        n = len(sents)
        weights: dict[str, float] = {}
        for i in top:
            s = sents[i]
            entity_words = {w for ent in entities(s.text) for w in content_words(ent)}
            for w in content_words(s.text):
                if w in qwords or len(w) < 2 or w.isdigit():
                    continue
                idf = math.log(1 + n / (1 + df[w]))
                value = idf * (2.0 if w in entity_words else 1.0)
                weights[w] = max(weights.get(w, 0.0), value)
        return sorted(weights, key=lambda w: (-weights[w], w))[: self.hop_terms]

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> tuple[list[_Sentence], np.ndarray]:
        """Every sentence of ``chunks`` and its fused score."""
        sents = self._sentences(chunks, context)
        if not sents:
            return sents, np.zeros(0)
        titled = [f"{chunks[s.chunk].title}. {s.text}" if self.use_title and chunks[s.chunk].title else s.text for s in sents]
        sent_terms = [self._terms(t) for t in titled]
        chunk_terms = [self._terms(f"{c.title}. {c.text}" if self.use_title and c.title else c.text) for c in chunks]
        prior = None
        if any(c.relevance is not None for c in chunks):
            prior = minmax([c.relevance if c.relevance is not None else 0.0 for c in chunks])
        sent_vecs = qvec = None
        embedder = None
        if self.model is not None and self.dense:
            embedder = get_embedder(self.model)
            vecs = embed_texts(embedder, [query, *titled], context)
            qvec, sent_vecs = vecs[0], vecs[1:]
        q = self._terms(query)
        chunk_of = np.array([s.chunk for s in sents])
        base = np.zeros(len(sents))
        if self.lexical:
            base += self.lexical * np.array(minmax(_bm25(q, sent_terms)))
        if sent_vecs is not None and qvec is not None:
            base += self.dense * np.array(minmax([float(x) for x in sent_vecs @ qvec]))
        if self.lead:
            base += self.lead * np.array([1.0 if s.position == 0 else 0.0 for s in sents])
        if self.numeric and _NUMERIC_QUESTION.search(query):
            base += self.numeric * np.array([1.0 if has_number(s.text) else 0.0 for s in sents])
        if prior is None:
            prior = minmax(_bm25(q, chunk_terms))
            if self.chunk_dense and embedder is not None and qvec is not None:
                cos = minmax(_chunk_cosines(chunk_of, sent_vecs, qvec, len(chunks)))
                prior = minmax([b + self.chunk_dense * c for b, c in zip(prior, cos)])
        p1 = np.array(prior)
        score = base + self.chunk_prior * p1[chunk_of]
        if self.hops == 2 and self.hop_weight:
            link = np.zeros(len(chunks))
            if self.hop_link:
                link = np.maximum(link, self._entity_links(sents, chunks, p1, score))
            if self.hop_terms:
                e = [w[: self.stem] if self.stem else w for w in self._expansion(query, sents, chunks, score)]
                if e:
                    link = np.maximum(link, np.array(minmax(_bm25(e, chunk_terms))))
            score = base + self.chunk_prior * np.maximum(p1, self.hop_weight * link)[chunk_of]
        if self.neighbours:
            boosted = score.copy()
            for i, s in enumerate(sents):
                for j in range(max(0, i - self.neighbours), min(len(sents), i + self.neighbours + 1)):
                    if j != i and sents[j].chunk == s.chunk:
                        boosted[i] = max(boosted[i], self.neighbour_weight * score[j])
            score = boosted
        return sents, score

    # -- selection ------------------------------------------------------------------------
    def _room(self, sents: list[_Sentence], target: int) -> float:
        """How many sentences of average length the budget holds."""
        return max(target, 1) / max(1.0, sum(s.tokens for s in sents) / len(sents))

    def _tight(self, sents: list[_Sentence], target: int, power: int) -> float:
        """``(tight_sentences / room) ** power``, at most 1 (1 when ``tight_sentences`` is 0)."""
        if not self.tight_sentences or not sents:
            return 1.0
        return min(1.0, (self.tight_sentences / self._room(sents, target)) ** power)

    def _query_words(self, query: str, chunks: Sequence[Chunk], sents: list[_Sentence]) -> tuple[np.ndarray, np.ndarray]:
        """Which query words each sentence mentions (title included), and each word's weight.

        A word weighs by its rarity across the chunks (IDF); words no sentence mentions
        weigh nothing (nothing can cover them). Weights sum to 1.
        """
        words = list(dict.fromkeys(self._terms(query)))
        if not words or not sents:
            return np.zeros((len(sents), 0), dtype=bool), np.zeros(0)
        titled = [f"{chunks[s.chunk].title}. {s.text}" if self.use_title and chunks[s.chunk].title else s.text for s in sents]
        present = np.array([[w in ts for w in words] for ts in (set(self._terms(t)) for t in titled)], dtype=bool)
        chunk_of = np.array([s.chunk for s in sents])
        df = np.array([len(set(chunk_of[present[:, k]])) for k in range(len(words))])
        weight = np.where(df > 0, np.log1p(len(chunks) / (1.0 + df)), 0.0)
        total = weight.sum()
        return present, (weight / total if total > 0 else weight)

    def _greedy(  # type: ignore[no-untyped-def]
        self,
        sents: list[_Sentence],
        value: np.ndarray,
        mentions: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        redundancy: float | None = None,
    ):
        """Sentence indices, best first, updated as sentences are taken.

        Taking a sentence lowers the value of its chunk's other sentences by ``redundancy``
        and, the first time, raises that chunk's lead sentence by ``lead_follow``; with
        ``coverage``, the query words it mentions stop earning a bonus for the others.
        """
        cover = self.coverage and mentions is not None and weight is not None and mentions.shape[1] > 0
        redundancy = self.redundancy if redundancy is None else redundancy
        if not redundancy and not self.lead_follow and not cover:
            yield from sorted(range(len(sents)), key=lambda i: (-value[i], i))
            return
        chunk_of = np.array([s.chunk for s in sents])
        lead_of = {}
        for i, s in enumerate(sents):
            lead_of.setdefault(s.chunk, i)
        current = value.astype(float).copy()
        left = np.ones(len(sents), dtype=bool)
        touched: set[int] = set()
        open_words = np.ones(mentions.shape[1]) if cover else None
        while left.any():
            total = current + self.coverage * (mentions @ (weight * open_words)) if cover else current
            i = int(np.argmax(np.where(left, total, -np.inf)))
            left[i] = False
            yield i
            c = sents[i].chunk
            if redundancy:
                current[chunk_of == c] -= redundancy
            if self.lead_follow and c not in touched:
                current[lead_of[c]] += self.lead_follow
            if cover:
                open_words[mentions[i]] = 0.0
            touched.add(c)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        if not chunks:
            return StageOutput([])
        sents, score = self.scores(query, chunks, context)
        if not sents:
            return StageOutput([c for c in chunks if c.text.strip()])
        total = sum(s.tokens for s in sents)
        if context.budget is None:
            target = max(1, int(total * self.ratio))
        else:
            target = int(context.budget * self.fill)
        density = self.density * self._tight(sents, target, 2)
        value = score / np.power(np.array([max(1, s.tokens) for s in sents], dtype=float), density)
        ranked = sorted(range(len(sents)), key=lambda i: (-value[i], i))
        chosen: dict[int, list[int]] = {}
        chunk_order: list[int] = []
        used = 0
        overhead = 0
        mentions, weight = self._query_words(query, chunks, sents) if self.coverage else (None, None)
        redundancy = self.redundancy * self._tight(sents, target, 1)
        for i in self._greedy(sents, value, mentions, weight, redundancy):
            s = sents[i]
            extra_head = 0
            if s.chunk not in chosen:
                heads = [chunks[c] for c in chunk_order] + [chunks[s.chunk]]
                extra_head = context.overhead(heads) - overhead
            cost = s.tokens + (1 if s.chunk in chosen else 0) + extra_head
            if used + cost > target:
                continue
            if s.chunk not in chosen:
                chosen[s.chunk] = []
                chunk_order.append(s.chunk)
                overhead += extra_head
            chosen[s.chunk].append(i)
            used += cost
        if not chosen:  # nothing fits whole: give the packer the best sentence to cut
            best = ranked[0]
            chosen[sents[best].chunk] = [best]
            chunk_order.append(sents[best].chunk)
        out: list[Chunk] = []
        best_score: dict[int, float] = {}
        for ci in chunk_order:
            picks = sorted(chosen[ci], key=lambda i: sents[i].start)
            kept = chunks[ci].keep([(sents[i].start, sents[i].end) for i in picks])
            best_score[ci] = float(max(score[i] for i in picks))
            out.append(_with_relevance(kept, best_score[ci]))
        if self.order == "document":
            order = sorted(range(len(chunk_order)), key=lambda k: chunk_order[k])
        else:
            order = sorted(range(len(chunk_order)), key=lambda k: (-best_score[chunk_order[k]], chunk_order[k]))
        out = [out[k] for k in order]
        reasons = {
            c.id: "sentences: no sentence among the best within the budget"
            for ci, c in enumerate(chunks)
            if ci not in chosen and c.text.strip()
        }
        for ci in chosen:
            if len(chosen[ci]) < sum(1 for s in sents if s.chunk == ci):
                reasons[chunks[ci].id] = "sentences: lower-scoring sentences left out for the budget"
        notes = {"sentences_in": len(sents), "sentences_kept": sum(len(v) for v in chosen.values()), "target_tokens": target}
        return StageOutput(out, reasons=reasons, notes=notes)


def _chunk_cosines(chunk_of: np.ndarray, sent_vecs: np.ndarray, qvec: np.ndarray, n: int) -> list[float]:
    """Cosine of each chunk's mean sentence vector to the query (0 for a chunk without sentences)."""
    out = [0.0] * n
    for c in range(n):
        rows = sent_vecs[chunk_of == c]
        if len(rows):
            mean = rows.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            out[c] = float(mean @ qvec) / norm if norm > 0 else 0.0
    return out


def _with_relevance(chunk: Chunk, relevance: float) -> Chunk:
    from dataclasses import replace

    return replace(chunk, relevance=relevance)
