"""``python -m ragtrim.serve serve|usage|tenants|keys|budgets ...``."""

from __future__ import annotations

import typer

from ragtrim.serve.commands import register


def main() -> None:
    app = typer.Typer(name="ragtrim-serve", help="ragtrim serve: the RAG context gateway with per-tenant budgets.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
