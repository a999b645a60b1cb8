"""The hop follows links on from the chunks it brings in: a 3-hop chain's third passage is reached."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.compress import SentenceExtract
from optimizer.stages.sentence_signals import chained_links, split_chunks

# composer -> film -> director: the question names the composer; the answer is in the director's lead
QUESTION = "In what year was the director of the film whose soundtrack was composed by Mira Kestrel born?"
COMPOSER = Chunk(id="composer", title="Mira Kestrel", text="Mira Kestrel (born 1961) is a composer and pianist. Mira Kestrel "
                 "studied at the conservatory in Lund. She is best known for writing the soundtrack of The Pale Harbor (1994). "
                 "She later taught orchestration.")
FILM = Chunk(id="film", title="The Pale Harbor", text="The Pale Harbor is a 1994 drama film. It was directed by Oren Valdis and "
             "produced by Tess Amery. The film premiered at a festival in Porto and won two awards.")
DIRECTOR = Chunk(id="director", title="Oren Valdis", text="Oren Valdis (born 1950) is a film director and screenwriter. His early "
                 "work was in documentary. Oren Valdis married Lina Sorrow in 1980. They lived in Ghent until 2001.")
OTHERS = [
    Chunk(id="d1", title="Ivo Brask", text="Ivo Brask is a film director. Ivo Brask directed The Cold Field (1975). "
          "His spouse is Ada Fenn, a composer."),
    Chunk(id="d2", title="Nell Orr", text="Nell Orr is a composer of film soundtracks. She composed the soundtrack for The Dry Lake."),
    Chunk(id="d3", title="Kara Wendt", text="Kara Wendt (born in Oslo) is an actress. She is the spouse of the film director Piet Lamm."),
    Chunk(id="d4", title="The Cold Field", text="The Cold Field is a 1975 film. The soundtrack was composed by Jon Hale. "
          "The film was shot in Riga."),
    Chunk(id="d5", title="Mira Sand", text="Mira Sand is a painter. Mira Sand was born in Bergen and married the director Olaf Rusk."),
    Chunk(id="d6", title="Tom Berg", text="Tom Berg (born 1980) is a footballer from Malmo. Tom Berg played for Lund United. "
          "He retired in 2015."),
    Chunk(id="d7", title="Eva Lind", text="Eva Lind (born 1975) is a cyclist from Aarhus. Eva Lind rode for a team in Ghent. "
          "She retired in 2010."),
]
CHUNKS = [OTHERS[0], DIRECTOR, OTHERS[1], COMPOSER, OTHERS[2], OTHERS[3], FILM, *OTHERS[4:]]  # 401 tokens in all


def _links(chunks: list[Chunk], steps: int) -> np.ndarray:
    # only the composer is read first (hop_chunks 1), its every sentence at full weight
    sents = split_chunks(chunks, StageContext.default())
    p1 = np.array([1.0 if c.id == "composer" else 0.0 for c in chunks])
    score = np.array([1.0 if chunks[s.chunk].id == "composer" else 0.0 for s in sents])
    return chained_links(sents, chunks, p1, score, hop_chunks=1, steps=steps)


def test_a_further_link_step_reaches_the_third_passage():
    ids = [c.id for c in CHUNKS]
    one, three = _links(CHUNKS, 1), _links(CHUNKS, 3)
    assert one[ids.index("film")] == 1.0 and one[ids.index("director")] == 0.0  # the second hop alone stops at the film
    assert three[ids.index("director")] == 1.0  # the film's "directed by Oren Valdis", at the film's link strength
    assert three[ids.index("d1")] == 0.0 and three[ids.index("d6")] == 0.0  # nothing the chain does not name


def test_a_partial_name_weakens_each_further_step():
    # the film names the director by his first name alone: the third passage's link is the film's times that share
    # (a surname alone names him in full when no other chunk's name has it: tests/test_surname_links.py)
    half = replace(FILM, text=FILM.text.replace("directed by Oren Valdis", "directed by Oren"))
    link = _links([COMPOSER, half, DIRECTOR], 3)
    assert link[1] == 1.0 and 0.0 < link[2] < 1.0


def test_the_chain_stops_when_a_step_brings_no_new_chunk_in():
    # the director's sentences name nothing else: 3 steps and 10 give the same links
    assert np.array_equal(_links(CHUNKS, 3), _links(CHUNKS, 10))


@pytest.mark.parametrize("preset", ["default"])
def test_preset_keeps_the_third_passage_answer_at_a_quarter_of_the_tokens(preset):
    # 100 of 401 tokens: the second hop alone brought the film in and never read it for links
    text = Pipeline.preset(preset).run(QUESTION, CHUNKS, budget=100).text
    assert "Oren Valdis (born 1950)" in text


def test_link_steps_one_is_the_second_hop_alone():
    ctx = StageContext.default(budget=100)
    _, one = SentenceExtract(model=None, link_lead=1.0).scores(QUESTION, CHUNKS, ctx)
    _, three = SentenceExtract(model=None, link_lead=1.0, link_steps=3).scores(QUESTION, CHUNKS, ctx)
    assert not np.array_equal(one, three)
    assert SentenceExtract().link_steps == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_link_steps_must_be_a_whole_number_of_one_or_more(bad):
    with pytest.raises(ValueError, match="link_steps must be a whole number >= 1"):
        SentenceExtract(link_steps=bad)


def test_a_chunk_a_weak_path_reaches_first_is_read_again_at_the_strong_paths_strength():
    """The composer names the director by surname alone (a weak link) and the film fully: the film's full link to
    the director must carry on to the spouse. Before, the director was read once, at the surname's strength, so an
    extra mention (more evidence) weakened the spouse's link from 1.0 to 0.45."""
    film = Chunk(id="film", title="The Pale Harbor", text="The Pale Harbor is a 1994 drama film. It was directed by Oren Valdis.")
    director = Chunk(id="director", title="Oren Valdis", text="Oren Valdis is a film director. Oren Valdis married Lina Sorrow in 1980.")
    spouse = Chunk(id="spouse", title="Lina Sorrow", text="Lina Sorrow was born in Ghent in 1955.")
    other = Chunk(id="x", title="Ivo Brask", text="Ivo Brask is a painter from Oslo.")

    def spouse_link(composer_text: str) -> float:
        chunks = [Chunk(id="composer", title="Mira Kestrel", text=composer_text), film, director, spouse, other]
        sents = split_chunks(chunks, StageContext.default())
        score = np.array([1.0 if s.chunk == 0 else 0.0 for s in sents])
        link = chained_links(sents, chunks, np.array([1.0, 0, 0, 0, 0]), score, hop_chunks=1, steps=3)
        assert link[4] == 0.0  # the painter is named by nobody
        return float(link[3])

    film_only = spouse_link("Mira Kestrel wrote the soundtrack of The Pale Harbor.")
    with_surname = spouse_link("Mira Kestrel wrote the soundtrack of The Pale Harbor. She once met Valdis.")
    assert film_only == pytest.approx(1.0) and with_surname == pytest.approx(film_only)
