#!/usr/bin/env bash
# Build ragtrim's wheel, install it into a clean venv outside the checkout, and run it from another
# directory: the bundled sets, the price table and the models must come from the installed package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$root"
wheel=$(ls "$work"/dist/ragtrim-*.whl)
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet torch==2.13.0   # the CPU wheel first, or a CUDA build comes in
"$work/venv/bin/pip" install --quiet "${wheel}[embeddings,onnx,eval,reader,serve]"

cd "$work"   # anywhere but the checkout
export RAGTRIM_CACHE="$work/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PATH="$work/venv/bin:$PATH"
python - "$root" <<'PY'
import sys, optimizer, evals
from evals.datasets import bundled_dir
root = sys.argv[1]
for mod in (optimizer, evals):
    assert not mod.__file__.startswith(root), f"{mod.__name__} imported from the checkout: {mod.__file__}"
assert not str(bundled_dir()).startswith(root), bundled_dir()
print("installed package:", optimizer.__file__, "| bundled sets:", bundled_dir())
PY
ragtrim models build
ragtrim eval --data hotpotqa --pipelines default,quality,bm25-pack,fitted --budgets 0.125,0.25 --limit 60 --reader none --out runs/smoke
ragtrim demo --limit 40 --sample 4 --out runs/demo
python - <<'PY'
import json
r = json.load(open("runs/smoke/results.json"))
assert r["dataset"] == "hotpotqa" and r["n"] == 60, r["n"]
recall = {(x["pipeline"], x["budget"]): x["metrics"]["answer_recall"] for x in r["runs"]}
assert recall[("default", 0.25)] > 0.5 and recall[("fitted", 0.25)] > 0.5, recall
d = json.load(open("runs/demo/results.json"))
assert any(x["metrics"]["accuracy"] is not None for x in d["runs"]), "the local reader gave no accuracy"
print("eval and demo from the wheel passed:", {f"{k[0]}@{k[1]}": v for k, v in sorted(recall.items())})
PY
# the gateway's schema migrations ship in the wheel: a database the last ragtrim before them made is upgraded
cp "$root/tests/data/serve-schema-0001.sqlite" "$work/old.sqlite"
out=$(ragtrim db status --db "sqlite:///$work/old.sqlite"); grep -q "to run: 0001" <<<"$out"
out=$(ragtrim db upgrade --db "sqlite:///$work/old.sqlite"); grep -q "ran 0001, 0002" <<<"$out"
out=$(ragtrim tenants list --db "sqlite:///$work/old.sqlite"); grep -q "beta  (disabled)" <<<"$out"
echo "wheel smoke test passed (the gateway database upgraded from revision 0001)"
