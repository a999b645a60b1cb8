"""lm-prune: protected words survive, offsets stay valid (loads Gemma: slow + reader)."""

from __future__ import annotations

import pytest

from optimizer import Chunk
from optimizer.stage import StageContext
from optimizer.stages.lm_prune import LMPrune, prunable_words


def test_protection_rules_without_a_model():
    text = "In 1889, Gustave Eiffel built it quickly."
    spans = prunable_words(text, {"built"})
    words = [text[s:e] for s, e in spans]
    assert words == ["In", "it", "quickly."]  # numbers, names and query words are protected


def test_settings_are_checked():
    with pytest.raises(ValueError, match="keep_ratio"):
        LMPrune(keep_ratio=0)


@pytest.fixture(scope="session")
def pruner():
    stage = LMPrune(keep_ratio=0.5)
    stage.warm_up()
    return stage


TEXT = (
    "Shirley Temple Black (April 23, 1928 – February 10, 2014) was an American actress and diplomat who was "
    "the number one box-office draw as a child actress from 1935 to 1938. As an adult, she was named "
    "ambassador to Ghana and also served as Chief of Protocol of the United States."
)


@pytest.mark.slow
@pytest.mark.reader
def test_prunes_about_half_keeps_numbers_dates_entities_and_valid_offsets(pruner):
    chunk = Chunk(id="t", title="Shirley Temple", text=TEXT)
    out = pruner("What did she do?", [chunk], StageContext.default())
    kept = out[0]
    assert len(kept.text.split()) < 0.75 * len(TEXT.split())
    for token in ("1928", "2014", "1935", "1938", "Ghana", "Chief", "Protocol", "Shirley", "Temple"):
        assert token in kept.text
    assert kept.text == " ".join(TEXT[s:e] for s, e in kept.kept_pieces)
    assert all(0 <= s < e <= len(TEXT) for s, e in kept.kept_pieces)
    assert chunk.text == TEXT  # input untouched


@pytest.mark.slow
@pytest.mark.reader
def test_code_is_never_pruned(pruner):
    code = Chunk(id="c", text="def height():\n    return 330  # metres")
    assert pruner("height", [code], StageContext.default())[0].text == code.text
