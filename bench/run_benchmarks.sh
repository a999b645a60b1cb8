#!/usr/bin/env bash
# Reproduce the tables in BENCHMARKS.md. Usage: bash bench/run_benchmarks.sh [OUT_DIR]
# Every preset on every bundled set, reader-free (about 15 min on 2 cores; the float-MiniLM
# baselines dense-topk and sentence-dense take most of it), then the local reader.
set -euo pipefail
OUT=${1:-runs/bench}
export HF_HUB_OFFLINE=1
B=0.125,0.25,0.5
for data in hotpotqa 2wiki nq-multidoc squad2-pools; do
    ragtrim eval --data $data --pipelines all --budgets $B --reader none --out "$OUT/$data"
done
# local reader (packaged Gemma-3-270M; ~20 min on an idle machine, cached in OUT/hotpotqa-local/reader-cache.sqlite)
ragtrim eval --data hotpotqa --limit 100 --pipelines default,quality,fitted,bm25-pack,dense-topk,truncate \
    --config bench/configs/default-link-every.json --config bench/configs/default-no-link-lead.json --config bench/configs/default-distilled.json \
    --budgets 0.125,0.25 --reader local \
    --reader-on default@0.125,default@0.25,default-link-every@0.125,default-link-every@0.25,default-no-link-lead@0.125,default-no-link-lead@0.25,default-distilled@0.125,default-distilled@0.25,quality@0.125,quality@0.25,fitted@0.25,bm25-pack@0.25,dense-topk@0.25,truncate@0.25 \
    --out "$OUT/hotpotqa-local"
# wrong-fact near-copies (BENCHMARKS.md, "Issue 11, third round"): built from the bundled sets, old dedupe as extra arms
for data in squad2-pools nq-multidoc hotpotqa 2wiki; do
    python bench/conflicts.py $data --out "$OUT/conflicts/$data-wrong-before.jsonl"
    ragtrim eval --data "$OUT/conflicts/$data-wrong-before.jsonl" --pipelines default,quality,truncate,bm25-pack,dense-topk,sentence-dense \
        --config bench/configs/default-dropdups.json --config bench/configs/quality-dropdups.json --budgets $B,1.0 --reader none \
        --out "$OUT/conflicts/$data"
done
# thorough (BENCHMARKS.md, "Issue 11, fourth round"): the packaged Gemma reranks 8 candidates; seconds per question
for data in nq-multidoc hotpotqa; do
    ragtrim eval --data $data --limit 100 --pipelines thorough,quality,default,truncate,bm25-topk,bm25-pack,dense-topk,sentence-dense \
        --budgets $B --reader none --out "$OUT/thorough/$data"
done
# the trained static model (BENCHMARKS.md, "Issue 11, fifth round"): default against default with the plain distilled model
for data in nq-multidoc squad2-pools hotpotqa 2wiki; do
    ragtrim eval --data $data --pipelines default --config bench/configs/default-distilled.json --budgets $B --reader none \
        --out "$OUT/static/given-$data"
    ragtrim eval --data $data --limit 200 --retrieve faiss --top-k 20 --pipelines default,truncate \
        --config bench/configs/default-distilled.json --budgets $B --reader none --out "$OUT/static/ret-$data"
done
[ -f runs/fit-extra/nq-extra.jsonl ] || python bench/fit_extra.py   # the fit-only dev sets
# the chunk prior's cosine weight with the trained model, chosen leave-one-dataset-out (BENCHMARKS.md, "Issue 11, fifth round")
for v in 0 0.25 0.5 1.0; do for data in hotpotqa 2wiki squad2-pools nq-multidoc runs/fit-extra/nq-extra.jsonl runs/fit-extra/squad-extra.jsonl; do
    python bench/stages.py --data $data --pipelines default --set compress-sentences.chunk_dense=$v \
        --set compress-sentences.link_lead=0 --label cd$v --out "$OUT/static/cd.jsonl"   # link_lead as in the fifth round
