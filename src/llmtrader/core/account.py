"""The account state a decision sees: balance, equity and open positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Position:
    """One open position, as the venue (or the paper account) reports it."""

    symbol: str
    side: Literal["long", "short"]
    size: float
    entry_price: float
    mark_price: float
    unrealized_pnl: float
    leverage: int
    liquidation_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    margin_type: Literal["isolated", "cross"] = "isolated"  # cross: the whole wallet backs it (see risk.py)

    @property
    def notional(self) -> float:
        return abs(self.size) * self.mark_price

    @property
    def margin(self) -> float:
        return self.notional / max(self.leverage, 1)


@dataclass(frozen=True)
class AccountState:
    """Balance and positions of one account at the time of a decision."""

    name: str
    mode: Literal["paper", "live"]
    balance_usd: float
    available_usd: float
    positions: tuple[Position, ...] = field(default_factory=tuple)

    @property
    def equity_usd(self) -> float:
        return self.balance_usd + sum(p.unrealized_pnl for p in self.positions)

    def position(self, symbol: str) -> Position | None:
        return next((p for p in self.positions if p.symbol == symbol), None)


def paper_account_state(name: str, balance_usd: float) -> AccountState:
    """A fresh paper account: the configured balance, all of it available, no positions."""
    return AccountState(name=name, mode="paper", balance_usd=balance_usd, available_usd=balance_usd)
