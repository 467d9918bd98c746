"""llmtrader: a scheduled command-line trading agent for crypto perpetual futures."""
