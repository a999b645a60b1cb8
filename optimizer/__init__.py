"""ragtrim's optimizer: rerank, deduplicate and compress retrieved chunks into a hard token budget.

>>> from optimizer import Pipeline
>>> result = Pipeline.preset("default", budget=40).run(
...     "Who wrote Hamlet?",
...     ["Hamlet is a tragedy written by William Shakespeare.", "Macbeth is another play."],
... )
>>> result.tokens <= 40 and "Shakespeare" in result.text
True

The pieces, one module each: :mod:`optimizer.records` (Chunk, Span, Result, trace),
:mod:`optimizer.tokenizer` (the Tokenizer protocol: any object with ``name``, ``encode``,
``count`` and ``prefix_within`` counts for a pipeline), :mod:`optimizer.stage` (the Stage protocol, the read-only
StageContext and the per-run RunCache), :mod:`optimizer.registry`, :mod:`optimizer.pipeline`,
:mod:`optimizer.packer`, :mod:`optimizer.render`, :mod:`optimizer.presets`,
:mod:`optimizer.stages`, :mod:`optimizer.scoring` (BM25, best-first order, titled text),
:mod:`optimizer.validate` (checks of settings), :mod:`optimizer.cache` (where models are
built, atomically) and :mod:`optimizer.testing` (the conformance check for your own
stages). This package is the library: it never imports the eval harness (:mod:`evals`)
or the app (:mod:`ragtrim`).
"""

from optimizer.budget import parse_budget, resolve_budget
from optimizer.deadline import Deadline, OptimizerStopped, OptimizerTimeout
from optimizer.pipeline import Pipeline
from optimizer.presets import list_presets
from optimizer.records import Chunk, Drop, Result, Span, StageTrace
from optimizer.registry import list_stages, make_stage, register_stage
from optimizer.render import Renderer
from optimizer.stage import RunCache, Stage, StageContext, StageOutput
from optimizer.tokenizer import Tokenizer, get_tokenizer

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "Deadline",
    "Drop",
    "OptimizerStopped",
    "OptimizerTimeout",
    "Pipeline",
    "Renderer",
    "Result",
    "RunCache",
    "Span",
    "Stage",
    "StageContext",
    "StageOutput",
    "StageTrace",
    "Tokenizer",
    "get_tokenizer",
    "list_presets",
    "list_stages",
    "make_stage",
    "parse_budget",
    "register_stage",
    "resolve_budget",
]
