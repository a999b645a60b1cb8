"""The budget packer: choose what fits, cut what does not, and prove the fit on the rendered text.

Chunks are taken in priority order (``relevance``, else the caller's ``score`` as the run reads
it, best first: a distance, lower is better, when the scores rise along the given order
(:mod:`optimizer.score_reading`); a chunk without a score counts as the worst given one; ties,
and chunks when none has a score, keep their list order) and rendered in list order, so an
earlier ordering stage decides the layout. A chunk larger than what is left is cut at a
sentence boundary, else at a token boundary; every cut and drop is recorded. The final
rendered text is counted with the target tokenizer and shrunk until it fits: the budget is
never exceeded, titles, markers and separators included.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace

from optimizer.records import Chunk, Drop
from optimizer.render import Rendered, Renderer, is_blank, visible
from optimizer.sentences import code_blocks, sentences_and_wrapped_lines, strip_range
from optimizer.stage import StageContext
from optimizer.tokenizer import grapheme_floor, within_graphemes

# A token-boundary fragment shorter than this is not worth its header, unless nothing else fits.
MIN_FRAGMENT_TOKENS = 12

BLANK_REASON = "blank: the chunk has no text (empty or white space only), nothing to render"


@dataclass(frozen=True)
class Packed:
    chunks: tuple[Chunk, ...]  # in rendered order
    rendered: Rendered
    tokens: int
    dropped: tuple[Drop, ...]
    cuts: int


def priority_order(chunks: Sequence[Chunk], context: StageContext) -> list[int]:
    """Indices of ``chunks`` from most to least important (:meth:`StageContext.relevances`)."""
    if all(c.relevance is None and c.score is None for c in chunks):
        return list(range(len(chunks)))
    rel = context.relevances(chunks)
    return sorted(range(len(chunks)), key=lambda i: (-rel[i], i))


def cut_to_tokens(chunk: Chunk, max_tokens: int, context: StageContext, *, min_token_cut: int = 0) -> tuple[Chunk, str]:
    """Cut ``chunk.text`` to at most ``max_tokens``: whole sentences if one fits, else a token prefix. A
    sentence made of hard-wrapped quoted or bullet lines may end at one of its line ends
    (:func:`~optimizer.sentences.wrapped_lines`), as when each such line was a sentence of its own.

    A Markdown fenced code block is never cut inside: the cut falls before it or after it. Nor is
    a grapheme cluster (an emoji sequence, a flag, a letter and its marks, an Indic syllable): a
    token cut falls back to the boundary before it.

    Returns the cut chunk and ``"sentence"`` or ``"token"`` (``"none"`` if nothing fits, white space
    included: a token prefix starts after the text's leading white space, which a cut never keeps, save
    the first line's indentation when more lines follow: :func:`~optimizer.records.with_first_indent`). A token
    prefix is only made when ``max_tokens >= min_token_cut`` (else ``"none"``): the packer
    would throw a shorter fragment away, and finding the cut encodes the whole text.
    """
    text = chunk.text
    if max_tokens <= 0 or not text:
        return chunk.keep([]), "none"
    code = [strip_range(text, s, e) for s, e in code_blocks(text)]
    starts = [s for s, _ in code]
    spans, wrapped = sentences_and_wrapped_lines(text)
    ends = sorted({e for _, e in (*spans, *wrapped) if _block_around(code, starts, e) is None})  # never inside a code block
    lo, hi, best = 0, len(ends) - 1, 0
    while lo <= hi:  # largest sentence prefix that fits (counts are monotone in practice; verified below)
        context.check_deadline(f"packing: cutting chunk {chunk.id!r} to {max_tokens} tokens")  # each probe counts a prefix
        mid = (lo + hi) // 2
        if context.count(text[: ends[mid]]) <= max_tokens:
            best, lo = ends[mid], mid + 1
        else:
            hi = mid - 1
    best = within_graphemes(text, best, max_tokens, context.count)  # a sentence end inside a cluster is no end
    if best > 0:
        return chunk.keep_text_range(0, best), "sentence"
    if max_tokens < min_token_cut:
        return chunk.keep([]), "none"
    lead = len(text) - len(text.lstrip())  # a cut keeps no leading white space (Chunk.keep): spend no token on it
    k = lead + token_cut(text[lead:], max_tokens, context)
    line = text.rfind("\n", 0, lead) + 1
    if line < lead and "\n" in text[lead:k].rstrip():  # more lines kept: the first gets its indentation back
        k = line + token_cut(text[line:], max_tokens, context)  # (Chunk.keep, with_first_indent), so count it
    around = _block_around(code, starts, k)  # a code block is kept whole or not at all
    k = k if around is None else around
    if k <= lead:  # white space only: nothing kept is no cut
        return chunk.keep([]), "none"
    return chunk.keep_text_range(0, k), "token"


def _block_around(code: Sequence[tuple[int, int]], starts: Sequence[int], k: int) -> int | None:
    """The start of the block of ``code`` (sorted, disjoint ranges; ``starts`` their starts) that ``k`` falls
    strictly inside, else None. Found by bisection: a scan of every block per sentence end made a long
    document with thousands of code blocks quadratic.

    >>> _block_around([(2, 5), (8, 9)], [2, 8], 4), _block_around([(2, 5), (8, 9)], [2, 8], 5)
    (2, None)
    """
    at = bisect.bisect_left(starts, k) - 1
    return code[at][0] if at >= 0 and k < code[at][1] else None


def token_cut(text: str, max_tokens: int, context: StageContext) -> int:
    """The longest prefix of ``text`` (a character index) within ``max_tokens``, ending on a grapheme boundary.

    The tokenizer's ``prefix_within`` cuts at a token boundary, which can fall inside a
    cluster (a token may end inside a character, or between an emoji and its joiner).

    >>> from optimizer.stage import StageContext
    >>> text = "Flags \U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA on the wall"
    >>> [text[: token_cut(text, n, StageContext.default())] for n in (4, 8)]  # 4 tokens reach half a flag
    ['Flags ', 'Flags \U0001f1eb\U0001f1f7']
    """
    k = context.tokenizer.prefix_within(text, max_tokens)
    return within_graphemes(text, k, max_tokens, context.count)


def _removed_ranges(before: Chunk, after: Chunk) -> list[tuple[int, int]]:
    """Original-text ranges kept in ``before`` but not in ``after``."""
    out = []
    kept_after = after.kept_pieces if after.text else ()
    for s, e in before.kept_pieces:
        pos = s
        for a, b in kept_after:
            if b <= pos or a >= e:
                continue
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        if pos < e:
            out.append((pos, e))
    text = before.original_text
    stripped = []
    for s, e in out:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            stripped.append((s, e))
    return stripped


_CHECK_EVERY = 64  # chunks between deadline checks in the packer's per-chunk loops


def _check_every(context: StageContext, n: int, where: str) -> None:
    """The run's deadline check (:meth:`~optimizer.stage.StageContext.check_deadline`) on every
    :data:`_CHECK_EVERY`-th chunk, the first included: a chunk costs a count or two, a cut a few more."""
    if n % _CHECK_EVERY == 0:
        context.check_deadline(where)


def _header_cost(chunks: Sequence[Chunk], in_order: list[int], i: int, renderer: Renderer, context: StageContext) -> int:
    """Tokens chunk ``i``'s header (and frame) adds when rendered among the chosen ``in_order`` (indices, list order).

    Its title is counted only if the block before it has another title, and the block after it
    stops printing its own title when the two share one (a title prints once per run of blocks).
    """
    at = bisect.bisect(in_order, i)
    before = chunks[in_order[at - 1]].title if at else None
    cost = context.count(renderer.header(len(in_order) + 1, chunks[i].title, before))
    cost += sum(context.count(t) for t in renderer.frame(chunks[i]) if t)
    if at < len(in_order):
        after = chunks[in_order[at]].title
        cost += _title_cost(after, chunks[i].title, renderer, context) - _title_cost(after, before, renderer, context)
    return cost


def _title_cost(title: str | None, previous: str | None, renderer: Renderer, context: StageContext) -> int:
    """Tokens a block's ``title`` adds to its header after a block titled ``previous``."""
    if title == previous or not (renderer.titles and title):
        return 0
    return context.count(renderer.header(1, title, None)) - context.count(renderer.header(1, title, title))


def pack(chunks: Sequence[Chunk], budget: int | None, renderer: Renderer, context: StageContext) -> Packed:
    """Fit ``chunks`` into ``budget`` tokens of rendered context (``None``: keep all).

    Blank chunks (no text, or white space only) are skipped: they would print a header and nothing to
    read. One blank as given, or left as white space, is recorded as dropped (:data:`BLANK_REASON`);
    one a stage emptied was recorded by that stage.
    """
    blanks = tuple(Drop(c.id, BLANK_REASON) for c in chunks if is_blank(c) and (c.text or not c.original_text.strip()))
    chunks = visible(chunks)
    whole = _all_if_they_fit(chunks, budget, renderer, context)
    if whole is not None:
        return replace(whole, dropped=blanks) if blanks else whole
    if context.scores is None:  # packed on its own: read the scores once, from all the chunks, not from the kept few
        context = replace(context, scores=context.score_reading(chunks))

    sep_tokens = context.count(renderer.separator) if renderer.separator else 0
    chosen: dict[int, Chunk] = {}
    in_order: list[int] = []  # chosen indices in list (= rendered) order
    dropped: list[Drop] = []
    cuts = 0
    remaining = budget
    for n, i in enumerate(priority_order(chunks, context)):
        _check_every(context, n, f"packing chunks ({n} of {len(chunks)})")
        chunk = chunks[i]
        overhead = _header_cost(chunks, in_order, i, renderer, context) + (sep_tokens if chosen else 0)
        body = context.count(chunk.text)
        if overhead + body <= remaining:
            chosen[i] = chunk
            bisect.insort(in_order, i)
            remaining -= overhead + body
            continue
        room = remaining - overhead
        smallest = MIN_FRAGMENT_TOKENS if chosen else 0  # a shorter token fragment is not worth its header
        cut, how = cut_to_tokens(chunk, room, context, min_token_cut=smallest) if room > 0 else (chunk, "none")
        if how == "none":
            dropped.append(Drop(chunk.id, f"budget: no room ({max(room, 0)} tokens left after header)"))
            continue
        chosen[i] = cut
        bisect.insort(in_order, i)
        cuts += 1
        remaining -= overhead + context.count(cut.text)
        for s, e in _removed_ranges(chunk, cut):
            dropped.append(Drop(chunk.id, f"budget: cut at a {how} boundary", s, e))

    kept, rendered, tokens, shrink_cuts = _shrink_to_fit(chosen, budget, renderer, context, dropped)
    grown, refilled = _refill(chunks, chosen, budget, tokens, renderer, context)
    if refilled is not None:
        dropped = _redo_drops(dropped, chunks, chosen, grown)
        kept, rendered, tokens = refilled
        cuts, shrink_cuts = sum(1 for i, c in chosen.items() if c.text and c.text != chunks[i].text), 0  # as printed now
    return Packed(tuple(kept), rendered, tokens, blanks + tuple(dropped), cuts + shrink_cuts)


def _refill(chunks: Sequence[Chunk], chosen: dict[int, Chunk], budget: int, tokens: int, renderer: Renderer,
            context: StageContext) -> tuple[dict[int, str], tuple[list[Chunk], Rendered, int] | None]:
    """Spend what the exact count left: grow cut chunks and add dropped ones, most important first.

    The greedy pass counts each block's header and separator on its own, which overstates the
    rendered count by a token or two per block (``".\n\n"`` is one token), so with hundreds of
    small chunks it left hundreds of tokens unused. Each round plans growths the same way against
    what is left, then keeps the longest run of them, in priority order, whose exact rendered
    count fits (a binary search: a few renders, not one per chunk), so the budget holds and
    nothing kept is lost.

    Returns the grown chunks' indices with how each was cut (``"whole"``, ``"sentence"``,
    ``"token"``), and the last context that fit (kept chunks, rendering, count), None when nothing
    grew; ``chosen`` is updated in place.
    """
    grown: dict[int, str] = {}
    last = None
    for round_ in range(_REFILL_ROUNDS):
        context.check_deadline(f"packing: refilling after the exact count (round {round_ + 1} of {_REFILL_ROUNDS})")
        plan = _growths(chunks, chosen, budget - tokens, renderer, context)
        fit = _longest_fit(plan, chosen, budget, renderer, context)
        if fit is None:
            break
        n, last = fit
        for i, cut, how in plan[:n]:
            chosen[i], grown[i] = cut, how
        tokens = last[2]
        if n < len(plan) or budget - tokens < _REFILL_AGAIN:  # the estimate overran, or too little is left to pay a count
            break
    return grown, last


_REFILL_ROUNDS = 3  # each round's estimate overstates less than the one before; three leave a token or two
_REFILL_AGAIN = 8  # tokens left worth another round (another exact count of the whole context)


def _growths(chunks: Sequence[Chunk], chosen: dict[int, Chunk], left: int, renderer: Renderer,
             context: StageContext) -> list[tuple[int, Chunk, str]]:
    """Growths ``(index, longer chunk, how)`` the greedy pass's estimate fits in ``left`` tokens, in priority order."""
    sep_tokens = context.count(renderer.separator) if renderer.separator else 0
    in_order = sorted(k for k in chosen if chosen[k].text)
    plan: list[tuple[int, Chunk, str]] = []
    for n, i in enumerate(priority_order(chunks, context)):
        if left <= 0:
            break
        _check_every(context, n, f"packing: planning the refill ({n} of {len(chunks)} chunks)")
        whole, have = chunks[i], chosen[i].text if i in chosen else ""
        if have == whole.text:
            continue
        overhead = 0 if have else _header_cost(chunks, in_order, i, renderer, context) + (sep_tokens if in_order else 0)
        room = left + context.count(have) - overhead
        if context.count(whole.text) <= room:
            cut, how = whole, "whole"
        else:
            cut, how = cut_to_tokens(whole, room, context, min_token_cut=MIN_FRAGMENT_TOKENS if in_order else 0)
        if how == "none" or len(cut.text) <= len(have):
            continue
        plan.append((i, cut, how))
        left -= overhead + context.count(cut.text) - context.count(have)
        if not have:
            bisect.insort(in_order, i)
    return plan


def _longest_fit(plan: list[tuple[int, Chunk, str]], chosen: dict[int, Chunk], budget: int, renderer: Renderer,
                 context: StageContext) -> tuple[int, tuple[list[Chunk], Rendered, int]] | None:
    """The most growths of ``plan`` (a prefix) whose exact rendered count fits ``budget``, with that context."""
    def render(n: int) -> tuple[list[Chunk], Rendered, int]:
        context.check_deadline(f"packing: counting a refill of {n} growths")
        state = {**chosen, **{i: cut for i, cut, _ in plan[:n]}}
        kept = [state[k] for k in sorted(state) if state[k].text]
        rendered = renderer.render(kept)
        return kept, rendered, context.count(rendered.text)

    if not plan:
        return None
    whole = render(len(plan))  # the estimate overstates, so the whole plan usually fits: one count
    if whole[2] <= budget:
        return len(plan), whole
    lo, hi, best = 1, len(plan) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        trial = render(mid)
        if trial[2] <= budget:
            lo, best = mid + 1, (mid, trial)
        else:
            hi = mid - 1
    return best


def _redo_drops(dropped: list[Drop], chunks: Sequence[Chunk], chosen: dict[int, Chunk], grown: dict[int, str]) -> list[Drop]:
    """``dropped`` with the budget's records of the ``grown`` chunks replaced by what they lose now."""
    ids = {chunks[i].id for i in grown}
    out = [d for d in dropped if not (d.chunk_id in ids and d.reason.startswith("budget:"))]
    for i, how in grown.items():
        for s, e in _removed_ranges(chunks[i], chosen[i]):
            out.append(Drop(chunks[i].id, f"budget: cut at a {how} boundary (refill after the exact count)", s, e))
    return out


def _all_if_they_fit(chunks: list[Chunk], budget: int | None, renderer: Renderer, context: StageContext) -> Packed | None:
    """Every chunk, untouched, when their exact rendering fits ``budget`` (always when it is None).

    The greedy pass below counts each header and separator on its own, which overstates the
    rendered count by a token or two per block (``".\n\n"`` is one token), so without this check
    a budget of exactly the full context would still cut. Tried only when the bodies alone fit.
    """
    if budget is not None and sum(context.count(c.text) for c in chunks) > budget:
        return None
    rendered = renderer.render(chunks)
    tokens = context.count(rendered.text)
    if budget is not None and tokens > budget:
        return None
    return Packed(tuple(chunks), rendered, tokens, (), 0)


def _victim(chosen: dict[int, Chunk], order: list[int], context: StageContext) -> int:
    """The kept chunk to shrink next: the least relevant one when any has a score, else the last."""
    live = [i for i in order if chosen[i].text]
    if any(chosen[i].relevance is not None or chosen[i].score is not None for i in live):
        rel = dict(zip(live, context.relevances([chosen[i] for i in live])))
        return max(live, key=lambda i: (-rel[i], i))
    return max(live)


def _shrink_to_fit(
    chosen: dict[int, Chunk], budget: int, renderer: Renderer, context: StageContext, dropped: list[Drop]
) -> tuple[list[Chunk], Rendered, int, int]:
    """Render in list order and shrink until the exact count fits (BPE is not additive)."""
    order = sorted(chosen)
    cuts = 0
    while True:
        context.check_deadline(f"packing: shrinking to the exact count ({cuts} cuts so far)")
        kept = [chosen[i] for i in order if chosen[i].text]
        rendered = renderer.render(kept)
        tokens = context.count(rendered.text)
        if tokens <= budget or not kept:
            return kept, rendered, tokens, cuts
        victim = _victim(chosen, order, context)
        before = chosen[victim]
        target = context.count(before.text) - (tokens - budget)
        cut, how = cut_to_tokens(before, target, context) if target > 0 else (before.keep([]), "none")
        if cut.text and len(cut.text) >= len(before.text):  # no progress: drop one more character's worth
            cut = before.keep_text_range(0, grapheme_floor(before.text, len(before.text) - 1))
            how = "token"
        chosen[victim] = cut
        if cut.text:
            cuts += 1
            for s, e in _removed_ranges(before, cut):
                dropped.append(Drop(before.id, f"budget: cut at a {how} boundary (exact fit)", s, e))
        else:
            dropped.append(Drop(before.id, "budget: no room after exact count of the rendered context"))
