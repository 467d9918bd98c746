"""The paper account moved through history by a backtest: the :class:`~llmtrader.exchange.base.Exchange` port
on a :class:`~llmtrader.exchange.paper.PaperBook` held in memory.

The same book as the paper exchange (the same fills, fees, slippage, triggers, funding and liquidation to
the last digit); only the source of time differs. The backtest calls :meth:`SimulatedExchange.advance_to`
before each cycle, which walks every candle that closed since the last step through the book, in time
order across symbols, with each funding settlement at its time (before the candle that opens then). The
cycle then reads and trades at the close of the newest candle.

Fills and funding payments are written to the store as they happen (``paper_fills``, ``paper_funding``),
so the cycle's trade feedback, the limits that need history and the statistics read them exactly as on
the paper account. The book itself is stored once at the start and once at the end of the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import numpy as np

from llmtrader.core.filters import SymbolRules
from llmtrader.errors import StoreError, VenueError
from llmtrader.exchange.base import Balance, HistoryRead, MarginType, OrderRequest, OrderState, VenuePosition
from llmtrader.exchange.paper import PaperBook, PaperConfig, PaperStore, _reject

if TYPE_CHECKING:
    from llmtrader.core.market import Candles


@dataclass(frozen=True)
class Tape:
    """One symbol's history as the book walks it: the candles that trigger orders, and funding settlements.

    ``prices`` holds each candle's open, high, low and close as the decimals of the data file (through
    ``str(float)``, which gives back the shortest text of the value read). ``funding_marks`` holds, per
    settlement, the price it is valued at (:func:`llmtrader.backtest.data.settlement_marks`); None, or no entry:
    the book's mark when it is replayed.
    """

    symbol: str
    interval_ms: int
    open_time_ms: np.ndarray  # int64, ascending
    prices: tuple[tuple[Decimal, Decimal, Decimal, Decimal], ...]
    funding_times_ms: np.ndarray  # int64, ascending
    funding_rates: tuple[Decimal, ...]
    funding_marks: tuple[Decimal | None, ...] = ()

    @classmethod
    def of(
        cls,
        candles: Candles,
        interval_ms: int,
        funding_times_ms: np.ndarray,
        funding_rates: Sequence[Decimal],
        funding_marks: Sequence[Decimal | None] = (),
    ) -> Tape:
        prices = tuple(
            (Decimal(repr(o)), Decimal(repr(h)), Decimal(repr(lo)), Decimal(repr(c)))
            for o, h, lo, c in zip(
                candles.open.tolist(), candles.high.tolist(), candles.low.tolist(), candles.close.tolist(), strict=True
            )
        )
        return cls(
            candles.symbol,
            interval_ms,
            candles.open_time_ms.astype(np.int64),
            prices,
            np.asarray(funding_times_ms, dtype=np.int64),
            tuple(funding_rates),
            tuple(funding_marks),
        )


class SimulatedExchange:
    """The Exchange port of a backtest: a paper book in memory, moved by :meth:`advance_to`."""

    mode: Literal["paper", "live"] = "paper"
    # Every request is answered from memory, at once: requests that a cycle sends together are awaited in
    # turn (exchange.base.together), without a task each.
    in_memory = True

    def __init__(
        self,
        store: PaperStore,
        tapes: Mapping[str, Tape],
        rules: Mapping[str, SymbolRules],
        *,
        account: str,
        balance: Decimal,
        config: PaperConfig,
        start_ms: int,
    ) -> None:
        self.store = store
        self.account = account
        self.tapes = dict(tapes)
        self._rules = dict(rules)
        self.book = PaperBook(balance, config)
        self.now_ms = start_ms
        # Per symbol: the index of the next candle to walk and of the next funding settlement. The first candle
        # to walk is the one in progress at the start (its open is at or before it), as advance_to leaves it
        # for every later step: an order placed at the first step is watched from that candle on.
        self._next_candle = {
            s: int(t.open_time_ms.searchsorted(start_ms - t.interval_ms, "right")) for s, t in self.tapes.items()
        }
        self._next_funding = {
            s: int(np.searchsorted(t.funding_times_ms, start_ms, "right")) for s, t in self.tapes.items()
        }
        self.funding_events = 0  # settlements the data held while a position was open
        self._lost: StoreError | None = None  # fills and funding that could not be stored
        self._set_marks(start_ms)
        self.save_state()

    # ---- time ----------------------------------------------------------------------------------
    def advance_to(self, now_ms: int) -> None:
        """Walk every candle closed by ``now_ms`` and every funding settlement at or before it, in time
        order, then value the account at the close of each symbol's newest closed candle. Symbols without a
        position or an open order are not walked: nothing of theirs can trigger.

        A candle counts at the time its fills are stamped (its last millisecond), so a settlement inside a
        candle (08:00 and 16:00 in a daily one) is charged on the position held before that candle's fills,
        and one at a candle's open before that candle. It is valued at the tape's price for its instant
        (``funding_marks``: never a price from after it), else at the book's mark."""
        if self._lost is not None:
            raise self._lost  # the run cannot go on with fills the store does not hold
        events: list[tuple[int, int, str, int]] = []
        active = self.book.active_symbols()
        for symbol, tape in self.tapes.items():
            start = self._next_candle[symbol]
            # A candle is walked once it has closed: open + interval <= now.
            stop = int(tape.open_time_ms.searchsorted(now_ms - tape.interval_ms, "right"))
            if symbol in active:
                last_ms = tape.interval_ms - 1
                events.extend((int(tape.open_time_ms[i]) + last_ms, 1, symbol, i) for i in range(start, stop))
            self._next_candle[symbol] = max(start, stop)
            f_start = self._next_funding[symbol]
            f_stop = int(tape.funding_times_ms.searchsorted(now_ms, "right"))
            if symbol in active:
                events.extend((int(tape.funding_times_ms[i]), 0, symbol, i) for i in range(f_start, f_stop))
            self._next_funding[symbol] = max(f_start, f_stop)
        events.sort()
        for when, kind, symbol, i in events:
            tape = self.tapes[symbol]
            if kind == 1:
                self.book.on_candle(symbol, int(tape.open_time_ms[i]), tape.interval_ms, *tape.prices[i])
            else:
                known = tape.funding_marks[i] if i < len(tape.funding_marks) else None
                mark = known if known is not None else self.book.mark(symbol)
                if mark is not None and self.book.on_funding(symbol, when, tape.funding_rates[i], mark) is not None:
                    self.funding_events += 1
        for symbol in list(self.book.changes):
            self.book.forget_changes_before(symbol, now_ms + 1)  # every settlement by now_ms is settled
        self.now_ms = now_ms
        self._set_marks(now_ms)
        self._flush()

    def _set_marks(self, now_ms: int) -> None:
        for symbol, tape in self.tapes.items():
            i = int(tape.open_time_ms.searchsorted(now_ms - tape.interval_ms, "right")) - 1
            if i >= 0:
                self.book.set_mark(symbol, tape.prices[i][3])

    # ---- the Exchange port ---------------------------------------------------------------------
    async def rules(self) -> dict[str, SymbolRules]:
        return dict(self._rules)

    async def mark_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        out = {}
        for symbol in symbols:
            mark = self.book.mark(symbol)
            if mark is None:
                raise VenueError(f"no candle of {symbol} has closed by {self.now_ms} in the backtest's data")
            out[symbol] = mark
        return out

    async def balance(self) -> Balance:
        return self.book.balance()

    async def positions(self) -> list[VenuePosition]:
        return self.book.positions()

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return self.book.open_orders(symbol)

    async def place_order(self, request: OrderRequest) -> OrderState:
        rules = self._rules.get(request.symbol)
        if rules is None:
            raise _reject(-1121, f"Invalid symbol {request.symbol}.")
        mark = self.book.mark(request.symbol)
        if mark is None:
            raise VenueError(f"no mark price for {request.symbol}")
        try:
            return self.book.place(request, mark, rules, self.now_ms)
        finally:
            self._flush()

    async def query_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return self.book.query(symbol, client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return self.book.cancel(symbol, client_order_id, self.now_ms)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        self.book.set_leverage(symbol, leverage)

    async def hedge_mode(self) -> bool:
        """A paper account is in one-way mode."""
        return False

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        self.book.set_margin_type(symbol, margin_type)

    async def trade_history(self, *, refresh: bool, now_ms: int) -> HistoryRead:
        """The run's fills and funding as stored (every one is stored as it happens)."""
        return HistoryRead(
            read=lambda: self.store.paper_history(self.account),
            changes=lambda since: self.store.paper_history_changes(self.account, since),
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    # ---- storage -------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Store the book (the run's paper account: its deposit is the starting balance of the statistics)."""
        text = json.dumps({"book": self.book.to_json(), "sync": {}}, sort_keys=True, separators=(",", ":"))
        self.store.upsert_paper_state(self.account, text, self.now_ms)

    def _flush(self) -> None:
        """Write the book's new fills and funding payments."""
        events = self.book.take_events()
        if not events:
            return
        failure = f"cannot store the fills of backtest {self.account!r} in {self.store.path}"
        try:
            self.store.insert_paper_events(self.account, events, failure=failure)
        except StoreError as exc:
            # The order that made them may report only "unknown" to execution, which goes on: the next step
            # stops the run instead (advance_to), and a batch of steps is rolled back whole.
            self._lost = exc
            raise
