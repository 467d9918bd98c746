"""The market-data client against the fake venue: closed candles only, retries, error bodies, filters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from llmtrader.core.filters import parse_exchange_info
from llmtrader.core.market import Candles, check_symbols
from llmtrader.errors import UnknownSymbolError, VenueError, VenueRejected, VenueUnavailable
from llmtrader.exchange.asterdex_market import AsterMarketData
from tests.fakes.aster import FakeAster

T = TypeVar("T")


def run(fake: FakeAster, fn: Callable[[AsterMarketData], Awaitable[T]], waits: list[float] | None = None) -> T:
    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    async def go() -> T:
        async with AsterMarketData(fake.base_url, timeout_s=5, sleep=sleep) as market:
            return await fn(market)

    return asyncio.run(go())


def test_klines_drop_the_open_candle(fake_aster: FakeAster) -> None:
    now = fake_aster.clock()
    candles = run(fake_aster, lambda m: m.klines("BTCUSDT", "1h", 50, now))
    assert len(candles) == 50
    expected = fake_aster.closed_candles("BTCUSDT", "1h")[-50:]
    assert candles.open_time_ms.tolist() == [int(r[0]) for r in expected]
    assert candles.close.tolist() == [r[4] for r in expected]
    assert candles.last_close_time_ms <= now
    assert int(fake_aster.open_candle("BTCUSDT", "1h")[0]) not in candles.open_time_ms.tolist()


def test_candles_until_keeps_the_closed_prefix() -> None:
    rows = [[i * 3_600_000, 1, 2, 0.5, 1.5, 10] for i in range(5)]
    candles = Candles.from_rows("X", "1h", rows)
    assert len(candles.until(5 * 3_600_000)) == 5
    assert len(candles.until(5 * 3_600_000 - 1)) == 4
    assert len(candles.until(0)) == 0
    assert candles.tail(2).open_time_ms.tolist() == [3 * 3_600_000, 4 * 3_600_000]


def test_snapshot_holds_every_asset_and_timeframe(fake_aster: FakeAster) -> None:
    async def go(m: AsterMarketData) -> Any:
        rules = await m.exchange_info()
        return await m.snapshot(["BTCUSDT", "SOLUSDT"], ["15m", "1h", "4h"], 100, fake_aster.clock(), rules)

    snap = run(fake_aster, go)
    assert set(snap.assets) == {"BTCUSDT", "SOLUSDT"}
    btc = snap.assets["BTCUSDT"]
    assert set(btc.candles) == {"15m", "1h", "4h"} and all(len(c) == 100 for c in btc.candles.values())
    assert btc.mark_price == fake_aster.mark("BTCUSDT")
    assert btc.open_interest == pytest.approx(12345.678)
    assert btc.funding_rate is not None and btc.next_funding_time_ms is not None
    assert snap.rules["SOLUSDT"].tick_size == Decimal("0.01")


def test_429_waits_for_retry_after_then_succeeds(fake_aster: FakeAster) -> None:
    fake_aster.fail("/fapi/v3/time", 429, code=-1003, msg="Too many requests", headers={"Retry-After": "3"})
    waits: list[float] = []
    assert run(fake_aster, lambda m: m.server_time_ms(), waits) > 0
    assert waits == [3.0] and fake_aster.count("/fapi/v3/time") == 2


def test_5xx_retries_are_bounded(fake_aster: FakeAster) -> None:
    fake_aster.fail("/fapi/v3/time", 503, times=10)
    waits: list[float] = []
    with pytest.raises(VenueUnavailable, match="HTTP 503"):
        run(fake_aster, lambda m: m.server_time_ms(), waits)
    assert fake_aster.count("/fapi/v3/time") == AsterMarketData.MAX_ATTEMPTS
    assert waits == [0.25, 0.5]


def test_418_stops_at_once(fake_aster: FakeAster) -> None:
    fake_aster.fail("/fapi/v3/time", 418, code=-1003, msg="banned", times=5)
    with pytest.raises(VenueRejected, match="banned this IP"):
        run(fake_aster, lambda m: m.server_time_ms())
    assert fake_aster.count("/fapi/v3/time") == 1


def test_an_error_code_in_a_200_body_is_an_error(fake_aster: FakeAster) -> None:
    fake_aster.fail("/fapi/v3/premiumIndex", 200, code=-1121, msg="Invalid symbol.")
    with pytest.raises(VenueRejected) as caught:
        run(fake_aster, lambda m: m.premium_index("BTCUSDT"))
    assert caught.value.code == -1121 and caught.value.venue_message == "Invalid symbol."


def test_an_unlisted_symbol_read_is_rejected_with_the_venue_code(fake_aster: FakeAster) -> None:
    with pytest.raises(VenueRejected, match="-1121"):
        run(fake_aster, lambda m: m.klines("NOPEUSDT", "1h", 10, fake_aster.clock()))


def test_unreachable_venue(perp_dir: Any) -> None:
    async def go() -> None:
        async def no_sleep(_: float) -> None:
            return None

        async with AsterMarketData("http://127.0.0.1:9", timeout_s=2, sleep=no_sleep) as m:
            await m.server_time_ms()

    with pytest.raises(VenueUnavailable, match=r"cannot reach http://127\.0\.0\.1:9"):
        asyncio.run(go())


def test_exchange_info_reads_both_min_notional_keys() -> None:
    def symbol(name: str, notional: dict[str, str]) -> dict[str, Any]:
        return {
            "symbol": name,
            "status": "TRADING",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.1", "maxPrice": "100000", "tickSize": "0.1"},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "100", "stepSize": "0.001"},
                {"filterType": "MIN_NOTIONAL", **notional},
            ],
        }

    rules = parse_exchange_info(
        {"symbols": [symbol("AUSDT", {"notional": "5"}), symbol("BUSDT", {"minNotional": "10"})]}
    )
    assert rules["AUSDT"].min_notional == Decimal("5") and rules["BUSDT"].min_notional == Decimal("10")
    assert rules["AUSDT"].market_step_size == Decimal("0.001")  # MARKET_LOT_SIZE falls back to LOT_SIZE
    with pytest.raises(VenueError, match="no 'symbols' list"):
        parse_exchange_info({"code": 0})


def test_check_symbols_names_the_closest_listed(fake_aster: FakeAster) -> None:
    rules = run(fake_aster, lambda m: m.exchange_info())
    check_symbols(["BTCUSDT", "SOLUSDT"], rules)
    with pytest.raises(UnknownSymbolError, match="ETHUSD1 is not listed on the venue; closest listed: ETHUSDT"):
        check_symbols(["ETHUSD1"], rules)


@pytest.mark.parametrize("count", [1, 2, 6])
def test_snapshot_requests_per_asset_count(fake_aster: FakeAster, count: int) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT"][:count]
    snap = run(fake_aster, lambda m: m.snapshot(symbols, ["1h"], 60, fake_aster.clock()))
    assert list(snap.assets) == symbols
    for symbol in symbols:
        asset = snap.assets[symbol]
        assert asset.mark_price == fake_aster.mark(symbol)
        day = fake_aster.closed_candles(symbol, "1h", 24)
        assert asset.high_24h == max(r[2] for r in day)
    # one premiumIndex for all; tickers one each below ALL_TICKERS_FROM, else one for all
    assert fake_aster.count("/fapi/v3/premiumIndex") == 1
    expected_tickers = count if count < AsterMarketData.ALL_TICKERS_FROM else 1
    assert fake_aster.count("/fapi/v3/ticker/24hr") == expected_tickers
    assert fake_aster.count("/fapi/v3/klines") == count
