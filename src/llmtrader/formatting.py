"""Number formatting shared by the prompt and the terminal output (no heavy imports)."""

from __future__ import annotations

import math


def fmt(value: float | None, digits: int = 7) -> str:
    """A number with about ``digits`` significant digits and no exponent; '-' when unknown."""
    if value is None or value != value:  # None or NaN
        return "-"
    if math.isinf(value):  # shown, never a crash (log10 of it has no floor)
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = digits - magnitude - 1
    if decimals <= 0:
        return f"{value:.0f}"
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
