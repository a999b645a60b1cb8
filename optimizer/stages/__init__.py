"""Built-in stages, one module per family: basic, rerank, dedupe, compress, order, lm_prune.

Use them by name through :func:`optimizer.registry.make_stage` or import the classes.
"""
