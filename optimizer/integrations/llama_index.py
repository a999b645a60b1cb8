"""LlamaIndex integration: a node postprocessor and a retriever wrapper that fit nodes to a token budget.

Three lines around an existing index::

    from optimizer.integrations.llama_index import RagtrimPostprocessor
    engine = index.as_query_engine(node_postprocessors=[RagtrimPostprocessor(budget=300)], llm=llm)
    engine.query("...")

or wrap any retriever: ``RagtrimRetriever(index.as_retriever(similarity_top_k=20), budget=300)``.

``pip install 'ragtrim[llama-index]'`` installs what the ``default`` preset needs (model2vec for
its static model). The model is built once, offline, into ragtrim's cache: call ``.warm_up()``
on the postprocessor or retriever (a few seconds the first time), or run
``ragtrim models build --only static``; a query never builds it.

What comes back: new :class:`~llama_index.core.schema.NodeWithScore` objects (the caller's
nodes are never modified; metadata, relationships and excluded-key lists are copied, the rest,
e.g. an ``IndexNode``'s ``obj``, is shared), one per kept node, in the order ragtrim rendered them, with the
node's ``id_``, metadata, relationships and score unchanged; the node text is what was kept,
and ``metadata["ragtrim_spans"]`` holds the kept ``[start, end]`` character ranges of the
original node text (left out of what LlamaIndex shows the LLM and the embedder).

The budget counts what LlamaIndex sends the LLM: each kept node as
``node.get_content(MetadataMode.LLM)`` (the metadata the LLM may see, by the node's
``metadata_template`` and ``text_template``, then the kept text), stripped, the nodes joined by
a blank line as LlamaIndex's response synthesizers join them; together they fit in ``budget``
tokens of ``tokenizer``. The query engine's prompt template comes on top, and with
``response_mode="simple_summarize"`` a little more (LlamaIndex prints that mode's context as a
Python list, ``['...']`` with line breaks as ``\\n``: a few tokens that grow with the line breaks). Set
``excluded_llm_metadata_keys`` on your nodes to spend less of the budget on metadata, and
``render="pipeline"`` to count the pipeline's own layout (``[1] title``) instead.

Nodes without text (an ``ImageNode`` with no text, an empty node) are skipped with a
logged warning and a ``skip-non-text`` step in the trace; ``non_text="keep"`` passes them
through unchanged after the text nodes instead. What LlamaIndex prints for such a node (its LLM
metadata, e.g. an image's ``file_path``) is counted in the budget, first; one whose metadata alone
does not fit is dropped with a warning. A share is then of the whole context (text and metadata):
``budget=1.0`` returns every node. A repeated node id is traced as ``id#2``; the trace's
``unique-ids`` step maps it back to the input's id and position.

>>> from llama_index.core.schema import NodeWithScore, TextNode
>>> nodes = [
...     NodeWithScore(node=TextNode(id_="a", text="Paris is the capital of France.", metadata={"title": "Paris"}), score=0.8),
...     NodeWithScore(node=TextNode(id_="b", text="Lyon is known for its food. " * 30), score=0.5),
... ]
>>> post = RagtrimPostprocessor(budget=30).warm_up()   # builds the static model once if missing
>>> out = post.postprocess_nodes(nodes, query_str="What is the capital of France?")
>>> [(n.node.id_, n.score) for n in out][0]
('a', 0.8)
>>> post.last_result.tokens <= 30, nodes[1].node.text.startswith("Lyon")
(True, True)
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, List, Literal, Optional, Union

from optimizer.integrations._common import (
    FRAME_KEY,
    SPANS_KEY,
    Item,
    PipelineCache,
    as_embedding,
    as_float,
    original_spans,
    make_pipeline,
    run_items,
    title_from,
    unique_ids,
)
from optimizer.lazy import lazy_import
from optimizer.pipeline import Pipeline, check_plain_steps
from optimizer.records import Chunk, Result, Span
from optimizer.render import Rendered, Renderer, visible
from optimizer.tokenizer import HFTokenizer, TiktokenTokenizer

lazy_import("llama_index.core", extra="llama-index", purpose="the LlamaIndex integration")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator  # noqa: E402
from llama_index.core.callbacks import CallbackManager  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_TITLE_KEYS = ("title", "file_name")

# What LlamaIndex's synthesizers send: each node as get_content(MetadataMode.LLM) (its LLM metadata,
# then its text, by the node's text_template), stripped, the nodes joined by a blank line (PromptHelper.repack).
@dataclasses.dataclass(frozen=True)
class StrippedRenderer(Renderer):
    """A :class:`~optimizer.render.Renderer` that strips each block (frame, text) as LlamaIndex does.

    ``TextNode.get_content`` and ``PromptHelper.repack`` strip each node's view before joining, so a
    text starting with a space is sent without it (and ``" Zurich"`` is 1 token, ``"Zurich"`` 3).
    Spans keep pointing at the same characters: a stripped piece's range shrinks with it. Blocks
    carry no ``[n]`` marker or title (``citations`` and ``titles`` are off).

    >>> from optimizer.records import Chunk
    >>> out = StrippedRenderer(frames="f").render([Chunk(id="a", text=" Zurich. "), Chunk(id="b", text="x", metadata={"f": ["m: 1\\n\\n", ""]})])
    >>> out.text, [(s.start, s.end, out.text[s.context_start:s.context_end]) for s in out.spans]
    ('Zurich.\\n\\nm: 1\\n\\nx', [(1, 8, 'Zurich.'), (0, 1, 'x')])
    """

    citations: bool = False
    titles: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.citations or self.titles:
            raise ValueError("StrippedRenderer prints no [n] markers or titles (LlamaIndex does not); set citations=False, titles=False")

    def render(self, chunks: Sequence[Chunk]) -> Rendered:
        out: list[str] = []
        spans: list[Span] = []
        pos = 0
        for chunk in visible(chunks):
            block = super().render([chunk])
            lo = len(block.text) - len(block.text.lstrip())
            hi = len(block.text.rstrip())
            if hi <= lo:
                continue
            if out:
                out.append(self.separator)
                pos += len(self.separator)
            out.append(block.text[lo:hi])
            for sp in block.spans:
                cs, ce = max(sp.context_start, lo), min(sp.context_end, hi)
                if cs < ce:
                    spans.append(Span(sp.chunk_id, sp.start + cs - sp.context_start, sp.end - (sp.context_end - ce),
                                      pos + cs - lo, pos + ce - lo))
            pos += hi - lo
        return Rendered("".join(out), tuple(spans))


LLAMA_INDEX_RENDERER = StrippedRenderer(separator="\n\n", frames=FRAME_KEY)
_CONTENT = "\x00ragtrim-content\x00"


def _llm_frame(node: BaseNode) -> tuple[str, str] | None:
    """What LlamaIndex prints before and after ``node``'s text for the LLM, or None if only the text.

    Read from the node class's own ``get_content(MetadataMode.LLM)`` on a shallow copy holding a
    marker as its text, so any node class (``TextNode``, ``Document``, a custom one) is printed as
    LlamaIndex prints it: its metadata by its templates, white space and all.
    """
    try:
        probe = node.model_copy()
        probe.set_content(_CONTENT)
        full = probe.get_content(metadata_mode=MetadataMode.LLM)
    except Exception:  # noqa: BLE001 - a node type without settable text content
        return None
    if not isinstance(full, str):
        return None
    head, found, tail = full.partition(_CONTENT)
    return (head, tail) if found and (head or tail) else None


def _llm_view(node: BaseNode) -> str:
    """What LlamaIndex prints for ``node`` (stripped), or "" when that fails."""
    try:
        view = node.get_content(metadata_mode=MetadataMode.LLM)
    except Exception:  # noqa: BLE001 - a media node without a text resource
        return ""
    return view.strip() if isinstance(view, str) else ""


def _copy(original: NodeWithScore) -> NodeWithScore:
    """A copy of ``original`` to hand back: what ragtrim may change (metadata, the excluded-key lists) and what a
    caller may edit in place (relationships, the embedding list) is copied; the rest (an ``IndexNode``'s
    object, a text resource) is shared, as ragtrim never modifies it (a deep copy of a query engine is
    slow, and one holding a lock cannot be copied)."""
    node = original.node
    update: dict[str, Any] = {
        "metadata": copy.deepcopy(node.metadata),
        "relationships": copy.deepcopy(node.relationships),
        "excluded_llm_metadata_keys": list(node.excluded_llm_metadata_keys),
        "excluded_embed_metadata_keys": list(node.excluded_embed_metadata_keys),
    }
    if isinstance(node.embedding, list):  # a list of floats: cheap to copy, and a caller may edit it in place
        update["embedding"] = list(node.embedding)
    return original.model_copy(update={"node": node.model_copy(update=update)})


def _node_text(node: BaseNode) -> str:
    """The node's own text (no metadata), or "" for nodes without text."""
    try:
        text = node.get_content(metadata_mode=MetadataMode.NONE)
    except Exception:  # noqa: BLE001 - a media node without a text resource
        return ""
    return text if isinstance(text, str) else ""


