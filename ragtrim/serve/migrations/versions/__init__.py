"""One module per schema revision (see :mod:`ragtrim.serve.migrations`)."""
