"""ModelStore.fresh: a store for one measured run that keeps the models put by hand and owns nothing else."""

from __future__ import annotations

from optimizer.models import ModelStore


def test_a_fresh_store_keeps_what_was_put_by_hand_and_leaves_it_open():
    class Model:
        closed = False

        def close(self):
            self.closed = True

    parent = ModelStore()
    mine, loaded = Model(), parent.get("loaded", Model)
    parent.put("mine", mine)
    parent.memo("vectors")["text"] = 1
    child = parent.fresh()
    assert child.keys() == ["mine"] and child.get("mine", Model) is mine
    assert child.memo("vectors") == {}
    own = child.get("own", Model)
    child.close()
    assert own.closed and not mine.closed and not loaded.closed
    parent.close()
    assert mine.closed and loaded.closed
