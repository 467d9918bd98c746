"""A fake AsterDEX futures venue on loopback, serving real Binance candles from ../shared/data.

It speaks the venue's public REST protocol over real HTTP (a threaded server), so the real httpx
client is exercised. Time is shifted so that the data's ``anchor_ms`` maps onto the fake's clock: the
newest candle it serves is still open, exactly as on the live venue. It records every request and can
inject faults and latency.
"""

from __future__ import annotations

import bisect
import csv
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

INTERVAL_MS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000}
DAY_MS = 86_400_000
# 2025-12-15 10:20 UTC: inside every perp file's range (5m/15m end 2025-12-31).
DEFAULT_ANCHOR_MS = 1_765_794_000_000

LISTED = {
    # symbol: (tickSize, stepSize, minQty)
    "BTCUSDT": ("0.1", "0.001", "0.001"),
    "ETHUSDT": ("0.01", "0.001", "0.001"),
    "SOLUSDT": ("0.01", "0.01", "0.01"),
    "BNBUSDT": ("0.01", "0.01", "0.01"),
    "XRPUSDT": ("0.0001", "0.1", "0.1"),
    "DOGEUSDT": ("0.00001", "1", "1"),
    "ASTERUSDT": ("0.0001", "1", "1"),
}
NOT_TRADING = {"LUNAUSDT": "SETTLING"}


@dataclass
class Fault:
    path: str
    status: int
    body: dict[str, Any]
    times: int
    headers: dict[str, str]


_ROWS: dict[Path, list[list[float]]] = {}


def load_rows(path: Path) -> list[list[float]]:
    """The rows of one CSV file (cached for the whole test session: the files never change)."""
    if path not in _ROWS:
        with path.open() as fh:
            reader = csv.reader(fh)
            next(reader)
            _ROWS[path] = [[float(x) for x in row] for row in reader]
    return _ROWS[path]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent connections, like a client's whole pool at once


