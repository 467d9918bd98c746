"""History replayed through the same cycle: candle files and their download, the simulated market, the
replay and its figures."""
