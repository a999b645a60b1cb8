"""The trained static model: the shipped table, its training script, and that it agrees with MiniLM better than the plain distill."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from optimizer.embeddings import STATIC_TABLE, EMBEDDERS, StaticEmbedder, get_embedder, load_static_table
from optimizer.stages.sentence_scorer import load_scorer

SPEC = importlib.util.spec_from_file_location("train_static", Path(__file__).resolve().parents[1] / "bench" / "train_static.py")
train_static = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(train_static)

# Not WordNet and not from any eval set: pairs on the same topic in different words, and unrelated sentences.
SENTENCES = [
    "When did the first steam train run in England?",
    "The first locomotive-hauled railway journey took place in 1804 in Wales.",
    "The Bank of England issued the ten shilling note for the first time in 1928.",
    "Who won the most valuable player award in the National League?",
    "Giancarlo Stanton was named the league's MVP after hitting 59 home runs.",
    "The physician prescribed antibiotics for the infection.",
    "A doctor gave the patient medicine to treat the bacteria.",
    "Interest rates were raised by the central bank to curb inflation.",
    "The river burst its banks after days of heavy rain.",
    "Stock markets fell sharply as investors feared a recession.",
    "The orchestra performed a symphony by Beethoven last night.",
    "Photosynthesis converts sunlight into chemical energy in plants.",
    "The spacecraft landed on the surface of Mars in February.",
    "Volcanic eruptions can cause global temperatures to drop.",
    "The novel was adapted into a film starring a famous actor.",
    "Which country has the largest population in the world?",
]


def test_shipped_table_loads_with_its_tokenizer_and_says_what_it_was_trained_on():
    table, tokenizer, info = load_static_table()
    vocab = json.loads(tokenizer)["model"]["vocab"]
    assert table.dtype == np.float32 and table.shape == (len(vocab), 256)
    assert np.isfinite(table).all() and (np.abs(table).sum(axis=1) > 0).mean() > 0.99
    assert "WordNet" in info["corpus"] and info["command"] == "python bench/train_static.py"
    assert info["vocab"] == len(vocab) and info["dim"] == 256


def test_missing_table_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_static.py"):
        load_static_table(tmp_path / "none.npz")


def test_static_names():
    assert {"static", "static-distilled"} <= set(EMBEDDERS)
    with pytest.raises(ValueError, match="unknown static model .glove.; use one of static, static-distilled"):
        StaticEmbedder(name="glove")
    assert STATIC_TABLE.name == "static-wordnet.npz"


def test_fitted_scorers_keep_the_static_model_their_weights_were_fitted_with():
    assert load_scorer("default").static == "static-distilled"
    assert load_scorer("quality").static == "static-distilled"


def test_wordnet_lines_become_gloss_and_example_texts():
    line = "08932568 15 n 02 Paris 0 City_of_Light 0 000 | the capital of France; \"we went to Paris last May\"  \n"
    assert train_static.synset_texts(line) == ["Paris, City of Light: the capital of France", "we went to Paris last May"]
    assert train_static.synset_texts("  1 This software and database is being provided\n") == []
    adj = "00001740 00 a 01 able(p) 0 000 | (usually followed by `to') having the necessary means; \"able to swim\"  \n"
    assert train_static.synset_texts(adj) == ["able: (usually followed by `to') having the necessary means"]


def test_int8_quantization_keeps_every_row_direction():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(100, 16)).astype(np.float32)
    table[3] = 0.0
    q, scale = train_static.quantize(table)
    back = q.astype(np.float32) * scale[:, None]
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    live = np.arange(100) != 3
    cos = (back[live] * table[live]).sum(1) / (np.linalg.norm(back[live], axis=1) * np.linalg.norm(table[live], axis=1))
    assert cos.min() > 0.999 and not back[3].any()


def test_training_moves_pooled_vectors_toward_the_teacher():
    torch = pytest.importorskip("torch")  # noqa: F841
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(40, 12)).astype(np.float32)  # the "teacher": a different table, 12 dimensions
    pieces = [rng.integers(0, 40, size=rng.integers(2, 8)).tolist() for _ in range(600)]
    targets = np.stack([hidden[p].mean(0) for p in pieces])
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    start = rng.normal(size=(40, 6)).astype(np.float32)

    def agreement(table: np.ndarray) -> float:  # how well cosines between texts match the teacher's
        v = np.stack([table[p].mean(0) for p in pieces[:100]])
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        iu = np.triu_indices(100, 1)
        return float(np.corrcoef((v @ v.T)[iu], (targets[:100] @ targets[:100].T)[iu])[0, 1])

    trained = train_static.train(pieces, targets, start, epochs=15, lr=3e-2, log=lambda _: None)
    assert trained.shape == start.shape and trained.dtype == np.float32
    assert agreement(trained) > agreement(start) + 0.1


@pytest.mark.slow
def test_trained_static_model_agrees_with_minilm_better_than_the_plain_distill():
    def pairwise(name: str) -> np.ndarray:
        v = get_embedder(name).encode(SENTENCES)
        return (v @ v.T)[np.triu_indices(len(SENTENCES), 1)]

    teacher = pairwise("minilm")
    trained = np.corrcoef(pairwise("static"), teacher)[0, 1]
    distilled = np.corrcoef(pairwise("static-distilled"), teacher)[0, 1]
    assert trained > distilled + 0.05, (trained, distilled)