class FakeAster:
    """The fake venue. Start it with :meth:`start`; ``base_url`` is then its address."""

    def __init__(
        self,
        data_dir: Path,
        *,
        anchor_ms: int = DEFAULT_ANCHOR_MS,
        clock: Callable[[], int] | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.data_dir = data_dir
        self.anchor_ms = anchor_ms
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.latency_s = latency_s
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.faults: list[Fault] = []
        self.open_interest_supported = True
        self._series: dict[tuple[str, str], list[list[float]]] = {}
        self._funding: dict[str, list[list[float]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- data -------------------------------------------------------------------------------
    @property
    def offset_ms(self) -> int:
        """Data time + offset = served time; a whole number of days keeps every candle aligned."""
        return ((self.clock() - self.anchor_ms) // DAY_MS) * DAY_MS

    def data_now_ms(self) -> int:
        return self.clock() - self.offset_ms

    def series(self, symbol: str, interval: str) -> list[list[float]]:
        key = (symbol, interval)
        if key not in self._series:
            path = self.data_dir / f"{symbol}-{interval}.csv"
            self._series[key] = load_rows(path) if path.exists() else []
        return self._series[key]

    def served_candles(self, symbol: str, interval: str, limit: int) -> list[list[float]]:
        """The newest ``limit`` candles opened by now (the last one still open), times shifted."""
        rows = self.series(symbol, interval)
        end = bisect.bisect_right(rows, self.data_now_ms(), key=lambda r: r[0])
        offset = self.offset_ms
        return [[r[0] + offset, *r[1:]] for r in rows[max(0, end - limit) : end]]

    def closed_candles(self, symbol: str, interval: str, limit: int | None = None) -> list[list[float]]:
        """The candles closed by now (the newest ``limit`` of them), times shifted."""
        rows = self.series(symbol, interval)
        end = bisect.bisect_right(rows, self.data_now_ms() - INTERVAL_MS[interval], key=lambda r: r[0])
        start = 0 if limit is None else max(0, end - limit)
        offset = self.offset_ms
        return [[r[0] + offset, *r[1:]] for r in rows[start:end]]

    def open_candle(self, symbol: str, interval: str) -> list[float]:
        """The candle still in progress (a correct client never shows it)."""
        return self.served_candles(symbol, interval, 1)[-1]

    def mark(self, symbol: str) -> float:
        """The mark price: the close of the newest closed 15m candle."""
        return self.closed_candles(symbol, "15m", 1)[-1][4]

    def funding_rate(self, symbol: str) -> float:
        if symbol not in self._funding:
            path = self.data_dir / f"{symbol}-funding.csv"
            self._funding[symbol] = load_rows(path) if path.exists() else []
        now = self.data_now_ms()
        past = [r for r in self._funding[symbol] if r[0] <= now]
        return past[-1][1] if past else 0.0001

    def listed(self) -> list[str]:
        """The trading symbols that have data."""
        return [s for s in LISTED if self.series(s, "15m")]

    # ---- faults -----------------------------------------------------------------------------
    def fail(self, path: str, status: int = 500, *, code: int | None = None, msg: str = "fault",
             times: int = 1, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """The next ``times`` requests to ``path`` get this error."""
        body = {"code": code if code is not None else -1000, "msg": msg}
        with self._lock:
            self.faults.append(Fault(path, status, body, times, headers or {}))

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == path)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path == path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # ---- endpoints --------------------------------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        symbols = []
        for name, (tick, step, min_qty) in LISTED.items():
            symbols.append(self._symbol_info(name, "TRADING", tick, step, min_qty))
        for name, status in NOT_TRADING.items():
            symbols.append(self._symbol_info(name, status, "0.001", "1", "1"))
        return {
            "timezone": "UTC",
            "serverTime": self.clock(),
            "rateLimits": [],
            "assets": [],
            "symbols": symbols,
        }

    @staticmethod
    def _symbol_info(name: str, status: str, tick: str, step: str, min_qty: str) -> dict[str, Any]:
        return {
            "symbol": name, "pair": name, "contractType": "PERPETUAL", "status": status,
            "baseAsset": name.removesuffix("USDT"), "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": 4, "quantityPrecision": 3,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": "100000", "stepSize": step},
                {"filterType": "MARKET_LOT_SIZE", "minQty": min_qty, "maxQty": "10000", "stepSize": step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "minNotional": "5"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.05", "multiplierDown": "0.95",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }  # fmt: skip

    def handle(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        symbol = params.get("symbol", "")
        if path == "/fapi/v3/exchangeInfo":
            return 200, self.exchange_info()
        if path == "/fapi/v3/time":
            return 200, {"serverTime": self.clock()}
        if path in ("/fapi/v3/premiumIndex", "/fapi/v3/ticker/24hr") and not symbol:
            return 200, [self.handle(path, {"symbol": s})[1] for s in self.listed()]
        if path in (
            "/fapi/v3/klines",
            "/fapi/v3/premiumIndex",
            "/fapi/v3/ticker/24hr",
            "/fapi/v1/openInterest",
        ) and (symbol not in LISTED or not self.series(symbol, "15m")):
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if path == "/fapi/v3/klines":
            interval = params.get("interval", "")
            if interval not in INTERVAL_MS:
                return 400, {"code": -1120, "msg": "Invalid interval."}
            limit = int(params.get("limit", "500"))
            if not 1 <= limit <= 1500:
                return 400, {"code": -1130, "msg": "Invalid limit."}
            step = INTERVAL_MS[interval]
            rows = [
                [int(r[0]), f"{r[1]}", f"{r[2]}", f"{r[3]}", f"{r[4]}", f"{r[5]}", int(r[0]) + step - 1,
                 "0", 100, "0", "0", "0"]
                for r in self.served_candles(symbol, interval, limit)
            ]  # fmt: skip
            return 200, rows
        if path == "/fapi/v3/premiumIndex":
            mark = self.mark(symbol)
            now = self.clock()
            next_funding = (now // 28_800_000 + 1) * 28_800_000
            return 200, {
                "symbol": symbol, "markPrice": f"{mark}", "indexPrice": f"{mark}",
                "estimatedSettlePrice": f"{mark}", "lastFundingRate": f"{self.funding_rate(symbol)}",
                "nextFundingTime": next_funding, "interestRate": "0.0001", "time": now,
            }  # fmt: skip
        if path == "/fapi/v3/ticker/24hr":
            day = self.closed_candles(symbol, "1h", 24)
            open_price, last = day[0][1], day[-1][4]
            return 200, {
                "symbol": symbol, "lastPrice": f"{last}", "openPrice": f"{open_price}",
                "priceChange": f"{last - open_price}",
                "priceChangePercent": f"{(last - open_price) / open_price * 100:.3f}",
                "highPrice": f"{max(r[2] for r in day)}", "lowPrice": f"{min(r[3] for r in day)}",
                "volume": f"{sum(r[5] for r in day)}", "quoteVolume": f"{sum(r[5] * r[4] for r in day)}",
            }  # fmt: skip
        if path == "/fapi/v1/openInterest":
            if not self.open_interest_supported:
                return 404, {"code": -1000, "msg": "Not found"}
            return 200, {"symbol": symbol, "openInterest": "12345.678", "time": self.clock()}
        return 404, {"code": -1000, "msg": f"unknown path {path}"}

    # ---- server -----------------------------------------------------------------------------
    def start(self) -> FakeAster:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with fake._lock:
                    fake.requests.append(("GET", url.path, params))
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                fault = fake._take_fault(url.path)
                headers: dict[str, str] = {}
                if fault is not None:
                    status, body, headers = fault.status, fault.body, fault.headers
                else:
                    status, body = fake.handle(url.path, params)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-MBX-USED-WEIGHT-1M", str(len(fake.requests)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
