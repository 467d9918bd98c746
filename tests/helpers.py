"""Helpers shared by the tests (imported by test modules, never from one test module into another)."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llmtrader.cli import render
from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.core.decision import Action, AssetDecision, RiskLevel
from llmtrader.core.filters import SymbolRules
from llmtrader.core.records import new_decision_id
from llmtrader.core.risk import AssetValidation, Status
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.cycle.execution import ExecutionReport, ExecutionSettings, execute
from llmtrader.cycle.run import CycleResult, run_cycle
from llmtrader.cycle.services import Services
from llmtrader.exchange.asterdex import AsterDexExchange
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from llmtrader.exchange.credentials import V3Credentials
from llmtrader.storage.bans import VenueBans
from llmtrader.storage.store import Store
from tests.fakes.aster import FakeAster
from tests.fakes.llm import asset
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram import FakeTelegram

T = TypeVar("T")


class FakeClock:
    """The tests' one clock, moved by hand. ``now_ms()`` is the services' Clock port; calling it is the
    ``now_ms`` function the paper exchange and the fake venue take. Starts at ``now_ms``, else the wall time."""

    def __init__(self, now_ms: int | None = None) -> None:
        self.now = int(time.time() * 1000) if now_ms is None else now_ms

    def now_ms(self) -> int:
        return self.now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """The rows of one query on the database at ``db``, as dicts."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def place(order: OrderRequest) -> None:
    """Send one order through the project's own venue client, as the account's owner could by hand."""

    async def go() -> None:
        services = build_services(load_settings(), need_model=False)
        try:
            await services.exchange.place_order(order)
        finally:
            await close_services(services)

    asyncio.run(go())


