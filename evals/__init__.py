"""ragtrim's eval harness: datasets, readers, metrics, sweeps and reports.

The harness measures answer quality against tokens saved, per pipeline and budget, so a
team can pick a budget from numbers. Entry point: ``ragtrim eval`` (the command line is :mod:`ragtrim.cli`; the sweep is :func:`evals.sweep.run_eval`).
"""
