"""The ``ragtrim`` commands, one module per group; each has ``register(app)``.

:mod:`ragtrim.cli` composes them into one command line.
"""
