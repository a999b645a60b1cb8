"""LangChain integration: a document compressor that fits retrieved documents to a token budget.

Three lines around an existing retriever (``ContextualCompressionRetriever`` lives in the
``langchain`` / ``langchain-classic`` package)::

    from optimizer.integrations.langchain import RagtrimCompressor
    retriever = ContextualCompressionRetriever(base_compressor=RagtrimCompressor(budget=300), base_retriever=retriever)
    docs = retriever.invoke("...")

Each kept document comes back as a new ``Document`` (the caller's are never modified) with
the same ``id`` and metadata plus ``metadata["ragtrim_spans"]``, the kept ``[start, end]``
character ranges of the original ``page_content``, in the order ragtrim rendered them.
Documents with empty text are dropped (with a logged warning and a ``skip-non-text`` trace
step). A ``score`` in metadata (``score_key``) is used as the retriever's score.

The budget counts the documents as LangChain's stuff chains put them in the prompt by default
(``create_stuff_documents_chain``: each ``page_content``, a blank line between), so the kept
documents joined that way fit in ``budget`` tokens; ``render="pipeline"`` counts the pipeline's
own layout (``[1] title``) instead, e.g. when you send ``last_result.text`` yourself.

Needs ``langchain-core`` (``pip install 'ragtrim[langchain]'``, which also installs model2vec for
the ``default`` preset's static model); importing this module works without it, using
:class:`RagtrimCompressor` then raises an error with the install hint. The static model is built
once, offline, into ragtrim's cache: ``RagtrimCompressor(...).warm_up()`` does it (a few seconds
the first time), or ``ragtrim models build --only static``; a call never builds it.

>>> from langchain_core.documents import Document
>>> docs = [Document(id="a", page_content="Paris is the capital of France.", metadata={"title": "Paris"}),
...         Document(id="b", page_content="Lyon is known for its food. " * 30)]
>>> compressor = RagtrimCompressor(budget=30).warm_up()
>>> out = compressor.compress_documents(docs, "What is the capital of France?")
>>> out[0].id, out[0].metadata["ragtrim_spans"], compressor.last_result.tokens <= 30
('a', [[0, 31]], True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Optional, Union

from optimizer.integrations._common import (
    SPANS_KEY,
    Item,
    PipelineCache,
    as_float,
    original_spans,
    make_pipeline,
    run_items,
    title_from,
    unique_ids,
)
from optimizer.lazy import lazy_import
from optimizer.pipeline import Pipeline
from optimizer.records import Result
from optimizer.render import Renderer

# What LangChain's stuff chains send by default: each document's page_content, a blank line between.
LANGCHAIN_RENDERER = Renderer(citations=False, titles=False, separator="\n\n")

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import Document
    from langchain_core.documents.compressor import BaseDocumentCompressor
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError:  # pragma: no cover - exercised only without the extra
    BaseDocumentCompressor = None  # type: ignore[assignment,misc]


def __getattr__(name: str) -> Any:  # only reached when langchain-core is missing
    if name == "RagtrimCompressor":
        lazy_import("langchain_core", extra="langchain", purpose="the LangChain integration (RagtrimCompressor)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if BaseDocumentCompressor is not None:

    class RagtrimCompressor(BaseDocumentCompressor):
        """Rerank, deduplicate and compress documents so their rendered text fits ``budget`` tokens.

        Parameters
        ----------
        budget:
            Tokens (``300``) or a share of the retrieved context (``0.25``); overrides the
            pipeline's budget when ``pipeline`` is given.
        pipeline:
            An :class:`optimizer.Pipeline`; by default preset ``preset`` with ``budget``.
        preset, tokenizer:
            Used when ``pipeline`` is not given (``default``, ``cl100k_base``).
        title_key:
            Metadata key(s) whose first non-empty value is the document's title.
        score_key:
            Metadata key holding the retriever's score, if any.
        score_direction:
            How to read that score: ``"similarity"`` (higher is better), ``"distance"`` (lower is
            better, e.g. FAISS L2) or ``"auto"`` (default: distances when they rise along the given
            order), as :class:`optimizer.Pipeline`'s ``score_direction``; set it when documents come
            in reading order rather than best first.
        render:
            ``"langchain"`` (default): the budget counts the kept documents as LangChain's stuff
            chains join them (``page_content``, a blank line between); ``"pipeline"``: as the
            pipeline's own renderer prints them.
        on_result:
            Called with each run's :class:`optimizer.Result` (also kept as :attr:`last_result`).

        Any pipeline, e.g. a BM25 baseline; ``budget`` here overrides the pipeline's:

        >>> from langchain_core.documents import Document
        >>> docs = [Document(page_content="Paris is the capital of France.", metadata={"score": 0.4}),
        ...         Document(page_content="Lyon is a city in France.", metadata={"score": 0.9})]
        >>> compressor = RagtrimCompressor(pipeline=Pipeline.preset("bm25-pack"), budget=12)
        >>> [(d.page_content, d.metadata) for d in compressor.compress_documents(docs, "capital of France?")]
        [('Paris is the capital of France.', {'score': 0.4, 'ragtrim_spans': [[0, 31]]})]
        >>> compressor.last_result.text, compressor.last_result.tokens
        ('Paris is the capital of France.', 7)
        """

        model_config = ConfigDict(arbitrary_types_allowed=True)

        budget: Optional[Union[int, float, str]] = None
        preset: str = "default"
        tokenizer: str = "cl100k_base"
        title_key: Optional[Union[str, list[str]]] = Field(default_factory=lambda: ["title"])
        score_key: Optional[str] = "score"
        score_direction: Literal["auto", "similarity", "distance"] = "auto"
        render: Literal["langchain", "pipeline"] = "langchain"
        pipeline: Optional[Any] = Field(default=None, exclude=True)
        on_result: Optional[Callable[[Result], None]] = Field(default=None, exclude=True)

        _pipelines: PipelineCache = PrivateAttr(default_factory=PipelineCache)
        _last_result: Optional[Result] = PrivateAttr(default=None)

        def model_post_init(self, __context: Any) -> None:
            self._build()

        def _build(self) -> tuple[Pipeline, Any]:
            """The pipeline and budget override for the current settings (rebuilt when one was changed)."""
            self._pipelines = self._pipelines.own(self)
            return self._pipelines.get(self.pipeline, preset=self.preset, budget=self.budget, tokenizer=self.tokenizer,
                                       owner="RagtrimCompressor", renderer=LANGCHAIN_RENDERER if self.render == "langchain" else None,
                                       score_direction=self.score_direction)

        @property
        def last_result(self) -> Optional[Result]:
            """The :class:`optimizer.Result` of the latest call; None before the first."""
            return self._last_result

        @property
        def active_pipeline(self) -> Pipeline:
            """The pipeline this compressor runs (a copy of ``pipeline`` with LangChain's layout, by default)."""
            return self._build()[0]

        def warm_up(self) -> RagtrimCompressor:
            """Load the pipeline's models now, building a missing one once, offline; returns the compressor.

            As :meth:`optimizer.Pipeline.warm_up`: a call never builds a model, so without this (or
            ``ragtrim models build --only static`` once, for the ``default`` preset) the first call
            on a fresh cache raises ``ModelNotBuiltError``.

            >>> RagtrimCompressor(budget=300).warm_up().active_pipeline.name
            'default'
            """
            self.active_pipeline.warm_up()
            return self

        def compress_documents(
            self, documents: Sequence[Document], query: str, callbacks: Optional[Callbacks] = None
        ) -> Sequence[Document]:
            """Return the kept documents, cut to what was kept, in rendered order."""
            docs = list(documents)
            for i, doc in enumerate(docs):
                if not isinstance(doc, Document):
                    raise TypeError(_not_a_document(i, doc, self.score_key))
            items = [
                Item(
                    index=i,
                    id=cid,
                    text=doc.page_content if isinstance(doc.page_content, str) else "",
                    title=title_from(doc.metadata, self.title_key),
                    score=as_float(doc.metadata.get(self.score_key)) if self.score_key is not None else None,
                    original_id=doc.id,
                )
                for i, (doc, cid) in enumerate(zip(docs, unique_ids([d.id for d in docs])))
            ]
            pipeline, budget = self._build()
            run = run_items(pipeline, query, items, budget=budget)
            self._last_result = run.result
            if self.on_result is not None:
                self.on_result(run.result)
            out = []
            for k in run.kept:
                original = docs[k.item.index]
                metadata = original.model_copy(deep=True).metadata
                spans = k.spans
                if SPANS_KEY in metadata:  # an earlier run's output: ranges of the original it was cut from
                    spans = original_spans(k.item.text, metadata[SPANS_KEY], spans, f"document {k.item.id}") or spans
                metadata[SPANS_KEY] = [[s, e] for s, e in spans]
                out.append(original.model_copy(update={"page_content": k.text, "metadata": metadata}))
            return out


def _not_a_document(i: int, item: Any, score_key: Optional[str]) -> str:
    """Why item ``i`` is refused; a ``(Document, score)`` pair (``similarity_search_with_score``) is told how to pass it.

    >>> print(_not_a_document(0, (Document(page_content="x"), 0.2), "score"))
    document #0 is a (Document, score) pair, as similarity_search_with_score returns; pass Documents with the score in doc.metadata['score'] (the compressor's score_key; L2 distances handed over best first are read as distances): [Document(page_content=d.page_content, id=d.id, metadata={**d.metadata, 'score': s}) for d, s in pairs]
    """
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Document):
        key = score_key if score_key is not None else "score"
        where = (f"in doc.metadata[{key!r}] (the compressor's score_key" if score_key is not None
                 else f"in doc.metadata[{key!r}] and set score_key={key!r} (it is None, so no score is read")
        return (
            f"document #{i} is a (Document, score) pair, as similarity_search_with_score returns; pass Documents with the "
            f"score {where}; L2 distances handed over best first are read as distances): "
            f"[Document(page_content=d.page_content, id=d.id, metadata={{**d.metadata, {key!r}: s}}) for d, s in pairs]"
        )
    return f"document #{i} must be a langchain_core Document, got {type(item).__name__}: {item!r:.80}"


__all__ = ["RagtrimCompressor"]
