"""Number formatting shared by the prompt and the terminal output, and untrusted text made safe for a
terminal (no heavy imports)."""

from __future__ import annotations

import math
import re

# What may not reach a terminal from text we did not write (model answers, venue messages, files):
# C0 controls but tab and newline (ESC starts cursor moves and screen erases, CR overwrites a line),
# DEL, C1 controls (U+009B is a one-byte CSI), and the bidirectional overrides and isolates that make
# text display in another order than it reads.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile("[\t\n]")


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


def safe_text(value: object, *, multiline: bool = True) -> str:
    """``value`` as text that cannot steer a terminal: control characters removed (tabs and, unless
    ``multiline``, newlines become spaces). Markup is not interpreted by the callers: rich gets it as
    ``rich.text.Text`` (render.untrusted), plain output prints it as it is."""
    text = _UNSAFE.sub("", value if isinstance(value, str) else str(value))
    return _BREAKS.sub(" ", text) if not multiline else text.replace("\t", " ")
