"""bench/fit_scorer.py --check: the shipped scorer files must be what the fit script gives.

Floats may move by the tolerance (another CPU's float kernels); fit sizes, feature names and
the selector settings may not move at all.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("fit_scorer", ROOT / "bench" / "fit_scorer.py")
fit_scorer = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(fit_scorer)

SHIPPED = ROOT / "optimizer" / "data" / "scorer-quality.json"


def shipped() -> dict:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


def text(d: dict) -> str:
    return json.dumps(d, indent=1, sort_keys=True) + "\n"


def test_the_same_file_passes(capsys):
    assert fit_scorer.check(SHIPPED, SHIPPED.read_text(encoding="utf-8"), 1e-3)
    assert "unchanged" in capsys.readouterr().out


def test_a_weight_moved_within_the_tolerance_passes(capsys):
    d = shipped()
    d["plain"]["coef"][3] += 4e-4
    assert fit_scorer.check(SHIPPED, text(d), 1e-3)
    assert "same within atol" in capsys.readouterr().out


def test_a_weight_moved_beyond_the_tolerance_fails_and_names_it(capsys):
    d = shipped()
    old = d["retriever"]["coef"][5]
    d["retriever"]["coef"][5] = old + 0.01
    assert not fit_scorer.check(SHIPPED, text(d), 1e-3)
    out = capsys.readouterr().out
    assert "WOULD CHANGE" in out and ".retriever.coef[5]" in out


def test_a_changed_fit_size_fails_even_by_one_sentence():
    d = shipped()
    d["info"]["fitted_on"]["plain"]["hotpotqa"]["sentences"] += 1
    assert fit_scorer.differences(shipped(), d, 1e-3) == [
        f".info.fitted_on.plain.hotpotqa.sentences: {d['info']['fitted_on']['plain']['hotpotqa']['sentences'] - 1} -> "
        f"{d['info']['fitted_on']['plain']['hotpotqa']['sentences']}"]


def test_another_selector_setting_fails_but_a_near_tie_in_its_recall_does_not():
    a = shipped()
    b = copy.deepcopy(a)
    b["info"]["selector_recall_on_those"] += 7e-4  # one replayed question of 1,440
    assert fit_scorer.differences(a, b, 1e-3) == []
    b["info"]["selector"]["density"] = 0.5 if a["info"]["selector"]["density"] != 0.5 else 1.0
    b["info"]["selector"]["tight_sentences"] = 4 - a["info"]["selector"]["tight_sentences"]
    assert [d.split(":")[0] for d in fit_scorer.differences(a, b, 1e-3)] == [".info.selector.density", ".info.selector.tight_sentences"]


def test_a_missing_or_renamed_feature_fails():
    a = shipped()
    b = copy.deepcopy(a)
    b["plain"]["names"] = b["plain"]["names"][:-1]
    assert fit_scorer.differences(a, b, 1e-3)
    assert not fit_scorer.check(SHIPPED.with_name("nowhere.json"), text(a), 1e-3)


def test_a_near_tie_selector_passes_only_if_the_refit_lists_the_shipped_one_as_close(tmp_path, capsys):
    a = shipped()
    a["info"]["selector"] = {"coverage": 0.2, "density": 1.0, "redundancy": 0.0, "tight_sentences": 4}
    path = tmp_path / "scorer-quality.json"
    path.write_text(text(a), encoding="utf-8")
    b = copy.deepcopy(a)  # the refit on another CPU: tight_sentences 0 won by one replayed question
    b["info"]["selector"] = {**a["info"]["selector"], "tight_sentences": 0}
    b["info"]["selector_recall_on_those"] = a["info"]["selector_recall_on_those"] + 0.0007
    b["info"]["selector_close"] = [{"settings": a["info"]["selector"], "recall": a["info"]["selector_recall_on_those"]}]
    assert fit_scorer.check(path, text(b), 1e-3)
    assert "near tie" in capsys.readouterr().out
    assert not fit_scorer.check(path, text({**b, "info": {**b["info"], "selector_close": []}}), 1e-3)
    b["plain"]["coef"][0] += 0.01  # a near tie excuses the selector, nothing else
    assert not fit_scorer.check(path, text(b), 1e-3)


def test_another_cpus_spread_passes_only_when_the_features_differ(tmp_path, capsys):
    """A weight moved by 0.03 (as between an AMX Xeon and an AVX2 EPYC) fails the exact check
    and passes the loose one; a move past LOOSE_ATOL fails both."""
    a = shipped()
    a["info"]["kernels"] = "fitted-here"
    path = tmp_path / "scorer-quality.json"
    path.write_text(text(a), encoding="utf-8")
    b = copy.deepcopy(a)
    b["plain"]["coef"][2] += 0.03
    assert fit_scorer.compare_mode(path, "fitted-here", 1e-3) == (False, 1e-3, fit_scorer.NEAR_TIE)
    assert not fit_scorer.check(path, text(b), 1e-3)
    capsys.readouterr()
    loose, atol, tie = fit_scorer.compare_mode(path, "another-cpu", 1e-3)
    assert (loose, atol, tie) == (True, fit_scorer.LOOSE_ATOL, fit_scorer.LOOSE_TIE)
    assert "fitted-here" in capsys.readouterr().out
    b["info"]["kernels"] = "another-cpu"
    assert fit_scorer.check(path, text(b), atol, loose=True)
    assert "largest move 0.03 at .plain.coef[2]" in capsys.readouterr().out
    b["plain"]["coef"][2] += fit_scorer.LOOSE_ATOL
    assert not fit_scorer.check(path, text(b), atol, loose=True)


def test_a_file_without_kernels_is_checked_loosely(tmp_path, capsys):
    a = shipped()
    a["info"].pop("kernels", None)
    path = tmp_path / "scorer-quality.json"
    path.write_text(text(a), encoding="utf-8")
    assert fit_scorer.compare_mode(path, "here", 1e-3)[0]
    assert "before the kernels were recorded" in capsys.readouterr().out


def test_a_loose_selector_tie_needs_the_shipped_settings_within_the_wider_tie(tmp_path, capsys):
    a = shipped()
    a["info"]["selector"] = {"coverage": 0.2, "density": 1.0, "redundancy": 0.0, "tight_sentences": 4}
    path = tmp_path / "scorer-quality.json"
    path.write_text(text(a), encoding="utf-8")
    b = copy.deepcopy(a)  # the refit elsewhere: tight_sentences 0 won by 0.0057
    b["info"]["selector"] = {**a["info"]["selector"], "tight_sentences": 0}
    b["info"]["selector_recall_on_those"] = 0.9075
    b["info"]["kernels"] = "another-cpu"
    b["info"]["selector_close"] = [{"settings": a["info"]["selector"], "recall": 0.9018}]
    assert fit_scorer.check(path, text(b), fit_scorer.LOOSE_ATOL, loose=True)
    assert "recall 0.9018 in the refit, its choice 0.9075" in capsys.readouterr().out
    b["info"]["selector_close"] = []  # the shipped settings are further than LOOSE_TIE behind
    assert not fit_scorer.check(path, text(b), fit_scorer.LOOSE_ATOL, loose=True)
    b["info"]["selector"] = a["info"]["selector"]  # same settings: selector_close is not compared when loose
    assert fit_scorer.check(path, text(b), fit_scorer.LOOSE_ATOL, loose=True)


def test_the_fingerprint_is_stable_and_names_the_vectors():
    here = fit_scorer.kernels_fingerprint()
    assert len(here) == 16 and int(here, 16) >= 0
    assert fit_scorer.kernels_fingerprint() == here
