"""Market data from AsterDEX's public endpoints, fetched concurrently with httpx.

Everything for all assets is requested at once (one round trip of wall time, not one per request),
reads are retried with bounded backoff, every reply body is checked for an error ``code`` even with
HTTP 200, and only candles that have closed by ``now`` are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import numpy as np

from llmtrader.core.filters import SymbolRules, parse_exchange_info
from llmtrader.core.market import (
    AssetMarket,
    Candles,
    MarketSnapshot,
)
from llmtrader.errors import VenueBanned, VenueError, VenueRejected, VenueUnavailable
from llmtrader.exchange.http import (
    Answer,
    Judged,
    RateLimited,
    Sleep,
    Temporary,
    read_with_retries,
    retry_after_s,
)


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _named(exc: VenueError, what: str) -> VenueError:
    """The same kind of error with ``what`` (symbol and request) named, so the caller's category is kept."""
    message = f"{what}: {exc}"
    if isinstance(exc, VenueRejected):
        return type(exc)(message, code=exc.code, venue_message=exc.venue_message)
    if type(exc) in (VenueError, VenueUnavailable):
        return type(exc)(message)
    return exc


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first plain exception inside a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


# A candle as the venue wrote it: open time (ms) and its open, high, low, close and volume strings, untouched.
RawKline = tuple[int, str, str, str, str, str]


