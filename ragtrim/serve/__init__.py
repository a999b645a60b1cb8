"""``ragtrim serve``: a gateway that optimizes RAG context per request and enforces per-tenant
token and dollar budgets before the model is called.

The pieces, one idea per module:

* :mod:`.config` the settings (a TOML file, all optional), :mod:`.paths` the cache directory;
* :mod:`.db` the engine (SQLite by default, PostgreSQL for several replicas), :mod:`.schema`
  the tables;
* :mod:`.pricing` integer micro-dollar prices from the dated table in ``evals/prices.toml``;
* :mod:`.quota` atomic reserve / settle / release / expire, :mod:`.lease` the thread that renews
  a worker's holds and expires a dead worker's, :mod:`.ledger` one row per request,
  :mod:`.budgets`, :mod:`.keys` tenants, hashed API keys and budgets (library functions the
  admin routes and commands share);
* :mod:`.upstream` OpenAI-compatible and local model (packaged Gemma) clients,
  :mod:`.fake_upstream` a fake OpenAI-compatible server for tests and load tests,
  :mod:`.testing` loopback servers and a throwaway PostgreSQL;
* :mod:`.plan` the degrade-before-refusing planner, :mod:`.bodies` request parsing and limits,
  :mod:`.auth`, :mod:`.optimize`, :mod:`.chat`, :mod:`.usage`, :mod:`.admin` the HTTP
  endpoints, :mod:`.page` the usage page, :mod:`.metrics`, :mod:`.logs`, :mod:`.service`
  (the parts of one running process), :mod:`.app` the application factory,
  :mod:`.commands` the command line (``register(app)``) and ``python -m ragtrim.serve``.

The quota and ledger logic needs no HTTP: see :class:`ragtrim.serve.quota.QuotaStore`.
"""
