"""``python -m ragtrim`` runs the command line."""

from ragtrim.cli import main

main()
