"""What LlamaIndex really sends the LLM after ``RagtrimPostprocessor``, against the budget.

The repo's own Markdown files are read with ``SimpleDirectoryReader`` (which shows each node's
``file_path`` to the LLM and hides ``file_name``), cut by ``SentenceSplitter`` or
``MarkdownNodeParser``, retrieved top-20 by BM25 over the nodes (no embedding model needed),
and fitted to each budget. The context a response synthesizer builds from the kept nodes is
``"\\n\\n".join(node.get_content(MetadataMode.LLM))`` (``PromptHelper.repack``); this counts it.

    python bench/llama_index_sent.py                 # prints a table, one row per parser and budget
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_index.core import SimpleDirectoryReader  # noqa: E402
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from optimizer.integrations.llama_index import RagtrimPostprocessor  # noqa: E402
from optimizer.text import words  # noqa: E402
from optimizer.tokenizer import get_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILES = ["README.md", "optimizer/integrations/README.md", "datasets/README.md"]
QUERIES = [
    "How do I install ragtrim on a fresh machine?",
    "What does the budget count?",
    "How are tenants charged in the gateway?",
    "Which tokenizer is used by default?",
    "How do I wrap a LlamaIndex retriever?",
    "What happens when a worker dies?",
    "How are scores from the retriever used?",
    "Where are the models cached?",
]


def nodes_of(parser: str, folder: Path) -> list:
    docs = SimpleDirectoryReader(str(folder)).load_data()
    split = SentenceSplitter(chunk_size=128, chunk_overlap=20) if parser == "sentence" else MarkdownNodeParser()
    return split.get_nodes_from_documents(docs)


def retrieve(nodes: list, bm25: BM25Okapi, query: str, k: int = 20) -> list[NodeWithScore]:
    scores = bm25.get_scores(words(query))
    best = sorted(range(len(nodes)), key=lambda i: -scores[i])[:k]
    return [NodeWithScore(node=nodes[i], score=float(scores[i])) for i in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="150,300,600")
    args = parser.parse_args()
    count = get_tokenizer("cl100k_base").count
    folder = Path(tempfile.mkdtemp(prefix="ragtrim-sent-"))
    try:
        for name in FILES:
            shutil.copy(ROOT / name, folder / name.replace("/", "__"))
        print("| parser | budget | ragtrim's count, mean | sent to the LLM, mean | sent / budget, mean / max | over budget |")
        print("|---|---|---|---|---|---|")
        for kind in ("sentence", "markdown"):
            nodes = nodes_of(kind, folder)
            bm25 = BM25Okapi([words(n.get_content(metadata_mode=MetadataMode.NONE)) or ["_"] for n in nodes])
            for budget in (int(b) for b in args.budgets.split(",")):
                post = RagtrimPostprocessor(budget=budget)
                counted, sent = [], []
                for q in QUERIES:
                    out = post.postprocess_nodes(retrieve(nodes, bm25, q), query_str=q)
                    counted.append(post.last_result.tokens)
                    text = "\n\n".join(c.strip() for c in (n.node.get_content(metadata_mode=MetadataMode.LLM) for n in out) if c.strip())
                    sent.append(count(text))
                ratio = [s / budget for s in sent]
                print(f"| {kind} | {budget} | {statistics.mean(counted):.1f} | {statistics.mean(sent):.1f} | "
                      f"{statistics.mean(ratio):.2f} / {max(ratio):.2f} | {sum(s > budget for s in sent)} of {len(sent)} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
