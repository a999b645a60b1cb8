"""Write ``optimizer/data/english-word-freq.tsv.gz``: English word frequencies for BM25's word weights.

BM25 estimates how informative a query word is from the chunks of one call (its IDF), and a
retriever hands over chunks that all share the question's words, so 10-20 of them say little.
This table gives the word's frequency in general English instead, from the ``wordfreq``
package (Robyn Speer et al.; data CC BY-SA 4.0, built from Wikipedia, subtitles, news, books,
web text and more), rounded to the Zipf scale (log10 of occurrences per billion words, two
decimals). Only words the package's tokenizer keeps whole and ``optimizer.text.words`` reads
as one word are written.

    pip install wordfreq==3.1.1
    python bench/build_word_freq.py            # 2-3 s; prints how many words and the smallest Zipf value
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from optimizer.text import words

OUT = Path(__file__).resolve().parents[1] / "optimizer" / "data" / "english-word-freq.tsv.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=100_000, help="how many of the most frequent words (default 100,000)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import wordfreq

    rows: dict[str, float] = {}
    for w in wordfreq.top_n_list("en", args.words, wordlist="best"):
        if words(w) != [w] or w in rows:
            continue
        rows[w] = round(wordfreq.zipf_frequency(w, "en", wordlist="best"), 2)
    lines = [f"# English word frequencies (Zipf scale) from wordfreq {wordfreq.__version__ if hasattr(wordfreq, '__version__') else '3.1.1'} (data CC BY-SA 4.0); bench/build_word_freq.py"]
    lines += [f"{w}\t{z:.2f}" for w, z in rows.items()]
    with gzip.open(args.out, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(rows)} words, Zipf {min(rows.values()):.2f} to {max(rows.values()):.2f}: {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
