"""The one read-retry loop (exchange/http.py) through both of its callers, against the loopback fake venue:
the public market-data client and the signed venue client's reads. 429, 5xx, timeouts and Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from llmtrader.errors import VenueRejected, VenueUnavailable
from llmtrader.exchange.asterdex import AsterDexExchange
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.exchange.credentials import V3Credentials
from tests.fakes.aster import FakeAster
from tests.helpers import KEY, SIGNER, USER

T = TypeVar("T")

TIME = "/fapi/v3/time"
BALANCE = "/fapi/v3/balance"


def on_market(fake: FakeAster, waits: list[float], timeout_s: float = 5.0) -> Callable[[], Awaitable[int]]:
    """The market client's read of the venue's time, its waits recorded instead of slept."""

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def read() -> int:
        async with AsterMarketData(fake.base_url, timeout_s=timeout_s, sleep=sleep) as market:
            return await market.server_time_ms()

    return read


def on_venue(fake: FakeAster, waits: list[float], timeout_s: float = 5.0) -> Callable[[], Awaitable[Decimal]]:
    """The signed venue client's read of the balance, its waits recorded instead of slept."""
    fake.add_v3_account(USER, SIGNER)
    fake.set_balance(USER, 1234)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def read() -> Decimal:
        market = AsterMarketData(fake.base_url, timeout_s=timeout_s)

        async def rules() -> Any:
            return await market.exchange_info()

        ex = AsterDexExchange(market, V3Credentials(USER, SIGNER, KEY), rules=rules, timeout_s=timeout_s, sleep=sleep)
        try:
            return (await ex.balance()).wallet
        finally:
            await ex.aclose()
            await market.aclose()

    return read


