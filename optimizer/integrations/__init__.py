"""Drop ragtrim into an existing RAG stack.

- :mod:`optimizer.integrations.llama_index`: ``RagtrimPostprocessor`` (a node postprocessor)
  and ``RagtrimRetriever`` (wraps any retriever), extra ``ragtrim[llama-index]``.
- :mod:`optimizer.integrations.langchain`: ``RagtrimCompressor`` (a document compressor for
  ``ContextualCompressionRetriever``), extra ``ragtrim[langchain]``.

Each module imports its framework only when imported itself; this package imports nothing.
"""
