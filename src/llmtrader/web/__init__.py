"""``llmtrader serve``: the dashboard, JSON API, live stream and /metrics; a reader of the store, never a
second engine. Imported only by the ``serve`` command, so ``llmtrader --help`` never loads the web stack."""