# ---- the decide command, run through the CLI ----
def decide(runner: CliRunner, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    result = runner.invoke(app, ["decide", "--json", *args])
    try:
        out = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError:
        out = None
    return result.exit_code, out, result.stderr


def show(runner: CliRunner, decision_id: str) -> dict[str, Any]:
    result = runner.invoke(app, ["show", decision_id, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def history(runner: CliRunner, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["history", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def long_btc(fake_aster: FakeAster, symbol: str = "BTCUSDT", **kw: Any) -> dict[str, Any]:
    """A sound long (on BTCUSDT unless told) around the fake venue's current mark."""
    mark = fake_aster.mark(symbol)
    base = {"allocation_usd": 1000, "leverage": 2, "tp_price": round(mark * 1.04, 1),
            "sl_price": round(mark * 0.98, 1), "confidence": 0.7, "risk_level": "medium"}  # fmt: skip
    base.update(kw)
    return asset(symbol, "buy", **base)


# ---- a cycle, with services built from the environment ----
def with_services(clock: FakeClock, fn: Callable[[Services], Awaitable[T]]) -> T:
    """Build the services from the environment (a fresh start), run ``fn`` with them, close them."""

    async def go() -> T:
        services = build_services(load_settings(), clock=clock)
        try:
            return await fn(services)
        finally:
            await close_services(services)

    return asyncio.run(go())


def cycle(clock: FakeClock, **kw: Any) -> CycleResult:
    return with_services(clock, lambda s: run_cycle(s, **kw))


# ---- one execution on a live account at the fake venue (its own wallet, not conftest's USER) ----
KEY = "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"
SIGNER = "0xb67f9a782d3678a0bac50c22eacbb4924fe9d4cf"
USER = "0x" + "5a" * 20
V1_KEY, V1_SECRET = "v1-api-key-0001", "v1-secret-9f8e7d6c5b4a"


class Harness:
    """One execution against the fake venue: the adapter, the store, and the decision's context."""

    def __init__(
        self, venue: FakeAster, db: Path, credentials: Any = None, timeout_s: float = 2.0, real_sleep: bool = False
    ) -> None:
        self.venue = venue
        self.store = Store(db)
        self.credentials = credentials or V3Credentials(USER, SIGNER, KEY)
        self.timeout_s = timeout_s
        self.sleeps: list[float] = []
        self.real_sleep = real_sleep
        self.bans = VenueBans(self.store, venue.base_url)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds if self.real_sleep else min(seconds, 0.01))

    def exchange(self) -> AsterDexExchange:
        market = AsterMarketData(self.venue.base_url, timeout_s=self.timeout_s)

        async def rules() -> Any:
            return await market.exchange_info()

        ex = AsterDexExchange(
            market,
            self.credentials,
            bans=self.bans,
            rules=rules,
            timeout_s=self.timeout_s,
            lookup_grace_s=0.3 if self.real_sleep else 0.05,
            sleep=self._sleep,
        )
        ex.BACKOFF_S = 0.01
        return ex

    def run(self, *decisions: AssetDecision, decision_id: str | None = None) -> tuple[str, ExecutionReport]:
        did = decision_id or new_decision_id()

        async def go() -> ExecutionReport:
            ex = self.exchange()
            try:
                rules = await ex.rules()
                marks = await ex.mark_prices([d.symbol for d in decisions])
                validations = [
                    AssetValidation(d.symbol, d.action.value, Status.ACCEPTED, [], None, d) for d in decisions
                ]
                log = self.store.execution_log("main", "live", self.venue.clock)
                return await execute(
                    ex, validations, decision_id=did, recorder=log, rules=rules, marks=marks,
                    settings=ExecutionSettings(protect_backoff_s=0.01), sleep=self._sleep,
                )  # fmt: skip
            finally:
                await ex.aclose()
                await ex.market.aclose()

        return did, asyncio.run(go())

    def orders(self, did: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.store.path)
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM orders WHERE decision_id = ? ORDER BY id", [did])]

    def events(self, did: str) -> list[tuple[str, str]]:
        conn = sqlite3.connect(self.store.path)
        return list(conn.execute("SELECT kind, message FROM execution_events WHERE decision_id = ? ORDER BY id", [did]))


def buy(venue: FakeAster, symbol: str = "BTCUSDT", allocation: float = 1000, leverage: int = 3,
        **kw: Any) -> AssetDecision:  # fmt: skip
    mark = venue.mark(symbol)
    fields: dict[str, Any] = {"tp_price": mark * 1.04, "sl_price": mark * 0.98}
    fields.update(kw)
    return AssetDecision(symbol=symbol, action=Action.BUY, rationale="t", allocation_usd=allocation,
                         leverage=leverage, confidence=0.8, risk_level=RiskLevel.MEDIUM, **fields)  # fmt: skip


def protected(venue: FakeAster, symbol: str) -> dict[str, list[Any]]:
    """The open protective orders of ``symbol`` at the venue, by type."""
    out: dict[str, list[Any]] = {"STOP_MARKET": [], "TAKE_PROFIT_MARKET": []}
    for o in venue.open_orders(USER):
        if o.symbol == symbol and o.orig_type in out:
            out[o.orig_type].append(o)
    return out


# ---- screens at a given terminal width ----
WIDTHS = (80, 200)


def at_width(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """The terminal the commands print to, `width` columns wide (colours off so lines are plain text)."""
    monkeypatch.setattr(render, "console", Console(width=width, no_color=True, highlight=False))
    monkeypatch.setattr(render, "err_console", Console(width=width, stderr=True, no_color=True))


def lines_of(result: Any, width: int) -> list[str]:
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, "\n".join(too_long)
    return lines


# ---- the paper venue's rules, candles and orders ----
D = Decimal
M15 = 900_000


def rules(symbol: str, tick: str, step: str) -> SymbolRules:
    """The fake venue's filters: minNotional 5, PERCENT_PRICE 1.05 / 0.95."""
    return SymbolRules(
        symbol=symbol, status="TRADING", base_asset=symbol.removesuffix("USDT"), quote_asset="USDT",
        tick_size=D(tick), min_price=D(tick), max_price=D("1000000"), step_size=D(step), min_qty=D(step),
        max_qty=D("100000"), market_step_size=D(step), market_min_qty=D(step), market_max_qty=D("10000"),
        min_notional=D("5"), percent_up=D("1.05"), percent_down=D("0.95"),
    )  # fmt: skip


BTC = rules("BTCUSDT", "0.1", "0.001")
ETH = rules("ETHUSDT", "0.01", "0.001")
XRP = rules("XRPUSDT", "0.0001", "0.1")


def candle(perp_dir: Path, symbol: str, open_ms: int, interval: str = "15m") -> tuple[Decimal, ...]:
    """(open, high, low, close) of the row opening at ``open_ms``, exactly as written in the CSV."""
    with (perp_dir / f"{symbol}-{interval}.csv").open() as fh:
        for row in csv.reader(fh):
            if row[0] == str(open_ms):
                return tuple(D(x) for x in row[1:5])
    raise AssertionError(f"no {symbol} {interval} candle opens at {open_ms}")


def market(symbol: str, side: str, qty: str, cid: str = "entry", *, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(symbol, Side(side), OrderType.MARKET, cid, quantity=D(qty), reduce_only=reduce_only)


def protect(symbol: str, side: str, kind: OrderType, stop: str, cid: str) -> OrderRequest:
    """A closePosition stop or take-profit, the way execution protects a position."""
    return OrderRequest(symbol, Side(side), kind, cid, stop_price=D(stop), close_position=True)


# ---- Telegram ----
def telegram_config(db: Path, chat_id: int, monkeypatch: pytest.MonkeyPatch) -> FakeTelegram:
    """A fake Telegram on loopback, and a config beside ``db`` that lets ``chat_id`` control the agent through
    it (the bot token in the environment). The caller stops the fake."""
    fake = FakeTelegram()
    config = db.parent / "config.toml"
    config.write_text(
        f'[notify]\ntelegram_chat_ids = [{chat_id}]\ntelegram_control = true\ntelegram_base_url = "{fake.base_url}"\n'
    )
    monkeypatch.setenv("LLMTRADER_CONFIG", str(config))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TELEGRAM_TOKEN)
    return fake