def _venue_number(value: Any, what: str) -> str:
    """A number the venue sent, as its own text (a JSON number through its shortest repr); refused unless finite."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise VenueError(f"{what}: {value!r} is not a number")
    text = value if isinstance(value, str) else repr(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise VenueError(f"{what}: {value!r} is not a number") from None
    if not number.is_finite():
        raise VenueError(f"{what}: {value!r} is not a finite number")
    return text


def _venue_ms(value: Any) -> int | None:
    """A time in ms the venue sent (a JSON integer, or its digits as text); None when it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class AsterMarketData:
    """Public (unsigned) AsterDEX futures endpoints over one shared ``httpx.AsyncClient``."""

    MAX_ATTEMPTS = 3
    BACKOFF_S = 0.25
    MAX_RETRY_AFTER_S = 10.0
    ALL_TICKERS_FROM = 5

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 64,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": "llmtrader"},
            transport=transport,
        )
        self.used_weight_1m: int | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsterMarketData:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None, *, attempts: int = 0) -> Any:
        """GET a public endpoint with bounded retries; return the JSON body or raise a VenueError."""

        async def send() -> httpx.Response:
            return await self._client.get(path, params=params)

        async def judge(resp: httpx.Response) -> Judged:
            weight = resp.headers.get("X-MBX-USED-WEIGHT-1M")
            if weight and weight.isdigit():
                self.used_weight_1m = int(weight)
            if resp.status_code == 418:
                raise VenueBanned(f"{path}: the venue has banned this IP (HTTP 418)", code=418)
            if resp.status_code == 429:
                return RateLimited(retry_after_s(resp))
            if resp.status_code >= 500:
                return Temporary(VenueUnavailable(f"{path}: the venue answered HTTP {resp.status_code}"))
            return Answer(self._body(path, resp))

        return await read_with_retries(
            path, send, judge, base_url=self.base_url, attempts=attempts or self.MAX_ATTEMPTS,
            backoff_s=self.BACKOFF_S, max_retry_after_s=self.MAX_RETRY_AFTER_S, over_cap="wait the cap",
            sleep=self._sleep, unreachable=httpx.TransportError,
        )  # fmt: skip

    @staticmethod
    def _body(path: str, resp: httpx.Response) -> Any:
        try:
            body = resp.json()
        except ValueError:
            raise VenueError(
                f"{path}: the venue answered HTTP {resp.status_code} with a body that is not JSON"
            ) from None
        # An error can arrive with HTTP 200: always look for a code that is not 200.
        if isinstance(body, dict) and "code" in body and str(body["code"]) not in ("200", "0"):
            msg = str(body.get("msg", ""))
            try:
                code: int | None = int(body["code"])
            except (TypeError, ValueError):
                code = None
            raise VenueRejected(f"{path}: venue error {body['code']}: {msg}", code=code, venue_message=msg)
        if resp.status_code >= 400:
            raise VenueRejected(f"{path}: the venue answered HTTP {resp.status_code}", code=resp.status_code)
        return body

    async def exchange_info(self) -> dict[str, SymbolRules]:
        """All symbols' rules (callers cache this: it changes rarely)."""
        return parse_exchange_info(await self.get("/fapi/v3/exchangeInfo"))

    async def server_time_ms(self) -> int:
        body = await self.get("/fapi/v3/time")
        if not isinstance(body, dict) or not isinstance(body.get("serverTime"), int):
            raise VenueError("/fapi/v3/time: reply has no integer serverTime")
        return int(body["serverTime"])

    async def klines(self, symbol: str, interval: str, limit: int, now_ms: int) -> Candles:
        """The newest ``limit`` closed candles (one more is asked for: the open one is dropped)."""
        body = await self.get(
            "/fapi/v3/klines", {"symbol": symbol, "interval": interval, "limit": min(limit + 1, 1500)}
        )
        if not isinstance(body, list):
            raise VenueError(f"klines {symbol} {interval}: reply is not a list")
        try:
            # numpy parses the venue's number strings in C: a third of the CPU of float() per cell.
            rows = np.array([r[:6] for r in body], dtype=np.float64).reshape(-1, 6)
        except (TypeError, ValueError, IndexError):
            raise VenueError(f"klines {symbol} {interval}: a row is malformed") from None
        if not np.isfinite(rows).all():
            raise VenueError(f"klines {symbol} {interval}: a row holds a number that is not finite")
        return Candles.from_rows(symbol, interval, rows).until(now_ms).tail(limit)

    async def premium_index(self, symbol: str) -> dict[str, Any]:
        body = await self.get("/fapi/v3/premiumIndex", {"symbol": symbol})
        if not isinstance(body, dict) or _float(body.get("markPrice")) is None:
            raise VenueError(f"premiumIndex {symbol}: reply has no markPrice")
        return body

    async def premium_indexes(self, symbols: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Mark price and funding of several symbols: one request for all of them (same weight as one)."""
        if len(symbols) == 1:
            return {symbols[0]: await self.premium_index(symbols[0])}
        body = await self.get("/fapi/v3/premiumIndex")
        if not isinstance(body, list):
            raise VenueError("premiumIndex: the reply for all symbols is not a list")
        by_symbol = {item.get("symbol"): item for item in body if isinstance(item, dict)}
        missing = [s for s in symbols if _float(by_symbol.get(s, {}).get("markPrice")) is None]
        if missing:
            raise VenueError(f"premiumIndex: no markPrice for {', '.join(missing)}")
        return {s: by_symbol[s] for s in symbols}

    async def ticker_24h(self, symbol: str) -> dict[str, Any]:
        body = await self.get("/fapi/v3/ticker/24hr", {"symbol": symbol})
        if not isinstance(body, dict):
            raise VenueError(f"ticker/24hr {symbol}: reply is not an object")
        return body

    async def tickers_24h(self, symbols: Sequence[str]) -> dict[str, dict[str, Any]]:
        """24h tickers: one request per symbol (weight 1 each), or one for all symbols (weight 40)
        from ALL_TICKERS_FROM symbols on, where fewer requests matter more than the weight."""
        if len(symbols) < self.ALL_TICKERS_FROM:
            replies = await asyncio.gather(*(self.ticker_24h(s) for s in symbols))
            return dict(zip(symbols, replies, strict=True))
        body = await self.get("/fapi/v3/ticker/24hr")
        if not isinstance(body, list):
            raise VenueError("ticker/24hr: the reply for all symbols is not a list")
        by_symbol = {item.get("symbol"): item for item in body if isinstance(item, dict)}
        missing = [s for s in symbols if s not in by_symbol]
        if missing:
            raise VenueError(f"ticker/24hr: no ticker for {', '.join(missing)}")
        return {s: by_symbol[s] for s in symbols}

    async def open_interest(self, symbol: str) -> float | None:
        """Open interest in the base asset; undocumented on AsterDEX, so any failure gives None."""
        try:
            body = await self.get("/fapi/v1/openInterest", {"symbol": symbol}, attempts=1)
        except VenueError:
            return None
        return _float(body.get("openInterest")) if isinstance(body, dict) else None

    async def _asset(
        self,
        symbol: str,
        premiums: Awaitable[dict[str, dict[str, Any]]],
        tickers: Awaitable[dict[str, dict[str, Any]]],
        timeframes: Sequence[str],
        limit: int,
        now_ms: int,
    ) -> AssetMarket:
        """Everything about one asset; its requests run concurrently with every other asset's."""
        oi, series = await asyncio.gather(
            self.open_interest(symbol),
            asyncio.gather(*(self.klines(symbol, tf, limit, now_ms) for tf in timeframes)),
        )
        candles = dict(zip(timeframes, series, strict=True))
        premium = (await premiums)[symbol]
        ticker = (await tickers)[symbol]
        mark = _float(premium.get("markPrice"))
        if mark is None or mark <= 0:
            raise VenueError(f"premiumIndex {symbol}: markPrice {premium.get('markPrice')!r} is not a positive number")
        next_funding = premium.get("nextFundingTime")
        return AssetMarket(
            symbol=symbol,
            candles=candles,
            mark_price=mark,
            index_price=_float(premium.get("indexPrice")),
            funding_rate=_float(premium.get("lastFundingRate")),
            next_funding_time_ms=int(next_funding) if isinstance(next_funding, (int, float)) else None,
            last_price=_float(ticker.get("lastPrice")),
            price_change_pct_24h=_float(ticker.get("priceChangePercent")),
            high_24h=_float(ticker.get("highPrice")),
            low_24h=_float(ticker.get("lowPrice")),
            quote_volume_24h=_float(ticker.get("quoteVolume")),
            open_interest=oi,
        )

    async def snapshot(
        self,
        symbols: Sequence[str],
        timeframes: Sequence[str],
        limit: int,
        now_ms: int,
        rules: dict[str, SymbolRules] | None = None,
    ) -> MarketSnapshot:
        """All assets at once: one round trip of wall time when the pool allows."""
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels every other request
                premiums = group.create_task(self.premium_indexes(symbols))
                tickers = group.create_task(self.tickers_24h(symbols))
                tasks = [
                    group.create_task(self._asset(s, premiums, tickers, timeframes, limit, now_ms)) for s in symbols
                ]
        except BaseExceptionGroup as failed:
            raise _first_leaf(failed) from None
        assets = [t.result() for t in tasks]
        return MarketSnapshot(
            as_of_ms=now_ms,
            assets={a.symbol: a for a in assets},
            rules={s: rules[s] for s in symbols if s in rules} if rules else {},
        )

    # ---- history windows (the paper exchange replays these; the backtester will too) ------------------
    KLINES_PAGE = 1500  # the venue's maximum klines limit
    FUNDING_PAGE = 1000  # the venue's maximum fundingRate limit

    async def candles_between(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, *, now_ms: int | None = None
    ) -> Candles:
        """Candles opened in ``[start_ms, end_ms)``, oldest first, paged at the venue's 1500-row limit
        (:meth:`kline_page`).

        With ``now_ms``, a candle not yet closed by then is dropped, so a caller replaying up to "now"
        never sees a candle whose high and low are still moving.
        """
        rows: list[RawKline] = []
        cursor = start_ms
        while cursor < end_ms:
            page = await self.kline_page(symbol, interval, cursor, end_ms)
            # Pages meet at their edges: each open time once, in order.
            rows += [r for r in page if not rows or r[0] > rows[-1][0]]
            if len(page) < self.KLINES_PAGE:
                break
            cursor = page[-1][0] + 1
        matrix = np.array(rows, dtype=np.float64).reshape(-1, 6)  # numpy parses the venue's number strings
        candles = Candles.from_rows(symbol, interval, matrix)
        return candles.until(now_ms) if now_ms is not None else candles

    async def funding_between(self, symbol: str, start_ms: int, end_ms: int) -> list[tuple[int, Decimal]]:
        """Funding events ``(funding_time_ms, rate)`` with a time in ``[start_ms, end_ms)``, oldest first,
        paged at the venue's 1000-row limit (:meth:`funding_page`)."""
        out: list[tuple[int, Decimal]] = []
        cursor = start_ms
        while cursor < end_ms:
            page = await self.funding_page(symbol, cursor, end_ms)
            out += [(when, Decimal(rate)) for when, rate in page if not out or when > out[-1][0]]
            if len(page) < self.FUNDING_PAGE:
                break
            cursor = page[-1][0] + 1
        return out

    async def mark_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The mark price of each symbol as a Decimal (one premiumIndex request for all of them)."""
        if not symbols:
            return {}
        out: dict[str, Decimal] = {}
        for symbol, body in (await self.premium_indexes(symbols)).items():
            raw = body.get("markPrice")
            try:
                mark = Decimal(str(raw))
            except InvalidOperation:
                mark = Decimal("NaN")
            if not mark.is_finite() or mark <= 0:
                raise VenueError(f"premiumIndex {symbol}: markPrice {raw!r} is not a positive number")
            out[symbol] = mark
        return out

    # ---- raw pages for `llmtrader download`: the venue's number strings, never through a float ----------
    async def kline_page(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, *, limit: int = KLINES_PAGE
    ) -> list[RawKline]:
        """One klines request: the first ``limit`` (at most 1500) candles opened in ``[start_ms, end_ms)``,
        oldest first, each open time once, with the venue's number strings kept exactly."""
        what = f"klines {symbol} {interval}"
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": start_ms,
            "endTime": end_ms - 1,  # the venue's endTime is inclusive
            "limit": min(limit, self.KLINES_PAGE),
        }
        body = await self._page("/fapi/v3/klines", params, what)
        rows: dict[int, RawKline] = {}
        for item in body:
            when = _venue_ms(item[0]) if isinstance(item, list) and len(item) >= 6 else None
            if when is None:
                raise VenueError(f"{what}: a row is malformed: {item!r}")
            o, h, lo, c, v = (_venue_number(x, f"{what} at {when}") for x in item[1:6])
            if start_ms <= when < end_ms:
                rows.setdefault(when, (when, o, h, lo, c, v))
        return [rows[t] for t in sorted(rows)]

    async def _page(self, path: str, params: dict[str, Any], what: str) -> list[Any]:
        """One page of a history endpoint: its rows, or a VenueError naming the request."""
        try:
            body = await self.get(path, params)
        except VenueError as exc:
            raise _named(exc, what) from exc
        if not isinstance(body, list):
            raise VenueError(f"{what}: reply is not a list")
        return body

    async def funding_page(
        self, symbol: str, start_ms: int, end_ms: int, *, limit: int = FUNDING_PAGE
    ) -> list[tuple[int, str]]:
        """One fundingRate request: the first ``limit`` (at most 1000) events ``(funding_time_ms, rate)`` with
        a time in ``[start_ms, end_ms)``, oldest first, each time once, the rate as the venue wrote it."""
        what = f"fundingRate {symbol}"
        params = {
            "symbol": symbol,
            "startTime": start_ms,
            "endTime": end_ms - 1,
            "limit": min(limit, self.FUNDING_PAGE),
        }
        body = await self._page("/fapi/v3/fundingRate", params, what)
        events: dict[int, str] = {}
        for item in body:
            when = _venue_ms(item.get("fundingTime")) if isinstance(item, dict) else None
            if when is None or "fundingRate" not in item:
                raise VenueError(f"{what}: an event is malformed: {item!r}")
            rate = _venue_number(item["fundingRate"], f"{what} at {when}")
            if start_ms <= when < end_ms:
                events.setdefault(when, rate)
        return sorted(events.items())
