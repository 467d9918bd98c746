"""The portfolio decision schema, and tolerant parsing of model answers into it.

One pydantic model drives everything: the JSON schema sent to the model, the parsing of its answer,
and the validation messages that go back to it when it is asked again.
"""

from __future__ import annotations

import copy
import json
import math
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError


class Action(StrEnum):
    """What to do with one asset. ``buy`` opens or adds to a long, ``sell`` opens or adds to a short."""

    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"
    ADJUST_POSITION = "adjust_position"
    CLOSE_POSITION = "close_position"
    ADJUST_ORDERS = "adjust_orders"


OPENING_ACTIONS = frozenset({Action.BUY, Action.SELL})


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Bounds on the numbers of an answer. No price, allocation or total in a sound answer comes near a trillion USD;
# beyond it a number is absurd (and it stays far inside the 28 digits a Decimal rounded to a venue's tick holds).
# No venue offers leverage near 10,000; a larger figure is refused, not capped.
MAX_DECISION_NUMBER = 1e12
MAX_DECISION_LEVERAGE = 10_000
# Every number is a finite JSON number: text, booleans, Infinity and NaN are refused, never coerced.
_NUMBER: dict[str, Any] = {"strict": True, "allow_inf_nan": False}


def _at_most(bound: float) -> AfterValidator:
    """An upper bound checked on the value but left out of the JSON schema: the schema is part of every request
    and of its hash, so a bound written there would stop every recorded answer from replaying."""

    def check(value: Any) -> Any:
        if value is not None and value > bound:
            raise ValueError(f"Input should be less than or equal to {bound:g}")
        return value

    return AfterValidator(check)


_USD = _at_most(MAX_DECISION_NUMBER)


def _whole_number(value: Any) -> Any:
    """Leverage as a JSON number (5 or 5.0), never text or a boolean."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole JSON number")
    return value


class AssetDecision(BaseModel):
    """The model's decision for one asset."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(description="One of the symbols asked for, e.g. BTCUSDT.")
    action: Action
    rationale: str = Field(description="Why, in one or two sentences.")
    allocation_usd: Annotated[float, _USD] = Field(
        ge=0, **_NUMBER, description="Margin committed in USD (0 for hold and close)."
    )
    leverage: Annotated[int, Field(ge=1), BeforeValidator(_whole_number), _at_most(MAX_DECISION_LEVERAGE)] = Field(
        description="Leverage; notional = allocation_usd * leverage."
    )
    entry_price: Annotated[float | None, _USD] = Field(
        default=None, gt=0, **_NUMBER, description="Limit entry price; null for a market entry."
    )
    tp_price: Annotated[float | None, _USD] = Field(
        default=None, gt=0, **_NUMBER, description="Take-profit trigger price."
    )
    sl_price: Annotated[float | None, _USD] = Field(
        default=None, gt=0, **_NUMBER, description="Stop-loss trigger price."
    )
    confidence: float = Field(ge=0, le=1, **_NUMBER, description="0 to 1.")
    risk_level: RiskLevel


class PortfolioDecision(BaseModel):
    """One decision for the whole portfolio: an entry per asset plus a portfolio-level view."""

    model_config = ConfigDict(extra="forbid")

    assets: list[AssetDecision]
    portfolio_rationale: str
    total_allocation_usd: Annotated[float, _USD] = Field(ge=0, **_NUMBER)
    portfolio_risk_level: RiskLevel


class DecisionParseError(ValueError):
    """The answer is not a valid decision; ``errors`` are 'location: message' lines for a re-ask."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _strictify(node: Any) -> Any:
    """Make every object schema strict: all properties required, no extra properties."""
    if isinstance(node, dict):
        out = {k: _strictify(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out:
            out["required"] = list(out["properties"])
            out["additionalProperties"] = False
        for key in ("title", "default"):
            out.pop(key, None)
        return out
    if isinstance(node, list):
        return [_strictify(v) for v in node]
    return node


_SCHEMA_CACHE: dict[str, Any] = {}


def decision_json_schema() -> dict[str, Any]:
    """The strict JSON schema of :class:`PortfolioDecision`, as sent in ``response_format``."""
    if "strict" not in _SCHEMA_CACHE:
        _SCHEMA_CACHE["strict"] = _strictify(PortfolioDecision.model_json_schema())
    return copy.deepcopy(_SCHEMA_CACHE["strict"])


def format_validation_errors(exc: ValidationError) -> list[str]:
    """Validation errors as 'location: message' lines, the same text the model gets when re-asked."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        lines.append(f"{loc}: {err.get('msg', 'invalid')} (got {json.dumps(err.get('input'))[:80]})")
    return lines