done; done
python bench/lodo_setting.py "$OUT/static/cd.jsonl" --incumbent cd0.25
# the lead of the chunk the second hop brings in (BENCHMARKS.md, "Issue 11, sixth round"): link_lead chosen
# leave-one-dataset-out for default and quality, then both against link_lead 0, given and retrieval mode
for v in 0 0.3 0.6 1.0 1.5 2.0 3.0; do for data in hotpotqa 2wiki squad2-pools nq-multidoc runs/fit-extra/nq-extra.jsonl runs/fit-extra/squad-extra.jsonl; do
    python bench/stages.py --data $data --pipelines default --set compress-sentences.link_lead=$v \
        --set compress-sentences.link_chunks=0 --label llu$v --out "$OUT/linklead/llu.jsonl"   # link_chunks as in the sixth round
done; done
python bench/lodo_setting.py "$OUT/linklead/llu.jsonl" --incumbent llu0
for v in 0 0.6 1.0; do for data in hotpotqa 2wiki squad2-pools nq-multidoc runs/fit-extra/nq-extra.jsonl runs/fit-extra/squad-extra.jsonl; do
    python bench/stages.py --data $data --pipelines quality --set compress-sentences.link_lead=$v \
        --set compress-sentences.link_chunks=0 --label qll$v --out "$OUT/linklead/qll.jsonl"
done; done
python bench/lodo_setting.py "$OUT/linklead/qll.jsonl" --incumbent qll0
# only the best-linked chunk gains (BENCHMARKS.md, "Issue 11, seventh round"): link_chunks chosen leave-one-dataset-out
# for default and quality, link_lead re-checked with it
for data in hotpotqa 2wiki squad2-pools nq-multidoc runs/fit-extra/nq-extra.jsonl runs/fit-extra/squad-extra.jsonl; do
    for v in 0 1 2; do
        python bench/stages.py --data $data --pipelines default --set compress-sentences.link_chunks=$v --label top$v --out "$OUT/linklead/top.jsonl"
    done
    for v in 0 1; do
        python bench/stages.py --data $data --pipelines quality --set compress-sentences.link_chunks=$v --label qlc$v --out "$OUT/linklead/qlc.jsonl"
    done
    for v in 0.6 1.0 1.5 2.0; do
        python bench/stages.py --data $data --pipelines default --set compress-sentences.link_lead=$v --label lc1ll$v --out "$OUT/linklead/lcll.jsonl"
    done
done
python bench/lodo_setting.py "$OUT/linklead/top.jsonl" --incumbent top0
python bench/lodo_setting.py "$OUT/linklead/qlc.jsonl" --incumbent qlc0
python bench/lodo_setting.py "$OUT/linklead/lcll.jsonl" --incumbent lc1ll1.0
# today's presets against the sixth round's (every linked chunk gains) and against no link_lead at all:
# given mode, the wrong-fact stress sets, retrieval mode
ARMS="--config bench/configs/default-link-every.json --config bench/configs/quality-link-every.json --config bench/configs/default-no-link-lead.json --config bench/configs/quality-no-link-lead.json"
ALSO=default-link-every,quality-link-every,default-no-link-lead,quality-no-link-lead
for data in nq-multidoc squad2-pools hotpotqa 2wiki; do
    ragtrim eval --data $data --pipelines default,quality $ARMS --budgets $B --reader none --out "$OUT/linklead/given-$data"
    python bench/paired.py "$OUT/linklead/given-$data" --arms default,quality --base "$OUT/$data" --also $ALSO
    ragtrim eval --data $data --limit 200 --retrieve faiss --top-k 20 --pipelines default,truncate \
        --config bench/configs/default-link-every.json --config bench/configs/default-no-link-lead.json --budgets $B --reader none --out "$OUT/linklead/ret-$data"
done
for data in hotpotqa 2wiki; do
    ragtrim eval --data "$OUT/conflicts/$data-wrong-before.jsonl" --pipelines default,quality $ARMS --budgets $B --reader none \
        --out "$OUT/linklead/stress-$data"
    python bench/paired.py "$OUT/linklead/stress-$data" --arms default,quality --also $ALSO
done
