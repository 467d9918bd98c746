"""Numbers and words for people: values at a symbol's precision, near-miss suggestions (pure, no I/O)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


def decimals_of(step: Decimal) -> int:
    """How many decimals a tick or step size has: 0.1 -> 1, 0.001 -> 3, 1 -> 0, 0 (no rule) -> 8."""
    if step <= 0:
        return 8
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 8


def at_precision(value: Decimal, step: Decimal) -> str:
    """``value`` shown with the decimals of ``step`` (a tick or lot step), rounded half up, plain notation:
    an averaged entry 114219.1333333333333 with tick 0.1 gives '114219.1'."""
    places = decimals_of(step)
    try:
        shown = value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    except InvalidOperation:  # beyond the context's precision: shown as it is
        shown = value
    return format(shown, "f")


def did_you_mean(value: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The closest choice to a near miss (case-insensitive), or None; a choice that starts with the value
    (btc -> BTCUSDT) counts as close."""
    options = list(choices)
    wanted = value.strip().upper()
    starts = [c for c in options if c.upper().startswith(wanted)] if len(wanted) >= 2 else []
    if len(starts) >= 1:
        return min(starts, key=len)
    close = difflib.get_close_matches(wanted, [c.upper() for c in options], n=1, cutoff=cutoff)
    if not close:
        return None
    return next(c for c in options if c.upper() == close[0])


def suggestion(value: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    best = did_you_mean(value, choices)
    return f" (did you mean {best}?)" if best is not None and best != value else ""


def readable(value: Decimal | float | int | str | None, step: Decimal | None = None) -> str:
    """A price or size for people: at the decimals of ``step`` (the symbol's tick or lot step) when it is
    known, else by magnitude: six significant digits, at most eight decimals, trailing zeros dropped down to
    two decimals, plain notation (114219.1333333 -> '114219.13', 25.5 -> '25.50', 0.000123456789 ->
    '0.00012346'); '-' when unknown."""
    if value is None or isinstance(value, bool):
        return "-"
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return "-"
    if not number.is_finite():
        return str(number).lower()
    if step is not None and step > 0:
        return at_precision(number, step)
    if number == 0:
        return "0"
    magnitude = number.adjusted()  # floor(log10(|value|))
    places = min(8, max(2, 5 - magnitude))
    text = at_precision(number, Decimal(1).scaleb(-places))
    while "." in text and len(text) - text.index(".") > 3 and text.endswith("0"):  # keep two decimals
        text = text[:-1]
    return text


def json_price(value: Decimal | float | None, step: Decimal | None = None) -> float | None:
    """A computed price (an averaged entry or exit) for --json: rounded to the venue's tick when known,
    else to 8 decimals, so no division tail like 114219.1333333333333333333333 reaches the document."""
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    places = decimals_of(step) if step is not None and step > 0 else 8
    return float(number.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))
