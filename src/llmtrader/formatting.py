"""Number formatting shared by the prompt and the terminal output (no heavy imports)."""

from __future__ import annotations

import math


def fmt(value: float | None, digits: int = 7) -> str:
    """A number with about ``digits`` significant digits and no exponent; '-' when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - magnitude - 1)
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"