_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def _top_level_braces(text: str) -> list[int]:
    """Positions of each '{' that is not nested inside another object (strings are skipped)."""
    starts: list[int] = []
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"' and depth:
            in_string = True
        elif ch == "{":
            if depth == 0:
                starts.append(i)
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
    return starts


def _float_or_text(literal: str) -> float | str:
    """A JSON number too large for a float (1e400) stays its text, as Infinity and NaN do: never a float inf."""
    value = float(literal)
    return value if math.isfinite(value) else literal


def _int_or_text(literal: str) -> int | str:
    """A JSON integer of more than 300 digits stays its text: no float could hold it."""
    return int(literal) if len(literal.lstrip("-")) <= 300 else literal


# Infinity, -Infinity, NaN and overflowing numbers are read as their text, so they fail the schema as what they
# are (naming the field) and everything kept from the answer stays valid JSON.
_DECODER = json.JSONDecoder(parse_constant=str, parse_float=_float_or_text, parse_int=_int_or_text)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``: inside code fences or with prose around it.

    Non-finite numbers (``Infinity``, ``NaN``, ``1e400``) are read as text, so no float inf or NaN leaves here.
    """
    if not text or not text.strip():
        raise DecisionParseError(["(root): the answer is empty"])
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = _DECODER
    last_error = "no JSON object found in the answer"
    for candidate in candidates:
        stripped = candidate.strip()
        if stripped.startswith("{"):
            # The usual answer is one bare object: the scan below would try position 0 first anyway.
            try:
                value, _ = decoder.raw_decode(stripped, 0)
            except json.JSONDecodeError:
                pass
            else:
                if isinstance(value, dict):
                    return value
        for start in _top_level_braces(stripped):
            try:
                value, _ = decoder.raw_decode(stripped, start)
            except json.JSONDecodeError as exc:
                truncated = " (the answer looks cut off)" if exc.pos >= len(stripped) - 1 else ""
                last_error = f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{truncated}"
                continue
            if isinstance(value, dict):
                return value
    raise DecisionParseError([f"(root): {last_error}"])


def parse_decision(text: str) -> tuple[PortfolioDecision, dict[str, Any]]:
    """Parse a whole answer strictly; raise DecisionParseError with re-ask lines when it fails."""
    obj = extract_json_object(text)
    try:
        return PortfolioDecision.model_validate(obj), obj
    except ValidationError as exc:
        raise DecisionParseError(format_validation_errors(exc)) from None


class InvalidAsset(BaseModel):
    """An asset entry that failed the schema, kept so it is recorded as rejected with its errors."""

    index: int
    symbol: str | None
    raw: Any
    errors: list[str]


class LenientDecision(BaseModel):
    """What can be salvaged from an answer that failed the schema as a whole."""

    assets: list[AssetDecision]
    invalid: list[InvalidAsset]
    portfolio_rationale: str
    total_allocation_usd: float | None
    portfolio_risk_level: str | None


def _sound_total(total: Any) -> float | None:
    """total_allocation_usd when it is worth comparing with the validated sum: a finite number within the bound."""
    if isinstance(total, bool) or not isinstance(total, (int, float)):
        return None
    value = float(total)
    return value if math.isfinite(value) and 0 <= value <= MAX_DECISION_NUMBER else None


def salvage_decision(obj: dict[str, Any]) -> LenientDecision:
    """Validate each asset entry on its own, so one bad asset never voids the others."""
    raw_assets = obj.get("assets")
    valid: list[AssetDecision] = []
    invalid: list[InvalidAsset] = []
    if not isinstance(raw_assets, list):
        raw_assets = []
    for index, raw in enumerate(raw_assets):
        symbol = raw.get("symbol") if isinstance(raw, dict) else None
        try:
            valid.append(AssetDecision.model_validate(raw))
        except ValidationError as exc:
            errors = [f"assets.{index}.{line}" for line in format_validation_errors(exc)]
            invalid.append(
                InvalidAsset(
                    index=index,
                    symbol=symbol.upper() if isinstance(symbol, str) else None,
                    raw=raw,
                    errors=errors,
                )
            )
    rationale = obj.get("portfolio_rationale")
    total = obj.get("total_allocation_usd")
    level = obj.get("portfolio_risk_level")
    return LenientDecision(
        assets=valid,
        invalid=invalid,
        portfolio_rationale=rationale if isinstance(rationale, str) else "",
        total_allocation_usd=_sound_total(total),
        portfolio_risk_level=level if isinstance(level, str) else None,
    )


def lenient_from_decision(decision: PortfolioDecision) -> LenientDecision:
    """A fully valid decision in the same shape as a salvaged one."""
    return LenientDecision(
        assets=list(decision.assets),
        invalid=[],
        portfolio_rationale=decision.portfolio_rationale,
        total_allocation_usd=decision.total_allocation_usd,
        portfolio_risk_level=decision.portfolio_risk_level.value,
    )
