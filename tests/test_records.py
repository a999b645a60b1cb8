from dataclasses import FrozenInstanceError

import pytest

from optimizer import Chunk
from optimizer.records import as_chunks


def test_chunk_is_frozen_and_metadata_read_only():
    meta = {"source": "wiki"}
    c = Chunk(id="a", text="hello", metadata=meta)
    with pytest.raises(FrozenInstanceError):
        c.text = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.metadata["source"] = "other"  # type: ignore[index]
    meta["source"] = "changed"  # the caller's dict is copied, not shared
    assert c.metadata["source"] == "wiki"


def test_keep_maps_pieces_back_to_original():
    text = "First sentence. Second one here. Third and last."
    c = Chunk(id="a", text=text)
    kept = c.keep([(33, 48), (0, 15)])
    assert kept.text == "First sentence. Third and last."
    assert kept.pieces == ((0, 15), (33, 48))
    assert kept.original_text == text
    assert c.text == text and c.pieces is None  # original untouched


def test_keep_merges_pieces_separated_by_whitespace_only():
    c = Chunk(id="a", text="One.\nTwo. Three.")
    assert c.keep([(0, 4), (5, 9)]).pieces == ((0, 9),)
    assert c.keep([(0, 4), (5, 9)]).text == "One.\nTwo."


def test_keep_cannot_resurrect_removed_text():
    c = Chunk(id="a", text="aaa bbb ccc").keep([(0, 3)])
    assert c.keep([(0, 11)]).text == "aaa"


def test_map_range_and_keep_text_range_on_cut_chunk():
    c = Chunk(id="a", text="alpha beta gamma delta").keep([(0, 5), (11, 16)])
    assert c.text == "alpha gamma"
    assert c.map_range(6, 11) == [(11, 16)]
    assert c.keep_text_range(0, 5).text == "alpha"


def test_pieces_at_a_line_edge_join_with_a_line_break():
    doc = "## Install\n\nRun pip install ragtrim. It needs Python 3.10.\n- fast\n- offline\n- small\nThe end."
    c = Chunk(id="g", text=doc)
    at = doc.index
    kept = c.keep([(0, 10), (at("It needs"), at("\n- fast")), (at("- offline"), at("- offline") + 9), (at("The end"), len(doc))])
    assert kept.text == "## Install\nIt needs Python 3.10.\n- offline\nThe end."  # the heading and the list item keep their lines
    mid = c.keep([(at("Run"), at("Run") + 3), (at("It needs"), at("It needs") + 8)])  # neither piece at a line's edge
    assert mid.text == "Run It needs"
    starts = Chunk(id="s", text="a b c\nd e").keep([(0, 1), (6, 7)])  # the second piece starts a line
    assert starts.text == "a\nd"
    # positions in the joined text still map back to the original, through either joiner
    joiners = [kept.text.index("\nIt"), kept.text.index("\n- off"), kept.text.index("\nThe")]
    for k, char in enumerate(kept.text):
        mapped = kept.map_range(k, k + 1)
        assert mapped == [] if k in joiners else [doc[s:e] for s, e in mapped] == [char], (k, char, mapped)
    assert kept.keep_text_range(kept.text.index("- offline"), len(kept.text)).text == "- offline\nThe end."


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"id": "a", "text": 3}, "text must be a string"),
        ({"id": None, "text": "x"}, "id must be a string"),
        ({"id": "a", "text": "x", "score": float("nan")}, "score is NaN"),
        ({"id": "a", "text": "x", "score": "high"}, "score must be a number"),
        ({"id": "a", "text": "x", "metadata": [1]}, "metadata must be a mapping"),
    ],
)
def test_bad_chunks_name_the_problem(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Chunk(**kwargs)


def test_duplicate_ids_rejected_with_positions():
    with pytest.raises(ValueError, match=r"duplicate chunk id 'x' \(chunks #0 and #2\)"):
        as_chunks([{"id": "x", "text": "a"}, {"id": "y", "text": "b"}, {"id": "x", "text": "c"}])


def test_from_dict_keeps_extra_fields_in_metadata():
    c = Chunk.from_dict({"id": 7, "text": "t", "gold": True, "metadata": {"doc": "d"}})
    assert c.id == "7" and c.metadata == {"doc": "d", "gold": True}


def test_chunks_pickle_deepcopy_hash_and_compare():
    import copy
    import pickle

    import numpy as np

    c = Chunk(id="a", text="t", metadata={"tags": ["x"]}, embedding=np.ones(3))
    for clone in (copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
        assert clone == c and clone.metadata == {"tags": ["x"]}
        with pytest.raises(TypeError, match="read-only"):
            clone.metadata["tags"] = []  # type: ignore[index]
    assert len({c, copy.deepcopy(c)}) == 1  # hashable although metadata holds a list