class RagtrimPostprocessor(BaseNodePostprocessor):
    """Rerank, deduplicate and compress retrieved nodes so their rendered text fits ``budget`` tokens.

    Parameters
    ----------
    budget:
        Tokens (``300``) or a share of the retrieved context (``0.25``). With ``pipeline``
        it overrides that pipeline's budget.
    pipeline:
        An :class:`optimizer.Pipeline`; by default preset ``preset`` with ``budget``.
    preset, tokenizer:
        Used when ``pipeline`` is not given (``default``, ``cl100k_base``).
    title_key:
        Metadata key(s) whose first non-empty value is the node's title in the rendered context.
    score_direction:
        How to read node scores: ``"similarity"`` (higher is better), ``"distance"`` (lower is better,
        e.g. ``FaissVectorStore`` over ``IndexFlatL2``) or ``"auto"`` (default: distances when they rise
        along the given order), as :class:`optimizer.Pipeline`'s ``score_direction``; set it when nodes
        come in reading order rather than best first.
    reuse_embeddings:
        Hand ``node.embedding`` to ragtrim's dense stages. Turn off when the index's embedding
        model differs from the one your ragtrim pipeline uses.
    non_text:
        ``"skip"`` (default) drops nodes without text with a warning; ``"keep"`` passes them through,
        their LLM metadata counted in the budget (with ``render="llama_index"``; a share is of text and metadata).
    render:
        ``"llama_index"`` (default): the budget counts the nodes as LlamaIndex sends them to the LLM
        (each node's LLM metadata, by its templates, then its text; nodes joined by a blank line).
        ``"pipeline"``: as the pipeline's own renderer prints them (``[1] title``), e.g. when you
        send ``last_result.text`` yourself.
    on_result:
        Called with each run's :class:`optimizer.Result` (also kept as :attr:`last_result`).

    Any pipeline, e.g. a BM25 baseline; ``budget`` here overrides the pipeline's:

    >>> from llama_index.core.schema import NodeWithScore, TextNode
    >>> nodes = [NodeWithScore(node=TextNode(id_="a", text="Paris is the capital of France."), score=0.4),
    ...          NodeWithScore(node=TextNode(id_="b", text="Lyon is a city in France."), score=0.9)]
    >>> post = RagtrimPostprocessor(pipeline=Pipeline.preset("bm25-pack"), budget=12)
    >>> [(n.node.id_, n.node.text, n.score) for n in post.postprocess_nodes(nodes, query_str="capital of France?")]
    [('a', 'Paris is the capital of France.', 0.4)]
    >>> post.last_result.tokens, nodes[1].node.text     # your nodes are left as they were
    (7, 'Lyon is a city in France.')
    """

    budget: Optional[Union[int, float, str]] = Field(default=None, description="tokens or a share of the context")
    preset: str = Field(default="default", description="ragtrim preset used when no pipeline is given")
    tokenizer: str = Field(default="cl100k_base", description="target tokenizer when no pipeline is given")
    title_key: Optional[Union[str, List[str]]] = Field(default=list(DEFAULT_TITLE_KEYS))
    score_direction: Literal["auto", "similarity", "distance"] = Field(default="auto", description="how to read node scores")
    reuse_embeddings: bool = Field(default=True)
    non_text: Literal["skip", "keep"] = Field(default="skip")
    render: Literal["llama_index", "pipeline"] = Field(default="llama_index")
    pipeline: Optional[Any] = Field(default=None, exclude=True)
    on_result: Optional[Callable[[Result], None]] = Field(default=None, exclude=True)

    _pipelines: PipelineCache = PrivateAttr(default_factory=PipelineCache)
    _last_result: Optional[Result] = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        self._build()

    @field_validator("pipeline", mode="before")
    @classmethod
    def _pipeline_from_config(cls, value: Any) -> Any:
        """A pipeline saved by :meth:`to_dict` (its ``to_config()``) built again, so ``from_dict`` runs the same steps."""
        return Pipeline.from_config(value) if isinstance(value, Mapping) else value

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """LlamaIndex's serialisation, with ``pipeline`` saved as its ``to_config()`` for ``from_dict`` to build again.

        The pipeline object itself is no field value LlamaIndex can save: left out, ``from_dict`` built
        preset ``default`` in its place (or refused, for a pipeline with its own budget). One a config cannot
        name (a stage not registered, a tokenizer object of your own) raises a ValueError saying what to do.

        >>> data = RagtrimPostprocessor(pipeline=Pipeline.preset("bm25-pack", tokenizer="o200k_base"), budget=50).to_dict()
        >>> back = RagtrimPostprocessor.from_dict(data).active_pipeline
        >>> back.name, back.tokenizer_name
        ('bm25-pack', 'o200k_base')
        """
        data = super().to_dict(**kwargs)
        if self.pipeline is not None and "pipeline" not in (kwargs.get("exclude") or ()):
            data["pipeline"] = _pipeline_config(self.pipeline)
        return data

    def _build(self) -> tuple[Pipeline, Any]:
        """The pipeline and budget override for the current settings (rebuilt when one was changed)."""
        self._pipelines = self._pipelines.own(self)
        return self._pipelines.get(self.pipeline, preset=self.preset, budget=self.budget, tokenizer=self.tokenizer,
                                   owner="RagtrimPostprocessor", renderer=LLAMA_INDEX_RENDERER if self.render == "llama_index" else None,
                                   score_direction=self.score_direction)

    @classmethod
    def class_name(cls) -> str:
        return "RagtrimPostprocessor"

    @property
    def last_result(self) -> Optional[Result]:
        """The :class:`optimizer.Result` of the latest call (context, tokens, spans, trace); None before the first.

        Shared by concurrent calls; use ``on_result`` to collect results per query.
        """
        return self._last_result

    @property
    def active_pipeline(self) -> Pipeline:
        """The pipeline this postprocessor runs (a copy of ``pipeline`` with LlamaIndex's layout, by default)."""
        return self._build()[0]

    def warm_up(self) -> RagtrimPostprocessor:
        """Load the pipeline's models now, building a missing one once, offline; returns the postprocessor.

        As :meth:`optimizer.Pipeline.warm_up`: a query never builds a model, so without this (or
        ``ragtrim models build --only static`` once, for the ``default`` preset) the first query
        on a fresh cache raises ``ModelNotBuiltError``.

        >>> RagtrimPostprocessor(budget=300).warm_up().active_pipeline.name
        'default'
        """
        self.active_pipeline.warm_up()
        return self

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            if not nodes:
                return []
            raise ValueError(
                "RagtrimPostprocessor needs the query to rank nodes; pass query_str='...' or query_bundle=QueryBundle('...')"
            )
        nodes = list(nodes)
        items = []
        ids = []
        for i, nws in enumerate(nodes):
            if not isinstance(nws, NodeWithScore):
                raise TypeError(
                    f"node #{i} must be a llama_index NodeWithScore, got {type(nws).__name__}: {nws!r:.80}; "
                    "wrap bare nodes as NodeWithScore(node=node, score=None)"
                )
            ids.append(nws.node.node_id)
        for i, (nws, cid) in enumerate(zip(nodes, unique_ids(ids))):
            node = nws.node
            text = _node_text(node)
            keep_view = self.non_text == "keep" and self.render == "llama_index" and not text.strip()
            items.append(
                Item(
                    index=i,
                    id=cid,
                    text=text,
                    title=title_from(node.metadata, self.title_key),
                    score=as_float(nws.score),
                    embedding=as_embedding(node.embedding) if self.reuse_embeddings else None,
                    frame=_llm_frame(node) if self.render == "llama_index" and text.strip() else None,
                    original_id=ids[i],
                    shown=_llm_view(node) if keep_view else "",
                )
            )
        pipeline, budget = self._build()
        run = run_items(pipeline, query_bundle.query_str, items, budget=budget, non_text=self.non_text)
        self._last_result = run.result
        if self.on_result is not None:
            self.on_result(run.result)
        out = [_kept_node(nodes[k.item.index], k.text, k.spans) for k in run.kept]
        if self.non_text == "keep":
            out.extend(_copy(nodes[i]) for i in run.skipped)
        return out

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        """:meth:`_postprocess_nodes` on a worker thread, so the event loop keeps running other tasks meanwhile.

        The pipeline is CPU work (and model calls) with nothing to await; run on the loop, it would
        stall every other task for the whole run. ``asyncio.to_thread`` copies the context, so a
        model store set with :func:`optimizer.models.use_store` is the one used.
        """
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)


