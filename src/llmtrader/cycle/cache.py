"""What a cycle reads of the account's history, kept between the cycles of one process.

A cycle shows the model the account's recent trades and performance, rebuilt from every fill it ever made,
and checks its limits against facts aggregated over every order and fill. Read again at every cycle, both
cost what the account's history costs: measured on a live paper cycle with a year of hourly history (8,760
fills; bench/bench_run.py, ``BENCH_RUN_HISTORY=1``), the rebuild took 220 ms and the facts 26 ms per read,
against a cycle's overhead of about 40 ms. So the process keeps them (:class:`KeptHistory`) and reads only
what was recorded since, whatever the exchange: it asks the exchange's answer what changed
(:attr:`~llmtrader.exchange.base.HistoryRead.changes`) and the store's trading version. Orders are never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from llmtrader.core.trades import AccountHistory, PerformanceSummary, TradeLedger, TradeSummary
from llmtrader.exchange.base import HistoryRead, HistoryVersion
from llmtrader.storage.facts import (
    AccountFacts,
    FactsCursor,
    account_facts,
    caught_up,
    day_start_baseline,
    read_facts,
    trading_version,
)
from llmtrader.storage.store import Store

TradeFigures = tuple[list[TradeSummary], PerformanceSummary]


class HistoryCache(Protocol):
    """The trade figures a prompt shows and the facts the limits need, each as the store holds them now."""

    def trade_figures(self, store: Store, account: str, recent: int, history: HistoryRead) -> TradeFigures:
        """The ``recent`` last closed trades and the performance, rebuilt from ``history`` (the exchange's
        answer). Raises ValueError when the recorded fills do not add up."""
        ...

    def account_facts(self, store: Store, account: str, now_ms: int) -> AccountFacts:
        """:func:`llmtrader.storage.facts.account_facts`, the same to the last field."""
        ...


@dataclass
class _Trades:
    """The account's trades as of history version ``version``, and the figures shown, per number shown."""

    version: HistoryVersion
    ledger: TradeLedger
    since_ms: int | None
    starting_balance: Decimal | None
    figures: dict[int, TradeFigures] = field(default_factory=dict)


class KeptHistory:
    """The :class:`HistoryCache` of a process: the trades in a ledger fed only the rows recorded since, and the
    facts merged with the rows written since (:func:`llmtrader.storage.facts.caught_up`); each read whole again
    whenever what changed could move an earlier answer."""

    def __init__(self) -> None:
        self._trades: dict[str, _Trades] = {}
        self._facts: dict[str, FactsCursor] = {}

    def trade_figures(self, store: Store, account: str, recent: int, history: HistoryRead) -> TradeFigures:
        kept = self._trades.pop(account, None)  # dropped if reading raises: the next read starts afresh
        version, new = history.changes(kept.version if kept is not None else None)
        if kept is None or version is None or version != kept.version:
            kept = _updated(kept, version, new, history)
        if version is not None:
            self._trades[account] = kept
        shown = kept.figures.get(recent)
        if shown is None:
            shown = (
                kept.ledger.summaries(recent),
                kept.ledger.performance(equity_start=kept.starting_balance, since_ms=kept.since_ms),
            )
            kept.figures[recent] = shown
        return shown

    def account_facts(self, store: Store, account: str, now_ms: int) -> AccountFacts:
        version = trading_version(store, account)
        known = self._facts.get(account)
        if known is not None and known.latest <= now_ms and known.version != version:
            known = caught_up(store, account, known, version, now_ms)
        if known is None or known.version != version or known.latest > now_ms:
            known = read_facts(store, account, version, now_ms)
            if known is None:  # an event after now_ms: the aggregate up to it, read whole
                self._facts.pop(account, None)
                return account_facts(store, account, now_ms)
        self._facts[account] = known
        base = known.facts
        facts = AccountFacts(dict(base.last_close_ms), dict(base.opened_at_ms), dict(base.last_entry_ms))
        facts.day_start_equity = self.day_start_equity(store, account, now_ms)
        return facts

    def day_start_equity(self, store: Store, account: str, now_ms: int) -> float | None:
        """:func:`llmtrader.storage.facts.day_start_baseline`, read each time (a few indexed seeks: 0.03 ms)."""
        return day_start_baseline(store, account, now_ms)


def _updated(
    kept: _Trades | None, version: HistoryVersion | None, new: AccountHistory | None, history: HistoryRead
) -> _Trades:
    """``kept`` brought up to ``version``: the rows recorded since (``new``) fed to its ledger, else every row
    into a new ledger. Raises ValueError when the recorded fills do not add up."""
    if kept is not None and version is not None and new is not None:
        try:
            kept.ledger.add(new.fills, new.funding)
            return _Trades(version, kept.ledger, kept.since_ms, kept.starting_balance)
        except ValueError:
            pass  # out of order (or a late funding row): rebuilt from every row below
    read = history.history
    ledger = TradeLedger()
    ledger.add(read.fills, read.funding)
    return _Trades(version or (), ledger, read.since_ms, read.starting_balance)
