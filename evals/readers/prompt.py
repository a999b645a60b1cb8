"""The reader prompt: one fixed template, filled with the question and the rendered context.

A template is plain text with exactly the placeholders ``{context}`` and ``{question}``.
The answer is cut to its first line, because the readers are asked for a few words.

>>> p = format_prompt(DEFAULT_TEMPLATE, "Capital of France?", "[1] Paris is the capital.")
>>> print(p)
Answer the question in a few words using the documents.
<BLANKLINE>
Documents:
[1] Paris is the capital.
<BLANKLINE>
Question: Capital of France?
Answer:
>>> postprocess("  Paris\\nQuestion: ...")
'Paris'
"""

from __future__ import annotations

import string

DEFAULT_TEMPLATE = (
    "Answer the question in a few words using the documents.\n\n"
    "Documents:\n{context}\n\n"
    "Question: {question}\nAnswer:"
)
"""The template every reader uses unless told otherwise (it goes in reports verbatim)."""

GEMMA_TURN_TEMPLATE = "<start_of_turn>user\n" + DEFAULT_TEMPLATE + "<end_of_turn>\n<start_of_turn>model\n"
""":data:`DEFAULT_TEMPLATE` in Gemma's chat turns, for instruction-tuned Gemma GGUFs (the
packaged base model answers far worse with it; see :mod:`evals.readers.local`)."""

_FIELDS = frozenset({"context", "question"})


def check_template(template: str) -> str:
    """Return ``template`` if its only placeholders are ``{context}`` and ``{question}``.

    >>> check_template("Q: {question}")
    Traceback (most recent call last):
    ...
    ValueError: a reader template needs the placeholders {context} and {question}; 'Q: {question}' lacks {context}
    """
    if not isinstance(template, str):
        raise TypeError(f"a reader template must be a string, got {type(template).__name__}: {template!r}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(
            f"reader template {template!r} is not a valid format string ({exc}); "
            "write literal braces as {{ and }}"
        ) from exc
    missing = sorted(_FIELDS - names)
    if missing:
        raise ValueError(
            "a reader template needs the placeholders {context} and {question}; "
            f"{template!r} lacks " + " and ".join("{" + m + "}" for m in missing)
        )
    extra = sorted(names - _FIELDS)
    if extra:
        raise ValueError(
            f"reader template {template!r} has unknown placeholders {extra}; only {{context}} and "
            "{question} are filled (write literal braces as {{ and }})"
        )
    return template


def format_prompt(template: str, question: str, context: str) -> str:
    """Fill ``template`` with ``question`` and ``context`` (braces inside them are left alone)."""
    return check_template(template).format(context=context, question=question)


def postprocess(text: str) -> str:
    """Strip white space and keep the first line: the short answer the reader was asked for."""
    text = text.strip()
    return text.split("\n", 1)[0].strip()
