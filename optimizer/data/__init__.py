"""Package data: the fitted sentence scorers (``scorer-*.json``, written by ``bench/fit_scorer.py``)."""
