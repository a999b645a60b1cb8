"""The ``ragtrim`` command line, composed from the command groups of the layers below.

``optimize``, ``presets``, ``stages`` and ``models`` use the library (:mod:`optimizer`)
only; ``eval``, ``demo`` and ``tune`` the eval harness (:mod:`evals`). Each group lives in its own module
with a ``register(app)``; this module only puts them together, so adding a group is one
line in :func:`build_app`.

>>> from typer.testing import CliRunner
>>> "optimize" in CliRunner().invoke(app, ["--help"]).output
True
"""

from __future__ import annotations

import typer

from ragtrim.commands import evaluate, models, optimize, tune
from ragtrim.serve import commands as serve


def build_app() -> typer.Typer:
    """A new ``ragtrim`` Typer app with every command group registered."""
    app = typer.Typer(
        name="ragtrim",
        help="Rerank, deduplicate and compress retrieved chunks into a hard token budget, and measure what it costs.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    optimize.register(app)  # optimize, presets, stages
    evaluate.register(app)  # eval, demo
    tune.register(app)  # tune
    models.register(app)  # models build, models list
    serve.register(app)  # serve, usage, tenants, keys, budgets
    # Further groups register here, one line each.
    return app


app = build_app()


def main() -> None:
    """The ``ragtrim`` console script."""
    app()


if __name__ == "__main__":
    main()