def _pipeline_config(pipeline: Pipeline) -> dict[str, Any]:
    """``pipeline.to_config()``, checked to build the same pipeline again; a ValueError naming the fix when it cannot."""
    try:
        config = pipeline.to_config()
        check_plain_steps(config["steps"])
        if not isinstance(pipeline.tokenizer, (TiktokenTokenizer, HFTokenizer)):
            raise ValueError(f"its tokenizer is a {type(pipeline.tokenizer).__name__} object of your own, which a config names only")
        rebuilt = Pipeline.from_config(config)
        if rebuilt.to_config() != config or type(rebuilt.renderer) is not type(pipeline.renderer):
            raise ValueError("its config builds a different pipeline (a stage or renderer class of your own?)")
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        raise ValueError(
            f"RagtrimPostprocessor.to_dict cannot save its pipeline {pipeline.name!r}: {exc}. Make it one a config can name "
            "(register_stage(MyStage) for a stage of your own), or save without it, data = post.to_dict(exclude={'pipeline'}), "
            "and pass it again on load: RagtrimPostprocessor.from_dict(data, pipeline=<your pipeline>)"
        ) from exc
    return config


def _kept_node(original: NodeWithScore, text: str, spans: Sequence[tuple[int, int]]) -> NodeWithScore:
    """A copy of ``original`` (:func:`_copy`) holding only the kept text, with the kept ranges in its metadata."""
    out = _copy(original)
    node = out.node
    full = _node_text(original.node)
    start = getattr(node, "start_char_idx", None)
    previous = node.metadata.get(SPANS_KEY)
    if previous is not None:  # this node is an earlier run's output: map the ranges back to its original
        composed = original_spans(full, previous, spans, f"node {node.node_id}")
        if composed:
            if isinstance(start, int):
                start -= previous[0][0]  # the original's start
            spans = composed
    if text != full:
        node.set_content(text)
        if isinstance(start, int) and spans:  # envelope of what was kept, in document coordinates
            node.start_char_idx = start + spans[0][0]
            node.end_char_idx = start + spans[-1][1]
    node.metadata[SPANS_KEY] = [[s, e] for s, e in spans]
    for keys in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
        if SPANS_KEY not in keys:
            keys.append(SPANS_KEY)
    return out


