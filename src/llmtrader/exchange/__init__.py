"""Venue adapters: the ``Exchange`` and ``MarketData`` ports, AsterDEX (market data, orders, signing), the paper
account and the simulated one of backtests."""
