#!/usr/bin/env bash
# Reproduce the tables in BENCHMARKS.md. Usage: bash bench/run_benchmarks.sh [OUT_DIR]
# The MiniLM presets (dense-topk, sentence-dense, quality) embed every chunk or sentence with
# MiniLM (~68 sentences/s on 2 cores), so on the 20-passage nq-multidoc set they run on the
# first 100 questions; everything else runs on whole sets.
set -euo pipefail
OUT=${1:-runs/bench}
export HF_HUB_OFFLINE=1
B=0.125,0.25,0.5
FAST=truncate,bm25-topk,bm25-pack,default
ragtrim eval --data hotpotqa --pipelines all --budgets $B --reader none --out "$OUT/hotpotqa"
for data in 2wiki nq-multidoc squad2-pools; do
    ragtrim eval --data $data --pipelines $FAST --budgets $B --reader none --out "$OUT/$data"
done
ragtrim eval --data 2wiki --pipelines dense-topk,sentence-dense,quality --budgets $B --reader none --out "$OUT/2wiki-minilm"
ragtrim eval --data nq-multidoc --limit 100 --pipelines all --budgets $B --reader none --out "$OUT/nq-multidoc-100-all"
# local reader (packaged Gemma-3-270M; ~15 min on an idle machine, cached in OUT/hotpotqa-local/reader-cache.sqlite)
ragtrim eval --data hotpotqa --limit 100 --pipelines default,bm25-pack,truncate --budgets 0.125,0.25 --reader local \
    --reader-on default@0.125,default@0.25,bm25-pack@0.25,truncate@0.25 --out "$OUT/hotpotqa-local"