def _forwarded(name: str) -> property:
    """A :class:`RagtrimRetriever` setting kept on its postprocessor, so setting it on the retriever applies from the next call.

    Before, the retriever took the settings once into its postprocessor: ``retriever.budget = 40``
    made a plain attribute that nothing read.
    """

    def get(self: RagtrimRetriever) -> Any:
        return getattr(self.postprocessor, name)

    def assign(self: RagtrimRetriever, value: Any) -> None:
        if name == "title_key" and not isinstance(value, (str, type(None))):
            value = list(value)
        setattr(self.postprocessor, name, value)

    doc = f"The postprocessor's ``{name}`` (see :class:`RagtrimPostprocessor`); a new value applies from the next call."
    return property(get, assign, doc=doc)


class RagtrimRetriever(BaseRetriever):
    """Wrap any LlamaIndex retriever so it returns budget-fitted nodes (sync and async).

    The settings (``budget``, ``pipeline``, ``preset``, ``tokenizer``, ``title_key``,
    ``score_direction``, ``reuse_embeddings``, ``non_text``, ``render``, ``on_result``) live on :attr:`postprocessor`;
    setting one on the retriever sets it there and applies from the next call.

    >>> from llama_index.core.schema import NodeWithScore, TextNode
    >>> class Fixed(BaseRetriever):
    ...     def _retrieve(self, query_bundle):
    ...         return [NodeWithScore(node=TextNode(id_=str(i), text=f"Fact number {i}. " * 20), score=1.0) for i in range(5)]
    >>> retriever = RagtrimRetriever(Fixed(), budget=60).warm_up()
    >>> nodes = retriever.retrieve("fact 3")
    >>> retriever.last_result.tokens <= 60 and 0 < len(nodes) < 5
    True
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        *,
        budget: Union[int, float, str, None] = None,
        pipeline: Optional[Pipeline] = None,
        preset: str = "default",
        tokenizer: str = "cl100k_base",
        title_key: Union[str, Sequence[str], None] = DEFAULT_TITLE_KEYS,
        score_direction: Literal["auto", "similarity", "distance"] = "auto",
        reuse_embeddings: bool = True,
        non_text: Literal["skip", "keep"] = "skip",
        render: Literal["llama_index", "pipeline"] = "llama_index",
        on_result: Optional[Callable[[Result], None]] = None,
        callback_manager: Optional[CallbackManager] = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(retriever, BaseRetriever):
            raise TypeError(
                f"RagtrimRetriever wraps a llama_index BaseRetriever, got {type(retriever).__name__}: {retriever!r:.80}; "
                "e.g. RagtrimRetriever(index.as_retriever(similarity_top_k=20), budget=300)"
            )
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.retriever = retriever
        self.postprocessor = RagtrimPostprocessor(
            budget=budget,
            pipeline=pipeline,
            preset=preset,
            tokenizer=tokenizer,
            title_key=title_key if isinstance(title_key, (str, type(None))) else list(title_key),
            score_direction=score_direction,
            reuse_embeddings=reuse_embeddings,
            non_text=non_text,
            render=render,
            on_result=on_result,
        )

    budget = _forwarded("budget")
    pipeline = _forwarded("pipeline")
    preset = _forwarded("preset")
    tokenizer = _forwarded("tokenizer")
    title_key = _forwarded("title_key")
    score_direction = _forwarded("score_direction")
    reuse_embeddings = _forwarded("reuse_embeddings")
    non_text = _forwarded("non_text")
    render = _forwarded("render")
    on_result = _forwarded("on_result")

    @property
    def last_result(self) -> Optional[Result]:
        """The :class:`optimizer.Result` of the latest retrieval."""
        return self.postprocessor.last_result

    def warm_up(self) -> RagtrimRetriever:
        """Load the pipeline's models now, building a missing one once, offline (:meth:`RagtrimPostprocessor.warm_up`); returns the retriever."""
        self.postprocessor.warm_up()
        return self

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        nodes = self.retriever.retrieve(query_bundle)
        return self.postprocessor.postprocess_nodes(nodes, query_bundle=query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        """The wrapped retriever's nodes, fitted to the budget on a worker thread (the event loop stays free)."""
        nodes = await self.retriever.aretrieve(query_bundle)
        return await self.postprocessor.apostprocess_nodes(nodes, query_bundle=query_bundle)


__all__ = ["RagtrimPostprocessor", "RagtrimRetriever"]
