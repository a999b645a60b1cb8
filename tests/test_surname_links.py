"""A chain linked by surnames: "It was directed by Valdis." names the chunk titled "Oren Valdis" in full."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.sentence_signals import chained_links, split_chunks
from test_link_chain import CHUNKS, COMPOSER, DIRECTOR, FILM, QUESTION

SURNAME_FILM = replace(FILM, text=FILM.text.replace("directed by Oren Valdis", "directed by Valdis"))


def _links(chunks: list[Chunk], steps: int = 3) -> np.ndarray:
    # only the composer is read first, its every sentence at full weight
    sents = split_chunks(chunks, StageContext.default())
    p1 = np.array([1.0 if c.id == "composer" else 0.0 for c in chunks])
    score = np.array([1.0 if chunks[s.chunk].id == "composer" else 0.0 for s in sents])
    return chained_links(sents, chunks, p1, score, hop_chunks=1, steps=steps, stem=6)


def test_a_surname_alone_links_the_person_it_names_in_full():
    link = _links([COMPOSER, SURNAME_FILM, DIRECTOR])
    assert link[1] == 1.0 and link[2] == 1.0  # was about half: the surname's share of the name's rarity


def test_a_first_name_alone_is_still_a_partial_link():
    first = replace(FILM, text=FILM.text.replace("directed by Oren Valdis", "directed by Oren"))
    assert 0.0 < _links([COMPOSER, first, DIRECTOR])[2] < 1.0


def test_a_surname_two_chunks_share_is_a_partial_link():
    namesake = Chunk(id="n", title="Ada Valdis", text="Ada Valdis (born 1940) is a painter from Riga.")
    link = _links([COMPOSER, SURNAME_FILM, DIRECTOR, namesake])
    assert 0.0 < link[2] < 1.0 and 0.0 < link[3] < 1.0


def test_a_surname_opening_a_sentence_is_not_read_as_a_name():
    film = replace(FILM, text="The Pale Harbor is a 1994 drama film. Valdis directed it.")
    assert _links([COMPOSER, film, DIRECTOR])[2] < 1.0


def test_a_chunk_its_lead_does_not_name_in_full_is_not_named_by_a_surname():
    about_else = replace(DIRECTOR, text="A film director and screenwriter. His early work was in documentary.")
    assert _links([COMPOSER, SURNAME_FILM, about_else])[2] < 1.0


def test_a_title_that_is_no_persons_name_is_not_named_by_its_last_word():
    harbor = Chunk(id="h", title="The Green Harbor", text="The Green Harbor is a port in Lund.")
    film = replace(FILM, text=FILM.text + " It was shot at the Harbor.")
    assert _links([COMPOSER, film, harbor])[2] < 1.0


def test_default_keeps_the_director_a_surname_names_at_a_quarter_of_the_tokens():
    chunks = [SURNAME_FILM if c.id == "film" else c for c in CHUNKS]
    text = Pipeline.preset("default").run(QUESTION, chunks, budget=100).text
    assert "Oren Valdis (born 1950)" in text
