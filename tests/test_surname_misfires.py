"""A lone capitalised word names a person's chunk in full only where it reads as that person's surname.

The surname rule (:mod:`optimizer.stages.surnames`) once read "set in London" as *Jack London*, "the
Court" as *Supreme Court* and ", Jr." as *Harry Connick Jr.*, so default and quality lost the
director's lead (the answer) to those chunks at 30 % of the tokens. Each case: the film's lead
mentions the word alone; the distractor titled with it must not pull in the answer's budget.
"""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.sentence_signals import split_chunks
from optimizer.stages.surnames import lone_surnames, surname_chunks

QUESTION = "In what year was the director of the drama film The Pale Harbor born?"
DIRECTOR = Chunk(id="dir", title="Oren Valdis", text="Oren Valdis (born 1950) is a Latvian film director and screenwriter. "
                 "He studied at the Riga Film Studio school and made his first feature in 1981.")
OTHERS = [
    Chunk(id="d1", title="Harbor Lights", text="Harbor Lights is a 1952 novel by Edith Marlowe. It was adapted for radio in 1960 "
          "and remains in print."),
    Chunk(id="d2", title="Riga Film Studio", text="Riga Film Studio is a film studio in Riga, Latvia. It was founded in 1948 and "
          "produced over 200 feature films."),
    Chunk(id="d3", title="Baltic Drama Awards", text="The Baltic Drama Awards are annual film awards. They were first presented "
          "in 1995 in Tallinn."),
]

# name: (the film's first sentence, the distractor's title, its text, the presets that lost the answer)
CASES = {
    "london": ("The Pale Harbor is a 1994 drama film set in London.", "Jack London",
               "Jack London (1876–1916) was an American novelist and journalist. He is best known for The Call of the Wild "
               "and White Fang.", ["default"]),
    "washington": ("The Pale Harbor is a 1994 drama film shot in Washington.", "George Washington",
                   "George Washington (1732–1799) was an American military officer and statesman. He was the first president "
                   "of the United States.", ["default"]),
    "york": ("The Pale Harbor is a 1994 drama film set in York.", "New York",
             "New York is a state in the northeastern United States. Its largest city is New York City.", ["default", "quality"]),
    "mexico": ("The Pale Harbor is a 1994 drama film shot in Mexico.", "New Mexico",
               "New Mexico is a state in the Southwestern United States. Its capital is Santa Fe.", ["default", "quality"]),
    "australia": ("The Pale Harbor is a 1994 drama film released in Australia.", "Western Australia",
                  "Western Australia is a state of Australia occupying the western third of the continent.", ["default"]),
    "madrid": ("The Pale Harbor is a 1994 drama film shot in Madrid.", "Real Madrid",
               "Real Madrid is a Spanish professional football club based in Madrid. It was founded in 1902.", ["default"]),
    "munich": ("The Pale Harbor is a 1994 drama film shot in Munich.", "Bayern Munich",
               "Bayern Munich is a German football club based in Munich, Bavaria. It plays in the Bundesliga.", ["default"]),
    "university": ("The Pale Harbor is a 1994 drama film made by students of the University.", "Stanford University",
                   "Stanford University is a private research university in Stanford, California.", ["default"]),
    "court": ("The Pale Harbor is a 1994 drama film about a trial before the Court.", "Supreme Court",
              "The Supreme Court is the highest court in the federal judiciary of the United States.", ["default"]),
    "king": ("The Pale Harbor is a 1994 drama film about the King.", "Stephen King",
             "Stephen King (born 1947) is an American author of horror and suspense novels.", ["default", "quality"]),
    "bridge": ("The Pale Harbor is a 1994 drama film set near the Bridge.", "Golden Gate Bridge",
               "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate strait.", ["default"]),
    "germany": ("The Pale Harbor is a 1994 drama film shot in Germany.", "Central Germany",
                "Central Germany is a cultural area in the center of Germany.", ["default"]),
    "jr": ("The Pale Harbor is a 1994 drama film produced by Sammy Davis, Jr.", "Harry Connick Jr.",
           "Harry Connick Jr. (born 1967) is an American singer, pianist and actor.", ["default"]),
}


def _chunks(first: str, title: str, text: str) -> list[Chunk]:
    film = Chunk(id="film", title="The Pale Harbor", text=f"{first} It was directed by Oren Valdis and stars Ana Ruiz as a "
                 "dock worker. The film premiered at the Venice Film Festival.")
    return [film, Chunk(id="dist", title=title, text=text), *OTHERS, DIRECTOR]


@pytest.mark.parametrize("name,preset", [(n, p) for n, case in CASES.items() for p in case[3]])
def test_a_word_that_is_no_surname_there_does_not_cost_the_answer(name, preset):
    first, title, text, _ = CASES[name]
    out = Pipeline.preset(preset, budget=0.3).run(QUESTION, _chunks(first, title, text)).text
    assert "born 1950" in out


def _found(*chunks: Chunk) -> dict[str, int]:
    leads = [""] * len(chunks)
    for s in split_chunks(list(chunks), StageContext.default()):
        leads[s.chunk] = leads[s.chunk] or s.text
    return surname_chunks(chunks, [c.title for c in chunks], leads)


def test_a_title_names_a_person_by_its_lifespan_or_a_personal_pronoun():
    born = Chunk(id="a", title="Oren Valdis", text="Oren Valdis (born 1950) is a director.")
    lifespan = Chunk(id="b", title="Ana Ruiz", text="Ana Ruiz (1876–1916) was a painter.")
    nee = Chunk(id="c", title="Lina Sorrow", text="Lina Sorrow (née Marsh) is a singer.")
    pronoun = Chunk(id="d", title="Ivo Brask", text="Ivo Brask is a film director. His spouse is Ada Fenn.")
    assert _found(born, lifespan, nee, pronoun) == {"valdis": 0, "ruiz": 1, "sorrow": 2, "brask": 3}


def test_places_clubs_courts_and_bridges_have_no_surname():
    chunks = [Chunk(id=k, title=t, text=x) for k, (_, t, x, _) in CASES.items() if k not in ("london", "washington", "king", "jr")]
    chunks.append(Chunk(id="year", title="Mission China", text="Mission China (2017) is a Chinese action film. It was "
                        "released in the United States on April 14, 2017."))
    assert _found(*chunks) == {}


def test_a_generational_suffix_is_not_the_surname():
    chunks = [Chunk(id="h", title="Harry Connick Jr.", text="Harry Connick Jr. (born 1967) is an American singer."),
              Chunk(id="t", title="Thurston Howell III", text="Thurston Howell III (born 1920) is a millionaire.")]
    assert _found(*chunks) == {"connick": 0, "howell": 1}


@pytest.mark.parametrize("text,named", [
    ("It was directed by Valdis.", True),
    ("It was shot by Valdis's crew.", True),
    ("Ana Ruiz married Valdis in 1980.", True),
    ("It was set in Valdis.", False),
    ("It was shot at Valdis in June.", False),
    ("They moved to Valdis.", False),
    ("It came from Valdis.", False),
    ("It was shot near Valdis.", False),
    ("A story of Valdis.", False),
    ("It is about the Valdis.", False),
    ("It was shot in Riga, Valdis.", False),
    ("It was shot in Valdis, then directed by Valdis.", True),
    ("Despite the poor reviews, Valdis won the award.", True),
    ("It followed in the trail of Valdis's first film.", True),
    ("It was the 28th season of the Valdis's team.", False),
])
def test_a_mention_after_a_place_preposition_the_or_a_name_and_comma_is_no_surname(text, named):
    assert (lone_surnames(text, {"valdis": 0}) == {"valdis"}) is named
