"""What a backtest keeps between its steps beyond what every process keeps
(:class:`~llmtrader.cycle.cache.KeptHistory`).

A run asks for its day's start equity at every one of thousands of steps; once settled it cannot change (a
backtest has no deposit or withdrawal), so it is read once a day. A backtest-only speed-up: on the live
path the read costs a few indexed seeks (0.03 ms) and is made each time.
"""

from __future__ import annotations

from llmtrader.core.times import DAY_MS
from llmtrader.cycle.cache import KeptHistory
from llmtrader.storage.facts import day_start_settled
from llmtrader.storage.store import Store


class BacktestCache(KeptHistory):
    """The :class:`~llmtrader.cycle.cache.HistoryCache` of a backtest run."""

    def __init__(self) -> None:
        super().__init__()
        self._day_start: dict[tuple[str, int], float] = {}  # (account, day) -> the day's start equity, settled

    def day_start_equity(self, store: Store, account: str, now_ms: int) -> float | None:
        day = now_ms - now_ms % DAY_MS
        found = self._day_start.get((account, day))
        if found is not None:
            return found
        found, settled = day_start_settled(store, account, now_ms)
        if found is not None and settled:
            if len(self._day_start) > 1024:
                self._day_start.clear()
            self._day_start[(account, day)] = found
        return found
