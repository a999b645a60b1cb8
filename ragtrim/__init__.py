"""ragtrim's application layer: the ``ragtrim`` command line and the ``ragtrim serve`` gateway.

The library is :mod:`optimizer` (stages, pipeline, hard budget) and the eval harness is
:mod:`evals`. This package sits above both: it composes their commands into one command
line and runs the service. Nothing in :mod:`optimizer` or :mod:`evals` imports it.
"""