def run(read: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(read())


def test_market_429_without_retry_after_backs_off(fake_aster: FakeAster) -> None:
    fake_aster.fail(TIME, 429, code=-1003, msg="Too many requests", times=2)
    waits: list[float] = []
    assert run(on_market(fake_aster, waits)) > 0
    assert waits == [0.25, 0.5] and fake_aster.count(TIME) == 3


def test_market_429_past_the_cap_waits_the_cap(fake_aster: FakeAster) -> None:
    fake_aster.fail(TIME, 429, code=-1003, msg="Too many requests", headers={"Retry-After": "120"})
    waits: list[float] = []
    assert run(on_market(fake_aster, waits)) > 0
    assert waits == [AsterMarketData.MAX_RETRY_AFTER_S] and fake_aster.count(TIME) == 2


def test_market_429_every_time_ends_with_the_rate_limit(fake_aster: FakeAster) -> None:
    fake_aster.fail(TIME, 429, code=-1003, msg="Too many requests", headers={"Retry-After": "1"}, times=5)
    waits: list[float] = []
    with pytest.raises(VenueUnavailable) as caught:
        run(on_market(fake_aster, waits))
    assert str(caught.value) == "/fapi/v3/time: rate limited by the venue (HTTP 429)"
    assert waits == [1.0, 1.0] and fake_aster.count(TIME) == AsterMarketData.MAX_ATTEMPTS


def test_market_5xx_then_success(fake_aster: FakeAster) -> None:
    fake_aster.fail(TIME, 502, times=2)
    waits: list[float] = []
    assert run(on_market(fake_aster, waits)) > 0
    assert waits == [0.25, 0.5] and fake_aster.count(TIME) == 3


def test_market_5xx_message(fake_aster: FakeAster) -> None:
    fake_aster.fail(TIME, 503, times=5)
    with pytest.raises(VenueUnavailable) as caught:
        run(on_market(fake_aster, []))
    assert str(caught.value) == "/fapi/v3/time: the venue answered HTTP 503"


def test_market_timeouts_are_retried_then_reported(fake_aster: FakeAster) -> None:
    fake_aster.stall(TIME, 0.6, times=3)
    waits: list[float] = []
    with pytest.raises(VenueUnavailable) as caught:
        run(on_market(fake_aster, waits, timeout_s=0.2))
    assert str(caught.value) == "/fapi/v3/time: the venue did not answer within the timeout"
    assert fake_aster.count(TIME) == AsterMarketData.MAX_ATTEMPTS and waits == [0.25, 0.5]


def test_market_a_timeout_then_an_answer(fake_aster: FakeAster) -> None:
    fake_aster.stall(TIME, 0.6)
    waits: list[float] = []
    assert run(on_market(fake_aster, waits, timeout_s=0.2)) > 0
    assert waits == [0.25] and fake_aster.count(TIME) == 2


def test_venue_429_waits_for_retry_after_then_reads(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 429, code=-1003, msg="too many", headers={"Retry-After": "4"})
    assert run(read) == Decimal(1234)
    assert waits == [4.0] and fake_aster.count(BALANCE) == 2


def test_venue_429_without_retry_after_backs_off_and_is_bounded(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 429, code=-1003, msg="too many", times=5)
    with pytest.raises(VenueUnavailable) as caught:
        run(read)
    assert str(caught.value) == "/fapi/v3/balance: rate limited by the venue (HTTP 429)"
    assert waits == [0.25, 0.5] and fake_aster.count(BALANCE) == AsterDexExchange.READ_ATTEMPTS


def test_venue_429_past_the_cap_is_not_asked_again(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 429, code=-1003, msg="too many", headers={"Retry-After": "45"}, times=5)
    with pytest.raises(VenueUnavailable) as caught:
        run(read)
    assert str(caught.value) == "/fapi/v3/balance: rate limited by the venue for 45 s (HTTP 429)"
    assert waits == [] and fake_aster.count(BALANCE) == 1


def test_venue_5xx_retries_are_bounded_with_the_venue_message(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 503, code=-1001, msg="Internal error; unable to process your request.", times=5)
    with pytest.raises(VenueUnavailable) as caught:
        run(read)
    assert str(caught.value) == (
        "/fapi/v3/balance: the venue answered HTTP 503: Internal error; unable to process your request."
    )
    assert waits == [0.25, 0.5] and fake_aster.count(BALANCE) == AsterDexExchange.READ_ATTEMPTS


def test_venue_unknown_outcome_code_is_retried(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 400, code=-1007, msg="Timeout waiting for response from backend server.")
    assert run(read) == Decimal(1234)
    assert waits == [0.25] and fake_aster.count(BALANCE) == 2


def test_venue_timeouts_are_retried_then_reported(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits, timeout_s=0.2)
    fake_aster.stall(BALANCE, 0.6, times=3)
    with pytest.raises(VenueUnavailable) as caught:
        run(read)
    assert str(caught.value) == "/fapi/v3/balance: the venue did not answer within the timeout"
    assert waits == [0.25, 0.5] and fake_aster.count(BALANCE) == AsterDexExchange.READ_ATTEMPTS


def test_venue_auth_fix_is_not_counted_as_an_attempt(fake_aster: FakeAster) -> None:
    # A rejected nonce gets a clock resync and a fresh attempt at once; the three attempts remain for the rest.
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 400, code=-4225, msg="Nonce Expired")
    fake_aster.fail(BALANCE, 503, times=2)
    assert run(read) == Decimal(1234)
    assert fake_aster.count(BALANCE) == 4 and waits == [0.25, 0.5]
    assert fake_aster.count(TIME) == 2  # the first sync, then the resync the rejected nonce asked for


def test_venue_auth_fix_happens_once_per_read(fake_aster: FakeAster) -> None:
    waits: list[float] = []
    read = on_venue(fake_aster, waits)
    fake_aster.fail(BALANCE, 400, code=-4225, msg="Nonce Expired", times=2)
    with pytest.raises(VenueRejected, match="venue error -4225: Nonce Expired"):
        run(read)
    assert fake_aster.count(BALANCE) == 2 and waits == []


@pytest.mark.parametrize("value", ["nan", "inf", "-5"])
def test_a_retry_after_that_is_no_usable_number_backs_off_instead(fake_aster: FakeAster, value: str) -> None:
    for read in (on_market, on_venue):
        waits: list[float] = []
        path = TIME if read is on_market else BALANCE
        fake_aster.fail(path, 429, code=-1003, msg="too many", headers={"Retry-After": value})
        run(read(fake_aster, waits))
        assert waits == [0.25], (read, value)
