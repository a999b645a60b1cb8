"""Train the static table further on question-passage pairs that no eval set uses (issue 11, twelfth round).

    python bench/train_static_qa.py --sources nq,squad --out runs/r12/static-qa.npz --dev
    python bench/train_static_qa.py --sources squad --out runs/r12/static-qa-squad.npz   # for nq's fold
    python bench/train_static_qa.py --sources nq --out runs/r12/static-qa-nq.npz         # for squad's fold

``bench/train_static.py`` trains the static table on WordNet to point where MiniLM points; it
never sees a question. What `default` is weak at (ninth round) is ranking the passage that
answers a question, so this script trains the same table on that task: a question's mean-pooled
vector should be nearer its gold passage than to hard negatives (the BM25-nearest other
passages, as the bundled sets pick distractors) and to the other passages of its batch
(InfoNCE, temperature 0.05, Adam, an L2 pull towards the starting table).

**Data: only raw questions that no bundled or fit-only set holds.**
- ``nq``: NQ-Open questions of the Lost-in-the-Middle oracle file whose line is in neither
  nq-multidoc nor the fit-only nq-extra (1,655). Negatives: the 7 BM25-nearest other gold
  passages that do not hold an answer.
- ``squad``: answerable SQuAD 2.0 questions (CS224N half of dev) in neither squad2-pools nor
  squad-extra. Negatives: the 7 BM25-nearest other paragraphs of the same article.
  (SQuAD's questions share 646 paragraphs, so squad2-pools' paragraphs are seen here with
  *other* questions; the protocol reports squad2-pools with a table trained without SQuAD.)
HotpotQA and 2Wiki have no raw questions beyond the bundled ones, so none of theirs is used.
The start is the shipped WordNet table; the output has the same vocabulary, dimensions and int8 format.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "datasets"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import bm25_rank_with, bm25_tokens, unique  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from evals.metrics import contains_answer  # noqa: E402
from optimizer.embeddings import STATIC_TABLE, load_static_table  # noqa: E402
from optimizer.scoring import titled_text  # noqa: E402

RAW = ROOT.parent / "shared" / "datasets"
FIT_EXTRA = ROOT / "runs" / "fit-extra"
EPOCHS, LR, L2, TAU, NEGATIVES, BATCH, MAX_PIECES, SEED = 4, 1e-3, 0.0, 0.05, 7, 32, 256, 0


def _fit_extra(name: str) -> Path:
    """The fit-only set ``name`` (written by ``bench/fit_extra.py`` first if it is missing): its questions are left out too."""
    path = FIT_EXTRA / f"{name}.jsonl"
    if not path.is_file():
        import fit_extra

        fit_extra.build()
    return path


def _lines_of(path: Path | str) -> set[int]:
    return {int(e.meta["line"]) for e in load_dataset(path).examples}


def nq_pairs(raw: Path = RAW) -> list[tuple[str, str, list[str]]]:
    """(question, gold passage, hard negatives) for NQ-Open lines in no bundled or fit-only set."""
    with gzip.open(raw / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as f:
        source = [json.loads(line) for line in f]
    taken = _lines_of("nq-multidoc") | _lines_of(_fit_extra("nq-extra"))
    passages = [next(c for c in ex["ctxs"] if c.get("isgold")) for ex in source]
    texts = [titled_text(p["title"], p["text"]) for p in passages]
    index = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in texts])
    eval_passages = {texts[i - 1] for i in taken}
    out = []
    for i, ex in enumerate(source):
        if i + 1 in taken or texts[i] in eval_passages:
            continue
        answers = unique(ex["answers"])
        negatives = [j for j in bm25_rank_with(index, ex["question"], len(texts))[:60]
                     if j != i and texts[j] != texts[i] and not contains_answer(texts[j], answers)][:NEGATIVES]
        out.append((ex["question"], texts[i], [texts[j] for j in negatives]))
    return out


def squad_pairs(raw: Path = RAW) -> list[tuple[str, str, list[str]]]:
    """(question, own paragraph, hard negatives) for answerable SQuAD questions in no bundled or fit-only set."""
    with open(raw / "squad_v2" / "dev-v2.0.cs224n_half.json", encoding="utf-8") as f:
        data = json.load(f)["data"]
    held = list(load_dataset("squad2-pools").examples) + list(load_dataset(_fit_extra("squad-extra")).examples)
    taken = {e.id.removeprefix("sqx-") for e in held} | {e.question for e in held}  # ids, and texts asked twice
    out = []
    for art in data:
        title = art["title"].replace("_", " ")
        texts = [titled_text(title, p["context"]) for p in art["paragraphs"]]
        index = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in texts])
        for p, para in enumerate(art["paragraphs"]):
            for qa in para["qas"]:
                if qa["is_impossible"] or qa["id"] in taken or qa["question"] in taken:
                    continue
                negatives = [j for j in bm25_rank_with(index, qa["question"], len(texts)) if j != p][:NEGATIVES]
                out.append((qa["question"], texts[p], [texts[j] for j in negatives]))
    return out


SOURCES = {"nq": nq_pairs, "squad": squad_pairs}


def train(pairs: Sequence[tuple[str, str, list[str]]], table: np.ndarray, tokenize, *, epochs: int = EPOCHS,  # type: ignore[no-untyped-def]
          lr: float = LR, l2: float = L2, seed: int = SEED, log=print) -> np.ndarray:
    """InfoNCE on (question, gold, negatives) with in-batch negatives; returns the trained float table."""
    import torch

    torch.manual_seed(seed)
    texts = list(dict.fromkeys([t for q, g, ns in pairs for t in (q, g, *ns)]))
    where = {t: k for k, t in enumerate(texts)}
    ids = [torch.tensor(list(p)[:MAX_PIECES] or [0]) for p in tokenize(texts)]
    start = torch.tensor(table, dtype=torch.float32)
    bag = torch.nn.EmbeddingBag.from_pretrained(start.clone(), freeze=False, mode="mean")
    opt = torch.optim.Adam(bag.parameters(), lr=lr)

    def embed(keys: Sequence[int]):  # type: ignore[no-untyped-def]
        flat = torch.cat([ids[k] for k in keys])
        offsets = torch.tensor([0] + [len(ids[k]) for k in keys[:-1]]).cumsum(0)
        return torch.nn.functional.normalize(bag(flat, offsets), dim=-1)

    for epoch in range(epochs):
        order, total, began = torch.randperm(len(pairs)).tolist(), 0.0, time.time()
        for s in range(0, len(order), BATCH):
            batch = [pairs[i] for i in order[s : s + BATCH]]
            q = embed([where[b[0]] for b in batch])
            docs = [where[b[1]] for b in batch] + [where[n] for b in batch for n in b[2]]
            d = embed(docs)
            logits = q @ d.T / TAU  # column i is question i's gold passage
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            if l2:
                loss = loss + l2 * (bag.weight - start).pow(2).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(pairs):.4f} ({time.time() - began:.0f} s)")
    return bag.weight.detach().numpy().astype(np.float32)


def pooled(table: np.ndarray, tokenize):  # type: ignore[no-untyped-def]
    """An ``embed(texts)`` for :func:`train_static.gold_first`: the normalized mean of each text's piece vectors."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        vecs = np.stack([table[p].mean(axis=0) if len(p) else np.zeros(table.shape[1]) for p in tokenize(texts)])
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)

    return embed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="nq,squad", help="comma list of: " + ", ".join(SOURCES))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--start", type=Path, default=STATIC_TABLE)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--l2", type=float, default=L2)
    ap.add_argument("--dev", action="store_true", help="gold passage first on the fit-only nq-extra and squad-extra")
    args = ap.parse_args(argv)

    import tokenizers

    from train_static import gold_first, quantize

    table, tok_json, info = load_static_table(args.start)
    tok = tokenizers.Tokenizer.from_str(tok_json)

    def tokenize(texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    sources = [s for s in args.sources.split(",") if s]
    pairs = [p for s in sources for p in SOURCES[s]()]
    random.Random(SEED).shuffle(pairs)
    print(f"{len(pairs):,} training pairs from {', '.join(sources)}", flush=True)
    dev = {n: _fit_extra(n) for n in ("nq-extra", "squad-extra")}
    if args.dev:
        print("start: " + ", ".join(f"{n} {gold_first(pooled(table, tokenize), p):.3f}" for n, p in dev.items()), flush=True)
    trained = train(pairs, table, tokenize, epochs=args.epochs, lr=args.lr, l2=args.l2)
    if args.dev:
        print("trained: " + ", ".join(f"{n} {gold_first(pooled(trained, tokenize), p):.3f}" for n, p in dev.items()), flush=True)
    q, scale = quantize(trained)
    info = {**info, "qa_training": {"sources": sources, "pairs": len(pairs), "epochs": args.epochs, "lr": args.lr,
                                    "l2": args.l2, "tau": TAU, "negatives": NEGATIVES, "batch": BATCH, "seed": SEED,
                                    "command": "python bench/train_static_qa.py --sources " + ",".join(sources)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, q=q, scale=scale, tokenizer=np.array(tok_json), info=np.array(json.dumps(info)))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
