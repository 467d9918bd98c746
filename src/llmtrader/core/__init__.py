"""Pure values and rules: the decision schema, limits, risk checks, context and prompt, indicators, trades, guard
state and figures. Nothing here does I/O or imports an I/O library (import-linter's ``core-pure`` contract)."""
