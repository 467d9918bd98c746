"""The venue's per-symbol rules from exchangeInfo, as ``Decimal``s."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from llmtrader.errors import VenueError


@dataclass(frozen=True)
class SymbolRules:
    """Trading status and filters of one symbol. A zero means the venue does not apply that rule."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    percent_up: Decimal
    percent_down: Decimal

    @property
    def trading(self) -> bool:
        return self.status == "TRADING"

    def to_json(self) -> dict[str, str]:
        """A JSON-safe form (Decimals as strings) for the cache."""
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> SymbolRules:
        text = {"symbol", "status", "base_asset", "quote_asset"}
        return cls(**{k: (v if k in text else Decimal(v)) for k, v in data.items()})  # type: ignore[arg-type]


def _dec(value: Any, what: str, symbol: str) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        raise VenueError(f"exchangeInfo for {symbol}: {what} is not a number: {value!r}") from None


def parse_exchange_info(body: Any) -> dict[str, SymbolRules]:
    """Every perpetual symbol of an exchangeInfo reply, by name."""
    if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
        raise VenueError("exchangeInfo reply has no 'symbols' list")
    out: dict[str, SymbolRules] = {}
    for item in body["symbols"]:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
            continue
        symbol = item["symbol"]
        filters = {f.get("filterType"): f for f in item.get("filters", []) if isinstance(f, dict)}
        price = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        market_lot = filters.get("MARKET_LOT_SIZE", lot)
        notional = filters.get("MIN_NOTIONAL", {})
        percent = filters.get("PERCENT_PRICE", {})
        # The docs name the key 'notional'; live replies use 'minNotional'. Read both.
        min_notional = notional.get("minNotional", notional.get("notional"))
        out[symbol] = SymbolRules(
            symbol=symbol,
            status=str(item.get("status", "UNKNOWN")),
            base_asset=str(item.get("baseAsset", "")),
            quote_asset=str(item.get("quoteAsset", "")),
            tick_size=_dec(price.get("tickSize"), "tickSize", symbol),
            min_price=_dec(price.get("minPrice"), "minPrice", symbol),
            max_price=_dec(price.get("maxPrice"), "maxPrice", symbol),
            step_size=_dec(lot.get("stepSize"), "stepSize", symbol),
            min_qty=_dec(lot.get("minQty"), "minQty", symbol),
            max_qty=_dec(lot.get("maxQty"), "maxQty", symbol),
            market_step_size=_dec(market_lot.get("stepSize"), "MARKET_LOT_SIZE stepSize", symbol),
            market_min_qty=_dec(market_lot.get("minQty"), "MARKET_LOT_SIZE minQty", symbol),
            market_max_qty=_dec(market_lot.get("maxQty"), "MARKET_LOT_SIZE maxQty", symbol),
            min_notional=_dec(min_notional, "MIN_NOTIONAL", symbol),
            percent_up=_dec(percent.get("multiplierUp"), "multiplierUp", symbol),
            percent_down=_dec(percent.get("multiplierDown"), "multiplierDown", symbol),
        )
    if not out:
        raise VenueError("exchangeInfo reply lists no symbols")
    return out
