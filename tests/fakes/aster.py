"""A fake AsterDEX futures venue on loopback, serving real Binance candles from tests/data.

It speaks the venue's REST protocol over real HTTP (a threaded server), so the real httpx client is
exercised. Time is shifted so that the data's ``anchor_ms`` maps onto the fake's clock: the newest candle
it serves is still open, exactly as on the live venue. It records every request and can inject faults and
latency.

Public endpoints (``/fapi/v3/...``; the ``/fapi/v1/...`` twins answer the same): ping, time, exchangeInfo,
klines (startTime/endTime/limit), premiumIndex, ticker/24hr, ticker/price, fundingRate, fundingInfo, and
``/fapi/v1/openInterest``.

Signed endpoints, both schemes on the same accounts (see the reference, section 2):

* V3 (``/fapi/v3/...``): the params travel as one urlencoded string, in the query (GET; POST/DELETE too) or
  in an ``application/x-www-form-urlencoded`` body, ending in ``&signature=0x...``. The signer is recovered
  from the EIP-712 ``Message(string msg)`` signature over the exact bytes before ``&signature=`` and must
  equal ``signer`` and be registered for ``user`` (:meth:`FakeAster.add_v3_account`; without ``user`` the
  signer's own account is used). The nonce (µs) must be within ``nonce_window_us`` of the fake clock and not
  among the signer's last 100 nonces, nor below their minimum once 100 are kept (-4225 "Nonce Expired").
* V1 (``/fapi/v1/order``, ``/fapi/v2/balance``, ...): ``X-MBX-APIKEY`` (:meth:`FakeAster.add_v1_key`), an
  HMAC-SHA256 hex ``signature`` of query string + body, and ``timestamp``/``recvWindow``.

The account simulation is deliberately simple and deterministic:

* one USDT wallet per account (V3 user or V1 api key), ``default_balance`` unless :meth:`set_balance`;
* one-way mode only (positionSide BOTH); leverage per symbol (default 20), margin type per symbol
  (default CROSSED, as on Binance). Both margin types are accounted the same way: each position holds
  ``entry notional / leverage`` as its margin (isolated-style), the wallet only changes by realized PnL and
  fees, and ``available = wallet - position margins - open LIMIT order margins (+ unrealized PnL of CROSSED
  positions)``. Funding is paid only when a test calls :meth:`FakeAster.charge_funding`, and a position is
  liquidated only by :meth:`FakeAster.force_close`; positionRisk's liquidationPrice is the isolated estimate
  with ``maintenance_margin_rate``;
* fills: MARKET at the mark; a LIMIT that is marketable on arrival at the mark (taker), otherwise it rests
  and fills at its own price (maker) once the mark reaches it; STOP_MARKET/TAKE_PROFIT_MARKET fill at their
  stopPrice when the mark reaches it (the order's ``type`` becomes MARKET, ``origType`` stays). Every fill
  pays ``taker_fee`` x notional. A closePosition order closes the whole position; with no position left
  (or a reduceOnly order that no longer reduces) it is EXPIRED when triggered. Weighted-average entry,
  realized PnL on reductions, a flip reopens the rest at the fill price;
* history: userTrades (symbol required; fromId, or a startTime/endTime window of at most 7 days, the last 7
  days by default; limit ≤ 1000, oldest first) and income (COMMISSION and REALIZED_PNL rows for every fill,
  FUNDING_FEE rows for every charge; filtered by symbol, incomeType and time, the last 7 days by default,
  limit ≤ 1000, oldest first);
* position mode and transfers: :meth:`FakeAster.set_position_mode` switches an account to hedge mode, where
  every order is refused with -4061 (the venue's answer to one without LONG/SHORT); :meth:`FakeAster.transfer`
  deposits or withdraws, recorded as TRANSFER income;
* the mark is the close of the newest closed 15m candle unless :meth:`set_mark` pins it. Triggers are
  checked by :meth:`set_mark` and before every signed request.

Protective-order rules, as attributes a test sets (see ``_protection_rules``): ``one_close_position_per_side``
(-4130), ``max_algo_orders`` (-4045; 100 by default) and ``refuse_stops_while_flat`` (-2022).

Faults: :meth:`fail` (any method/path; ``after_apply=True`` applies the request and then answers with the
error), :meth:`stall` (delays the reply; applied or not), :meth:`reject_order` (a venue rejection of the
next matching POST /order, not applied). Every reply carries ``X-MBX-USED-WEIGHT-1M`` (requests in the last
minute); order replies also ``X-MBX-ORDER-COUNT-1M`` (order posts in the last minute).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

INTERVAL_MS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000}
# Every interval the venue names (1M aside); one is served only where a data file exists for it.
KLINE_INTERVAL_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
    "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000,
    "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}  # fmt: skip
FUNDING_INTERVAL_MS = 28_800_000
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

# The filter values every listed symbol shares (see _symbol_info).
LOT_MAX_QTY = Decimal("100000")
MARKET_MAX_QTY = Decimal("10000")
MIN_NOTIONAL = Decimal("5")
PERCENT_UP = Decimal("1.05")
PERCENT_DOWN = Decimal("0.95")

# MAX_NUM_ALGO_ORDERS of the reference (section 3.1: "e.g. 100"; counts STOP/TP orders), per symbol here.
MAX_ALGO_ORDERS = 100

CHAIN_ID = 1666
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
EIP712_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Message": [{"name": "msg", "type": "string"}],
}
NONCES_KEPT = 100

ZERO = Decimal(0)
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET")
CONDITIONAL = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "HIDDEN")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
UNKNOWN_STATUS_MSG = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."

# Signed paths -> (scheme, endpoint name). The V1 names follow the reference (balance and positionRisk at v2).
PRIVATE_ROUTES: dict[str, tuple[str, str]] = {
    **{
        f"/fapi/v3/{name}": ("v3", name)
        for name in (
            "order", "openOrder", "openOrders", "allOpenOrders", "allOrders", "positionRisk", "balance",
            "leverage", "marginType", "userTrades", "income", "positionSide/dual",
        )
    },
    "/fapi/v3/accountWithJoinMargin": ("v3", "account"),
    **{
        f"/fapi/v1/{name}": ("v1", name)
        for name in (
            "order", "openOrder", "openOrders", "allOpenOrders", "allOrders", "leverage", "marginType", "userTrades",
            "income", "positionSide/dual",
        )
    },
    "/fapi/v2/balance": ("v1", "balance"),
    "/fapi/v2/positionRisk": ("v1", "positionRisk"),
    "/fapi/v4/account": ("v1", "account"),
}  # fmt: skip
METHODS = {
    "order": ("GET", "POST", "DELETE"), "openOrder": ("GET",), "openOrders": ("GET",), "allOpenOrders": ("DELETE",),
    "allOrders": ("GET",), "positionRisk": ("GET",), "balance": ("GET",), "account": ("GET",),
    "leverage": ("POST",), "marginType": ("POST",), "userTrades": ("GET",), "income": ("GET",),
    "positionSide/dual": ("GET", "POST"),
}  # fmt: skip
PUBLIC_NAMES = (
    "ping", "time", "exchangeInfo", "klines", "premiumIndex", "ticker/24hr", "ticker/price", "fundingRate",
    "fundingInfo",
)  # fmt: skip
V1_PUBLIC = {f"/fapi/v1/{name}": f"/fapi/v3/{name}" for name in PUBLIC_NAMES}


@dataclass
class Fault:
    """An error reply for the next ``times`` requests to ``path`` (any method unless ``method``)."""

    path: str
    status: int
    body: Any
    times: int
    headers: dict[str, str]
    method: str | None = None
    after_apply: bool = False


@dataclass
class Stall:
    """A reply delayed by ``seconds`` for the next ``times`` requests to ``path``."""

    path: str
    seconds: float
    times: int
    method: str | None
    after_apply: bool
    queued: bool = False


@dataclass
class Rejection:
    """A venue rejection for the next ``times`` POST /order whose params include all of ``match``."""

    match: dict[str, str]
    code: int
    msg: str
    times: int
    status: int


@dataclass
class SignedRequest:
    """One request to a signed path, as it arrived (authenticated or not) and what it got back."""

    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]
    time_ms: int
    status: int = 0
    reply: Any = None


@dataclass
class Order:
    """An order as the venue keeps it; :meth:`to_json` is the section 5 order object."""

    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: str
    type: str
    orig_type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    reduce_only: bool
    close_position: bool
    working_type: str
    price_protect: bool
    time: int
    update_time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id, "clientOrderId": self.client_order_id, "symbol": self.symbol,
            "status": self.status, "type": self.type, "origType": self.orig_type, "side": self.side,
            "positionSide": "BOTH", "price": _fmt(self.price), "avgPrice": _fmt8(self.avg_price),
            "origQty": _fmt(self.orig_qty), "executedQty": _fmt(self.executed_qty), "cumQty": _fmt(self.executed_qty),
            "cumQuote": _fmt8(self.cum_quote), "timeInForce": self.time_in_force, "reduceOnly": self.reduce_only,
            "closePosition": self.close_position, "stopPrice": _fmt(self.stop_price),
            "workingType": self.working_type, "priceProtect": self.price_protect, "time": self.time,
            "updateTime": self.update_time,
        }  # fmt: skip


@dataclass
class Fill:
    """One trade of an account (a userTrades row)."""

    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    time: int
    maker: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "id": self.trade_id, "orderId": self.order_id, "side": self.side,
            "positionSide": "BOTH", "price": _fmt(self.price), "qty": _fmt(self.qty),
            "quoteQty": _fmt8(self.price * self.qty), "realizedPnl": _fmt8(self.realized_pnl),
            "commission": _fmt8(self.commission), "commissionAsset": "USDT", "marginAsset": "USDT",
            "time": self.time, "buyer": self.side == "BUY", "maker": self.maker,
        }  # fmt: skip


@dataclass
class Income:
    """One change of an account's wallet (an income row): funding, commission, realized PnL."""

    tran_id: int
    symbol: str
    income_type: str
    amount: Decimal
    time: int
    trade_id: int | None = None
    info: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "incomeType": self.income_type, "income": _fmt8(self.amount), "asset": "USDT",
            "info": self.info, "time": self.time, "tranId": self.tran_id,
            "tradeId": "" if self.trade_id is None else str(self.trade_id),
        }  # fmt: skip


@dataclass
class Position:
    """A one-way position: signed amount, average entry, the margin it holds."""

    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    margin: Decimal = ZERO
    update_time: int = 0


@dataclass
class Account:
    """One venue account: a V3 user (lower-case address) or a V1 api key."""

    name: str
    wallet: Decimal
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    income: list[Income] = field(default_factory=list)
    dual_side: bool = False  # hedge (dual-side) position mode: see FakeAster.set_position_mode


class VenueReject(Exception):
    """A venue error reply, raised inside the handlers and sent as ``{"code", "msg"}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


_ROWS: dict[Path, list[list[float]]] = {}


def load_rows(path: Path) -> list[list[float]]:
    """The rows of one CSV file (cached for the whole test session: the files never change)."""
    if path not in _ROWS:
        with path.open() as fh:
            reader = csv.reader(fh)
            next(reader)
            _ROWS[path] = [[float(x) for x in row] for row in reader]
    return _ROWS[path]


def _fmt(value: Decimal) -> str:
    """A plain decimal string, no exponent and no trailing zeros ("0" for zero)."""
    return "0" if value == 0 else format(value.normalize(), "f")


def _fmt8(value: Decimal) -> str:
    """A computed amount (an average, a PnL) rounded to 8 decimals, then as :func:`_fmt`."""
    return _fmt(value.quantize(Decimal("1e-8")))


def _dec(value: float | int | str | Decimal) -> Decimal:
    """A Decimal of the value as written (floats through their shortest repr)."""
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))


def typed_message(msg: str, chain_id: int = CHAIN_ID) -> dict[str, Any]:
    """The EIP-712 typed data the venue signs over: ``Message(string msg)`` in the AsterSignTransaction domain."""
    return {
        "types": EIP712_TYPES,
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": ZERO_ADDRESS,
        },
        "message": {"msg": msg},
    }


def recover_signer(msg: str, signature: str, chain_id: int = CHAIN_ID) -> str:
    """The address that signed ``msg`` (as a V3 request string) with ``signature`` (0x + r||s||v hex)."""
    from eth_account import Account as EthAccount  # heavy; only signed requests need it
    from eth_account.messages import encode_typed_data

    signable = encode_typed_data(full_message=typed_message(msg, chain_id))
    return str(EthAccount.recover_message(signable, signature=bytes.fromhex(signature.removeprefix("0x"))))


def _params(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True))


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if value == "":
        raise VenueReject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _number(params: dict[str, str], name: str) -> Decimal:
    value = _required(params, name)
    if not NUMBER_RE.fullmatch(value):
        raise VenueReject(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        )
    return Decimal(value)


def _integer(params: dict[str, str], name: str, default: int | None = None) -> int:
    if params.get(name, "") == "" and default is not None:
        return default
    value = _required(params, name)
    if not re.fullmatch(r"-?[0-9]{1,20}", value):
        raise VenueReject(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(value)


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise VenueReject(-1130, f"Data sent for parameter '{name}' is not valid.")
    return value == "true"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent connections, like a client's whole pool at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up during a stall is expected, not an error


class FakeAster:
    """The fake venue. Start it with :meth:`start`; ``base_url`` is then its address."""

    def __init__(
        self,
        data_dir: Path,
        *,
        anchor_ms: int = DEFAULT_ANCHOR_MS,
        clock: Callable[[], int] | None = None,
        latency_s: float = 0.0,
        chain_id: int = CHAIN_ID,
        default_balance: Decimal | int | str = Decimal(10_000),
        default_leverage: int = 20,
        default_margin_type: str = "CROSSED",
        taker_fee: Decimal | str = Decimal("0.0004"),
        maintenance_margin_rate: Decimal | str = Decimal("0.004"),
        nonce_window_us: int = 60_000_000,
    ) -> None:
        self.data_dir = data_dir
        self.anchor_ms = anchor_ms
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.latency_s = latency_s
        self.chain_id = chain_id
        self.default_balance = _dec(default_balance)
        self.default_leverage = default_leverage
        self.default_margin_type = default_margin_type
        self.taker_fee = _dec(taker_fee)
        self.maintenance_margin_rate = _dec(maintenance_margin_rate)
        self.nonce_window_us = nonce_window_us
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.faults: list[Fault] = []
        self.stalls: list[Stall] = []
        self.rejections: list[Rejection] = []
        self.open_interest_supported = True
        # Protective-order rules (see _protection_rules); tests turn them on or change them.
        self.one_close_position_per_side = False
        self.max_algo_orders: int | None = MAX_ALGO_ORDERS
        self.refuse_stops_while_flat = False
        # Records for assertions (read them once the requests are answered, or through the methods below).
        self.signed_requests: list[SignedRequest] = []
        self.orders: dict[int, Order] = {}
        self.nonces: dict[str, list[int]] = {}  # signer (lower case) -> every nonce accepted, in arrival order
        self.accounts: dict[str, Account] = {}
        self._order_posts: list[dict[str, str]] = []
        self._signers: dict[str, str] = {}  # signer -> user (both lower case)
        self._v1_keys: dict[str, str] = {}  # api key -> secret
        self._recent_nonces: dict[str, list[int]] = {}  # signer -> the last NONCES_KEPT nonces, sorted
        self._hits: deque[int] = deque()
        self._order_hits: deque[int] = deque()
        self._next_order_id = 8_380_000_001
        self._next_trade_id = 520_000_001
        self._next_tran_id = 910_000_001
        self._series: dict[tuple[str, str], list[list[float]]] = {}
        self._funding: dict[str, list[list[float]]] = {}
        self._marks: dict[str, Decimal] = {}
        self._lock = threading.RLock()
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

    def _page(self, rows: list[list[float]], limit: int, start_ms: int | None, end_ms: int | None) -> list[list[float]]:
        """Rows (keyed by data time) that happened by now, shifted, oldest first, at most ``limit``.

        Like Binance: with ``start_ms`` the first ``limit`` rows in [start_ms, end_ms]; otherwise the newest
        ``limit`` up to ``end_ms`` (or now). Both bounds are inclusive, in served time.
        """
        offset = self.offset_ms
        end = bisect.bisect_right(rows, float(self.clock() - offset), key=lambda r: r[0])
        if end_ms is not None:
            end = min(end, bisect.bisect_right(rows, float(end_ms - offset), key=lambda r: r[0]))
        if start_ms is not None:
            start = bisect.bisect_left(rows, float(start_ms - offset), key=lambda r: r[0])
            chosen = rows[start : max(start, min(end, start + limit))]
        else:
            chosen = rows[max(0, end - limit) : end]
        return [[r[0] + offset, *r[1:]] for r in chosen]

    def served_candles(
        self, symbol: str, interval: str, limit: int, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[float]]:
        """Candles opened by now (the last one still open), times shifted, oldest first, at most ``limit``.

        With ``start_ms`` the first ``limit`` opened in [start_ms, end_ms]; otherwise the newest ``limit``
        opened by ``end_ms`` (or by now), as the venue pages klines.
        """
        return self._page(self.series(symbol, interval), limit, start_ms, end_ms)

    def closed_candles(self, symbol: str, interval: str, limit: int | None = None) -> list[list[float]]:
        """The candles closed by now (the newest ``limit`` of them), times shifted."""
        rows = self.series(symbol, interval)
        end = bisect.bisect_right(rows, float(self.data_now_ms() - KLINE_INTERVAL_MS[interval]), key=lambda r: r[0])
        start = 0 if limit is None else max(0, end - limit)
        offset = self.offset_ms
        return [[r[0] + offset, *r[1:]] for r in rows[start:end]]

    def open_candle(self, symbol: str, interval: str) -> list[float]:
        """The candle still in progress (a correct client never shows it)."""
        return self.served_candles(symbol, interval, 1)[-1]

    def mark(self, symbol: str) -> float:
        """The mark price: the close of the newest closed 15m candle, unless :meth:`set_mark` pinned it."""
        pinned = self._marks.get(symbol)
        if pinned is not None:
            return float(pinned)
        return self.closed_candles(symbol, "15m", 1)[-1][4]

    def mark_price(self, symbol: str) -> Decimal:
        """The mark price as a Decimal: exactly the pinned one, or the candle close as written in the data."""
        pinned = self._marks.get(symbol)
        return pinned if pinned is not None else _dec(self.mark(symbol))

    def set_mark(self, symbol: str, price: Decimal | float | str | None) -> None:
        """Pin the mark price of ``symbol`` (None: back to the candles), then fill what it triggers."""
        with self._lock:
            if price is None:
                self._marks.pop(symbol, None)
            else:
                self._marks[symbol] = _dec(price)
            self._run_triggers()

    def funding_series(self, symbol: str) -> list[list[float]]:
        """The symbol's funding rows ``[funding_time_ms, rate]`` in data time (all of them, future included)."""
        if symbol not in self._funding:
            path = self.data_dir / f"{symbol}-funding.csv"
            self._funding[symbol] = load_rows(path) if path.exists() else []
        return self._funding[symbol]

    def served_funding(
        self, symbol: str, limit: int, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[float]]:
        """Funding events that happened by now, times shifted like the candles, paged like klines."""
        return self._page(self.funding_series(symbol), limit, start_ms, end_ms)

    def funding_rate(self, symbol: str) -> float:
        past = self.served_funding(symbol, 1)
        return past[-1][1] if past else 0.0001

    def mark_at(self, symbol: str, served_ms: int) -> Decimal:
        """The open of the 1h candle at ``served_ms`` (the mark recorded with a funding event); 0 without data."""
        rows = self.series(symbol, "1h")
        i = bisect.bisect_right(rows, float(served_ms - self.offset_ms), key=lambda r: r[0]) - 1
        return _dec(rows[i][1]) if i >= 0 else ZERO

    def listed(self) -> list[str]:
        """The trading symbols that have data."""
        return [s for s in LISTED if self.series(s, "15m")]

    # ---- accounts ---------------------------------------------------------------------------
    @staticmethod
    def _name(user_or_key: str) -> str:
        return user_or_key.lower() if user_or_key.startswith("0x") else user_or_key

    def _account(self, user_or_key: str) -> Account:
        name = self._name(user_or_key)
        with self._lock:
            if name not in self.accounts:
                self.accounts[name] = Account(name, self.default_balance)
            return self.accounts[name]

    def add_v3_account(self, user: str, signer: str) -> None:
        """Register the API wallet ``signer`` for the main wallet ``user`` (the account is created if new)."""
        with self._lock:
            self._account(user)
            self._signers[signer.lower()] = user.lower()

    def add_v1_key(self, api_key: str, secret: str) -> None:
        """Register a V1 api key and its HMAC secret; the key names its own account."""
        with self._lock:
            self._account(api_key)
            self._v1_keys[api_key] = secret

    def set_balance(self, user_or_key: str, usd: Decimal | int | str) -> None:
        """Set the account's USDT wallet balance."""
        with self._lock:
            self._account(user_or_key).wallet = _dec(usd)

    def set_position(
        self, user_or_key: str, symbol: str, amount: Decimal | str, entry_price: Decimal | str | None = None
    ) -> None:
        """Seed a position (e.g. one left from before a restart), its margin at the account's leverage."""
        with self._lock:
            acc = self._account(user_or_key)
            amount, entry = _dec(amount), _dec(entry_price) if entry_price is not None else self.mark_price(symbol)
            margin = abs(amount) * entry / self._leverage(acc, symbol)
            acc.positions[symbol] = Position(amount, entry if amount else ZERO, margin, self.clock())

    def charge_funding(
        self, user_or_key: str, symbol: str, rate: Decimal | str | float, *, time_ms: int | None = None
    ) -> Decimal:
        """Settle funding on the account's ``symbol`` position at the mark: amount = -positionAmt x mark x rate
        (a long pays a positive rate). The wallet changes by the amount, recorded as a FUNDING_FEE income at
        ``time_ms`` (default now). Returns the amount."""
        with self._lock:
            acc = self._account(user_or_key)
            pos = acc.positions.get(symbol, Position())
            amount = -pos.amount * self.mark_price(symbol) * _dec(rate)
            acc.wallet += amount
            self._add_income(acc, symbol, "FUNDING_FEE", amount, self.clock() if time_ms is None else time_ms)
            return amount

    def force_close(self, user_or_key: str, symbol: str, client_order_id: str | None = None) -> Order:
        """Close the account's ``symbol`` position at the mark with an order of the venue's own, as its
        liquidation engine does (client id ``autoclose-<ms>`` unless given); the symbol's open orders are
        cancelled first. Returns the venue's order."""
        with self._lock:
            acc = self._account(user_or_key)
            pos = acc.positions.get(symbol, Position())
            if not pos.amount:
                raise ValueError(f"{symbol}: no position to close")
            now = self.clock()
            for order in self.open_orders(acc.name):
                if order.symbol == symbol:
                    order.status, order.update_time = "CANCELED", now
            side = "SELL" if pos.amount > 0 else "BUY"
            qty = abs(pos.amount)
            order = Order(
                self._next_order_id, client_order_id or f"autoclose-{now}", acc.name, symbol, side, "MARKET",
                "MARKET", "GTC", qty, ZERO, ZERO, True, False, "CONTRACT_PRICE", False, now, now,
            )  # fmt: skip
            self._next_order_id += 1
            self.orders[order.order_id] = order
            self._fill(acc, order, self.mark_price(symbol), qty, maker=False)
            return order

    # ---- position mode and transfers (the positions issue: hedge mode, TRANSFER income) -------
    def set_position_mode(self, user_or_key: str, *, dual: bool) -> None:
        """Switch the account to hedge (dual-side, ``dual``) or one-way position mode. In hedge mode every
        order without positionSide LONG/SHORT is refused with -4061, as the venue does."""
        with self._lock:
            self._account(user_or_key).dual_side = dual

    def transfer(self, user_or_key: str, amount: Decimal | int | str, *, time_ms: int | None = None) -> None:
        """A deposit (``amount`` > 0) or a withdrawal (< 0) of USDT: the wallet moves by it, recorded as a
        TRANSFER income row (no symbol) at ``time_ms`` (default now)."""
        with self._lock:
            acc = self._account(user_or_key)
            acc.wallet += _dec(amount)
            self._add_income(acc, "", "TRANSFER", _dec(amount), self.clock() if time_ms is None else time_ms)

    def income_rows(self, user_or_key: str) -> list[Income]:
        """The account's income rows, oldest first."""
        with self._lock:
            return list(self._account(user_or_key).income)

    def _add_income(
        self, acc: Account, symbol: str, kind: str, amount: Decimal, time_ms: int, trade_id: int | None = None
    ) -> None:
        acc.income.append(Income(self._next_tran_id, symbol, kind, amount, time_ms, trade_id))
        self._next_tran_id += 1

    def balance(self, user_or_key: str) -> Decimal:
        """The account's wallet balance (deposits + realized PnL - fees + funding)."""
        with self._lock:
            return self._account(user_or_key).wallet

    def available(self, user_or_key: str) -> Decimal:
        """What the account can still open with (the availableBalance it reports)."""
        with self._lock:
            return self._available(self._account(user_or_key))

    def positions(self, user_or_key: str) -> dict[str, Decimal]:
        """The account's non-zero positions: {symbol: signed amount}."""
        with self._lock:
            acc = self._account(user_or_key)
            return {s: p.amount for s, p in acc.positions.items() if p.amount}

    def position(self, user_or_key: str, symbol: str) -> Position:
        """A copy of the account's position in ``symbol`` (zero if none)."""
        with self._lock:
            return replace(self._account(user_or_key).positions.get(symbol, Position()))

    def leverage(self, user_or_key: str, symbol: str) -> int:
        with self._lock:
            return self._leverage(self._account(user_or_key), symbol)

    def margin_type(self, user_or_key: str, symbol: str) -> str:
        """ISOLATED or CROSSED."""
        with self._lock:
            return self._account(user_or_key).margin_type.get(symbol, self.default_margin_type)

    def open_orders(self, user_or_key: str) -> list[Order]:
        """The account's open orders, oldest first."""
        name = self._name(user_or_key)
        with self._lock:
            return [o for o in self.orders.values() if o.account == name and o.is_open]

    def fills(self, user_or_key: str) -> list[Fill]:
        """The account's trades, oldest first."""
        with self._lock:
            return list(self._account(user_or_key).fills)

    def order_posts(self, client_order_id: str | None = None) -> list[dict[str, str]]:
        """Every POST /order that arrived (rejected and faulted ones too), as parsed params."""
        with self._lock:
            posts = [dict(p) for p in self._order_posts]
        if client_order_id is None:
            return posts
        return [p for p in posts if p.get("newClientOrderId") == client_order_id]

    def applied_orders(self, client_order_id: str) -> int:
        """How many orders with this client id the venue actually created (a correct client: at most 1)."""
        with self._lock:
            return sum(1 for o in self.orders.values() if o.client_order_id == client_order_id)

    # ---- faults -----------------------------------------------------------------------------
    def fail(self, path: str, status: int = 500, *, code: int | None = None, msg: str = "fault",
             times: int = 1, headers: dict[str, str] | None = None, method: str | None = None,
             after_apply: bool = False, body: Any = None) -> None:  # fmt: skip
        """The next ``times`` requests to ``path`` get this error; with ``after_apply`` they are applied first.

        ``body`` replaces the reply's JSON altogether (e.g. a malformed order object with HTTP 200).
        """
        if body is None:
            body = {"code": code if code is not None else -1000, "msg": msg}
        with self._lock:
            self.faults.append(Fault(path, status, body, times, headers or {}, method, after_apply))

    def stall(
        self, path: str, seconds: float, times: int = 1, method: str | None = None, after_apply: bool = True
    ) -> None:
        """Delay the next ``times`` replies on ``path`` by ``seconds`` (see also :meth:`queue`).

        With ``after_apply`` the request is applied and the real reply sent late; without, it is not applied
        and the late reply is HTTP 503 -1007 (execution status unknown).
        """
        with self._lock:
            self.stalls.append(Stall(path, seconds, times, method, after_apply))

    def queue(self, path: str, seconds: float, times: int = 1, method: str | None = None) -> None:
        """The next ``times`` requests on ``path`` wait ``seconds`` in the venue's queue and are applied only
        then (V3 requests settle on chain): a lookup made meanwhile finds nothing."""
        with self._lock:
            self.stalls.append(Stall(path, seconds, times, method, after_apply=False, queued=True))

    def reject_order(self, match: dict[str, str], code: int, msg: str, times: int = 1, status: int = 400) -> None:
        """Reject the next ``times`` authenticated POST /order whose params include ``match``, not applying them."""
        with self._lock:
            self.rejections.append(Rejection(dict(match), code, msg, times, status))

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == path)

    def _take_fault(self, path: str, method: str = "GET") -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path == path and fault.times > 0 and fault.method in (None, method):
                    fault.times -= 1
                    return fault
        return None

    def _take_stall(self, path: str, method: str) -> Stall | None:
        with self._lock:
            for stall in self.stalls:
                if stall.path == path and stall.times > 0 and stall.method in (None, method):
                    stall.times -= 1
                    return stall
        return None

    def _take_rejection(self, params: dict[str, str]) -> None:
        for rejection in self.rejections:
            if rejection.times > 0 and all(params.get(k) == v for k, v in rejection.match.items()):
                rejection.times -= 1
                raise VenueReject(rejection.code, rejection.msg, rejection.status)

    # ---- public endpoints -------------------------------------------------------------------
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
                {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": _fmt(LOT_MAX_QTY), "stepSize": step},
                {"filterType": "MARKET_LOT_SIZE", "minQty": min_qty, "maxQty": _fmt(MARKET_MAX_QTY), "stepSize": step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "minNotional": _fmt(MIN_NOTIONAL)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": _fmt(PERCENT_UP),
                 "multiplierDown": _fmt(PERCENT_DOWN), "multiplierDecimal": "4"},
            ],
            "orderTypes": list(ORDER_TYPES),
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }  # fmt: skip

    def _rules(self, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
        """(tickSize, stepSize, minQty) of a symbol, read from this venue's own exchangeInfo."""
        for info in self.exchange_info()["symbols"]:
            if info["symbol"] == symbol:
                filters = {f["filterType"]: f for f in info["filters"]}
                lot = filters["LOT_SIZE"]
                return Decimal(filters["PRICE_FILTER"]["tickSize"]), Decimal(lot["stepSize"]), Decimal(lot["minQty"])
        raise VenueReject(-1121, "Invalid symbol.")

    def handle(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        """A public (unsigned) endpoint: (HTTP status, JSON body)."""
        symbol = params.get("symbol", "")
        if path == "/fapi/v3/ping":
            return 200, {}
        if path == "/fapi/v3/exchangeInfo":
            return 200, self.exchange_info()
        if path == "/fapi/v3/time":
            return 200, {"serverTime": self.clock()}
        if path == "/fapi/v3/fundingRate" and not symbol:
            rows = []
            for name in self.listed():
                status, page = self._time_paged(path, name, params)
                if status != 200:
                    return status, page
                rows.extend(page)
            return 200, sorted(rows, key=lambda r: r["fundingTime"])[: _integer(params, "limit", 100)]
        if path == "/fapi/v3/fundingInfo" and not symbol:
            return 200, [row for s in self.listed() for row in self.handle(path, {"symbol": s})[1]]
        if path in ("/fapi/v3/premiumIndex", "/fapi/v3/ticker/24hr", "/fapi/v3/ticker/price") and not symbol:
            return 200, [self.handle(path, {"symbol": s})[1] for s in self.listed()]
        if path in (
            "/fapi/v3/klines",
            "/fapi/v3/premiumIndex",
            "/fapi/v3/ticker/24hr",
            "/fapi/v3/ticker/price",
            "/fapi/v3/fundingInfo",
            "/fapi/v3/fundingRate",
            "/fapi/v1/openInterest",
        ) and (symbol not in LISTED or not self.series(symbol, "15m")):
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if path in ("/fapi/v3/klines", "/fapi/v3/fundingRate"):
            return self._time_paged(path, symbol, params)
        if path == "/fapi/v3/ticker/price":
            return 200, {"symbol": symbol, "price": _fmt(self.mark_price(symbol)), "time": self.clock()}
        if path == "/fapi/v3/fundingInfo":  # a list, with or without a symbol (reference section 3)
            return 200, [{
                "symbol": symbol, "interestRate": "0.00010000", "time": self.clock(),
                "fundingIntervalHours": FUNDING_INTERVAL_MS // 3_600_000,
                "fundingFeeCap": "0.02000000", "fundingFeeFloor": "-0.02000000",
            }]  # fmt: skip
        if path == "/fapi/v3/premiumIndex":
            mark = self.mark_price(symbol)
            now = self.clock()
            next_funding = (now // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
            return 200, {
                "symbol": symbol, "markPrice": _fmt(mark), "indexPrice": _fmt(mark),
                "estimatedSettlePrice": _fmt(mark), "lastFundingRate": f"{self.funding_rate(symbol)}",
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

    def _time_paged(self, path: str, symbol: str, params: dict[str, str]) -> tuple[int, Any]:
        """klines and fundingRate: startTime/endTime (ms, inclusive) and limit, as Binance pages them."""
        try:
            start = _integer(params, "startTime") if params.get("startTime") else None
            end = _integer(params, "endTime") if params.get("endTime") else None
            limit = _integer(params, "limit", 500 if path.endswith("klines") else 100)
        except VenueReject as e:
            return e.status, {"code": e.code, "msg": e.msg}
        if start is not None and end is not None and start > end:
            return 400, {"code": -1023, "msg": "Start time is greater than end time."}
        if path.endswith("fundingRate"):
            if not 1 <= limit <= 1000:
                return 400, {"code": -1130, "msg": "Invalid limit."}
            return 200, [
                {
                    "symbol": symbol,
                    "fundingRate": _fmt(_dec(rate).quantize(Decimal("1e-8"))),
                    "fundingTime": int(at),
                    "markPrice": _fmt(self.mark_at(symbol, int(at))),
                }
                for at, rate, *_ in self.served_funding(symbol, limit, start_ms=start, end_ms=end)
            ]
        interval = params.get("interval", "")
        if interval not in INTERVAL_MS and not (interval in KLINE_INTERVAL_MS and self.series(symbol, interval)):
            return 400, {"code": -1120, "msg": "Invalid interval."}
        if not 1 <= limit <= 1500:
            return 400, {"code": -1130, "msg": "Invalid limit."}
        step = KLINE_INTERVAL_MS[interval]
        rows = [
            [int(r[0]), f"{r[1]}", f"{r[2]}", f"{r[3]}", f"{r[4]}", f"{r[5]}", int(r[0]) + step - 1,
             "0", 100, "0", "0", "0"]
            for r in self.served_candles(symbol, interval, limit, start_ms=start, end_ms=end)
        ]  # fmt: skip
        return 200, rows

    # ---- authentication ---------------------------------------------------------------------
    def _authenticate(
        self, scheme: str, query: str, body: str, headers: dict[str, str]
    ) -> tuple[Account, dict[str, str]]:
        """The account and business params of a signed request; raises VenueReject as the venue would."""
        if scheme == "v3":
            return self._authenticate_v3(body or query)
        return self._authenticate_v1(query, body, headers)

    def _authenticate_v3(self, raw: str) -> tuple[Account, dict[str, str]]:
        signed, sep, signature = raw.rpartition("&signature=")
        if not sep or not signature:
            raise VenueReject(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        params = _params(signed)
        signer = _required(params, "signer").lower()
        _required(params, "nonce")
        if not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
            raise VenueReject(-1022, "Signature for this request is not valid.")
        try:
            recovered = recover_signer(signed, signature, self.chain_id).lower()
        except Exception as e:  # any malformed signature is just "not valid"
            raise VenueReject(-1022, "Signature for this request is not valid.") from e
        if recovered != signer:
            raise VenueReject(-1022, "Signature for this request is not valid.")
        owner = self._signers.get(signer)
        if owner is None:
            raise VenueReject(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if params.get("user", owner).lower() != owner:
            raise VenueReject(-1022, "Signature for this request is not valid.")
        self._accept_nonce(signer, _integer(params, "nonce"))
        business = {k: v for k, v in params.items() if k not in ("nonce", "user", "signer")}
        return self._account(owner), business

    def _accept_nonce(self, signer: str, nonce: int) -> None:
        kept = self._recent_nonces.setdefault(signer, [])
        stale = abs(nonce - self.clock() * 1000) > self.nonce_window_us
        i = bisect.bisect_left(kept, nonce)
        duplicate = i < len(kept) and kept[i] == nonce
        below_window = len(kept) >= NONCES_KEPT and nonce < kept[0]
        if stale or duplicate or below_window:
            raise VenueReject(-4225, "Nonce Expired")
        kept.insert(i, nonce)
        if len(kept) > NONCES_KEPT:
            kept.pop(0)
        self.nonces.setdefault(signer, []).append(nonce)

    def _authenticate_v1(self, query: str, body: str, headers: dict[str, str]) -> tuple[Account, dict[str, str]]:
        key = next((v for k, v in headers.items() if k.lower() == "x-mbx-apikey"), "")
        secret = self._v1_keys.get(key)
        if secret is None:
            raise VenueReject(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        # The signature is the last param of the query or of the body; totalParams is the rest, concatenated.
        parts = [query, body]
        signature = ""
        for i, part in enumerate(parts):
            head, sep, tail = part.rpartition("signature=")
            if sep and (head == "" or head.endswith("&")):
                parts[i], signature = head.removesuffix("&"), tail
        if not signature:
            raise VenueReject(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        params = {**_params(parts[0]), **_params(parts[1])}
        timestamp = _integer(params, "timestamp")
        recv_window = _integer(params, "recvWindow", 5000)
        if not 0 < recv_window <= 60_000:
            raise VenueReject(-1130, "Data sent for parameter 'recvWindow' is not valid.")
        now = self.clock()
        if not (timestamp < now + 1000 and now - timestamp <= recv_window):
            raise VenueReject(-1021, "Timestamp for this request is outside of the recvWindow.")
        expected = hmac.new(secret.encode(), (parts[0] + parts[1]).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise VenueReject(-1022, "Signature for this request is not valid.")
        return self._account(key), {k: v for k, v in params.items() if k not in ("timestamp", "recvWindow")}

    # ---- signed endpoints -------------------------------------------------------------------
    def _private(self, method: str, name: str, scheme: str, acc: Account, p: dict[str, str]) -> Any:
        if name == "order":
            if method == "POST":
                self._take_rejection(p)
                reply = self._new_order(acc, p)
                if scheme == "v3":  # live V3 replies carry the settlement transaction
                    reply["newChainData"] = {"hash": "0x" + hashlib.sha256(str(reply["orderId"]).encode()).hexdigest()}
                return reply
            order = self._find_order(acc, p)
            if method == "GET":
                return order.to_json()
            if not order.is_open:
                raise VenueReject(-2011, "Unknown order sent.")
            order.status, order.update_time = "CANCELED", self.clock()
            return order.to_json()
        if name == "openOrder":
            order = self._find_order(acc, p)
            if not order.is_open:
                raise VenueReject(-2013, "Order does not exist.")
            return order.to_json()
        if name == "openOrders":
            symbol = self._symbol(p) if p.get("symbol") else None
            return [o.to_json() for o in self.open_orders(acc.name) if symbol in (None, o.symbol)]
        if name == "allOpenOrders":
            symbol = self._symbol(p)
            for order in self.open_orders(acc.name):
                if order.symbol == symbol:
                    order.status, order.update_time = "CANCELED", self.clock()
            return {"code": "200", "msg": "The operation of cancel all open order is done."}
        if name == "allOrders":
            symbol = self._symbol(p)
            limit = _integer(p, "limit", 500)
            mine = [o for o in self.orders.values() if o.account == acc.name and o.symbol == symbol]
            return [o.to_json() for o in mine[-limit:]]
        if name == "positionRisk":
            symbols = [self._symbol(p)] if p.get("symbol") else self._account_symbols(acc)
            return [self._position_row(acc, s) for s in symbols]
        if name == "balance":
            return [self._balance_row(acc)]
        if name == "account":
            return self._account_json(acc)
        if name == "leverage":
            return self._set_leverage(acc, p)
        if name == "marginType":
            return self._set_margin_type(acc, p)
        if name == "userTrades":
            return self._user_trades(acc, p)
        if name == "income":
            return self._income(acc, p)
        if name == "positionSide/dual":
            if method == "GET":
                return {"dualSidePosition": acc.dual_side}
            if _flag(p, "dualSidePosition") == acc.dual_side:
                raise VenueReject(-4059, "No need to change position side.")
            if not _flag(p, "dualSidePosition"):
                acc.dual_side = False
                return {"code": 200, "msg": "success"}
            raise VenueReject(-1000, "The fake venue simulates one-way mode only.")
        raise VenueReject(-1000, f"unknown endpoint {name}")

    def _symbol(self, p: dict[str, str]) -> str:
        symbol = _required(p, "symbol")
        if symbol not in self.listed():
            raise VenueReject(-1121, "Invalid symbol.")
        return symbol

    def _leverage(self, acc: Account, symbol: str) -> int:
        return acc.leverage.get(symbol, self.default_leverage)

    def _isolated(self, acc: Account, symbol: str) -> bool:
        return acc.margin_type.get(symbol, self.default_margin_type) == "ISOLATED"

    def _account_symbols(self, acc: Account) -> list[str]:
        extra = [s for s in [*acc.positions, *acc.leverage, *acc.margin_type] if s not in self.listed()]
        return [*self.listed(), *dict.fromkeys(extra)]

    def _unrealized(self, symbol: str, pos: Position) -> Decimal:
        return pos.amount * (self.mark_price(symbol) - pos.entry_price) if pos.amount else ZERO

    @staticmethod
    def _opening_qty(pos: Position, side: str, qty: Decimal) -> Decimal:
        """The part of an order that opens or adds (the rest only reduces the position)."""
        reduces = (side == "SELL" and pos.amount > 0) or (side == "BUY" and pos.amount < 0)
        return max(ZERO, qty - abs(pos.amount)) if reduces else qty

    def _order_margin(self, acc: Account) -> Decimal:
        total = ZERO
        for o in self.orders.values():
            if o.account == acc.name and o.is_open and o.type == "LIMIT" and not o.reduce_only:
                pos = acc.positions.get(o.symbol, Position())
                total += (
                    self._opening_qty(pos, o.side, o.orig_qty - o.executed_qty)
                    * o.price
                    / self._leverage(acc, o.symbol)
                )
        return total

    def _available(self, acc: Account) -> Decimal:
        held = sum((p.margin for p in acc.positions.values()), ZERO)
        cross_pnl = sum((self._unrealized(s, p) for s, p in acc.positions.items() if not self._isolated(acc, s)), ZERO)
        return acc.wallet - held - self._order_margin(acc) + cross_pnl

    def _new_order(self, acc: Account, p: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(p)
        side = _required(p, "side")
        if side not in ("BUY", "SELL"):
            raise VenueReject(-1117, "Invalid side.")
        otype = _required(p, "type")
        if otype not in ORDER_TYPES:
            raise VenueReject(-1116, "Invalid orderType.")
        if p.get("positionSide", "BOTH") != "BOTH" or acc.dual_side:  # hedge mode wants LONG/SHORT: not simulated
            raise VenueReject(-4061, "Order's position side does not match user's setting.")
        client_id = p.get("newClientOrderId")
        if client_id is not None and not CLIENT_ID_RE.fullmatch(client_id):
            raise VenueReject(-4015, "Client order id is not valid.")
        client_id = client_id or f"autoclientid{self._next_order_id}"
        if any(o.client_order_id == client_id for o in self.open_orders(acc.name)):
            raise VenueReject(-4116, "ClientOrderId is duplicated.")
        close_position, reduce_only = _flag(p, "closePosition"), _flag(p, "reduceOnly")
        if close_position:
            if otype not in CONDITIONAL:
                raise VenueReject(-4136, f"Target strategy invalid for orderType {otype},closePosition true")
            if p.get("quantity"):
                raise VenueReject(-4137, "Quantity must be zero with closePosition equals true.")
            if "reduceOnly" in p:
                raise VenueReject(-1106, "Parameter 'reduceOnly' sent when not required.")
        mandatory = {"LIMIT": ("timeInForce", "quantity", "price"), "MARKET": ("quantity",)}.get(
            otype, ("stopPrice",) if close_position else ("stopPrice", "quantity")
        )
        for name in mandatory:
            _required(p, name)
        tif = p.get("timeInForce", "GTC")
        if otype == "LIMIT" and tif not in TIME_IN_FORCE:
            raise VenueReject(-1115, "Invalid timeInForce.")
        qty = _number(p, "quantity") if "quantity" in mandatory else ZERO
        price = _number(p, "price") if otype == "LIMIT" else ZERO
        stop = _number(p, "stopPrice") if otype in CONDITIONAL else ZERO
        tick, step, min_qty = self._rules(symbol)
        for value in {"LIMIT": (price,), "MARKET": ()}.get(otype, (stop,)):
            if value < tick:
                raise VenueReject(-4013, "Price less than min price.")
            if value % tick:
                raise VenueReject(-1111, "Precision is over the maximum defined for this asset.")
        if not close_position:
            if qty % step:
                raise VenueReject(-1111, "Precision is over the maximum defined for this asset.")
            if qty <= 0:
                raise VenueReject(-4003, "Quantity less than or equal to zero.")
            if qty < min_qty:
                raise VenueReject(-4004, "Quantity less than min quantity.")
            if qty > (MARKET_MAX_QTY if otype == "MARKET" else LOT_MAX_QTY):
                raise VenueReject(-4005, "Quantity greater than max quantity.")
        mark = self.mark_price(symbol)
        if otype == "LIMIT" and side == "BUY" and price > mark * PERCENT_UP:
            raise VenueReject(-4016, f"Limit price can't be higher than {_fmt8(mark * PERCENT_UP)}.")
        if otype == "LIMIT" and side == "SELL" and price < mark * PERCENT_DOWN:
            raise VenueReject(-4024, f"Limit price can't be lower than {_fmt8(mark * PERCENT_DOWN)}.")
        if otype in CONDITIONAL and self._triggered(otype, side, stop, mark):
            raise VenueReject(-2021, "Order would immediately trigger.")
        pos = acc.positions.get(symbol, Position())
        self._protection_rules(acc, symbol, side, otype, close_position, pos)
        if reduce_only and (pos.amount == 0 or self._opening_qty(pos, side, qty) != 0):
            raise VenueReject(-2022, "ReduceOnly Order is rejected.")
        reference = {"LIMIT": price, "MARKET": mark}.get(otype, stop)
        if not (reduce_only or close_position) and qty * reference < MIN_NOTIONAL:
            raise VenueReject(
                -4164, f"Order's notional must be no smaller than {MIN_NOTIONAL:.1f} (unless you choose reduce only)"
            )
        if otype in ("LIMIT", "MARKET") and not reduce_only:
            opening = self._opening_qty(pos, side, qty)
            needed = opening * reference / self._leverage(acc, symbol) + qty * reference * self.taker_fee
            if needed > self._available(acc):
                raise VenueReject(-2019, "Margin is insufficient.")
        marketable = otype == "LIMIT" and (price >= mark if side == "BUY" else price <= mark)
        if otype == "LIMIT" and tif == "GTX" and marketable:
            raise VenueReject(
                -5022, "Due to the order could not be executed as maker, the Post Only order will be rejected."
            )
        now = self.clock()
        order = Order(
            self._next_order_id, client_id, acc.name, symbol, side, otype, otype, tif if otype == "LIMIT" else "GTC",
            qty, price, stop, reduce_only, close_position, p.get("workingType", "CONTRACT_PRICE"),
            _flag(p, "priceProtect"), now, now,
        )  # fmt: skip
        self._next_order_id += 1
        self.orders[order.order_id] = order
        acknowledged = order.to_json()
        if otype == "MARKET" or marketable:
            self._fill(acc, order, mark, qty, maker=False)
        elif otype == "LIMIT" and tif in ("IOC", "FOK"):
            order.status = "EXPIRED"
        return order.to_json() if p.get("newOrderRespType") == "RESULT" else acknowledged

    # ---- protective-order rules (options) --------------------------------------------------
    def _protection_rules(
        self, acc: Account, symbol: str, side: str, otype: str, close_position: bool, pos: Position
    ) -> None:
        """The venue's limits on stops and targets, each an option of the fake:

        * ``one_close_position_per_side`` (off by default; the reference's code table does not list it, but
          Binance and AsterDEX answer -4130): a closePosition order is refused while an open one of the same
          symbol, side and type exists;
        * ``max_algo_orders`` (default :data:`MAX_ALGO_ORDERS`, the reference's MAX_NUM_ALGO_ORDERS example;
          None: no limit): the open STOP/TP orders of a symbol, -4045 beyond it;
        * ``refuse_stops_while_flat`` (off by default): a closePosition order is refused while the account
          has no position on the symbol (-2022), as a venue may treat it as reduce-only.
        """
        if otype not in CONDITIONAL:
            return
        mine = [o for o in self.open_orders(acc.name) if o.symbol == symbol]
        if self.max_algo_orders is not None and sum(1 for o in mine if o.type in CONDITIONAL) >= self.max_algo_orders:
            raise VenueReject(-4045, "Reach max stop order limit.")
        if close_position and self.refuse_stops_while_flat and pos.amount == 0:
            raise VenueReject(-2022, "ReduceOnly Order is rejected.")
        if (
            close_position
            and self.one_close_position_per_side
            and any(o.close_position and o.side == side and o.type == otype for o in mine)
        ):
            raise VenueReject(
                -4130, "An open stop or take profit order with GTE and closePosition in the direction is existing."
            )

    @staticmethod
    def _triggered(otype: str, side: str, stop: Decimal, mark: Decimal) -> bool:
        """STOP buys trigger at mark >= stop, TAKE_PROFIT buys at mark <= stop; sells the reverse."""
        rising = (otype == "STOP_MARKET") == (side == "BUY")
        return mark >= stop if rising else mark <= stop

    def _run_triggers(self) -> None:
        """Fill the resting LIMIT orders the mark has reached and the conditional orders it has triggered."""
        for order in sorted(self.orders.values(), key=lambda o: o.order_id):
            if not order.is_open:
                continue
            mark = self.mark_price(order.symbol)
            acc = self.accounts[order.account]
            pos = acc.positions.get(order.symbol, Position())
            if order.type == "LIMIT":
                if (mark <= order.price) if order.side == "BUY" else (mark >= order.price):
                    qty = order.orig_qty - order.executed_qty
                    if order.reduce_only and self._opening_qty(pos, order.side, qty):
                        order.status, order.update_time = "EXPIRED", self.clock()
                    else:
                        self._fill(acc, order, order.price, qty, maker=True)
                continue
            if not self._triggered(order.type, order.side, order.stop_price, mark):
                continue
            reduces = (order.side == "SELL" and pos.amount > 0) or (order.side == "BUY" and pos.amount < 0)
            if order.close_position:
                qty = abs(pos.amount) if reduces else ZERO
            elif order.reduce_only:
                qty = min(order.orig_qty, abs(pos.amount)) if reduces else ZERO
            else:
                qty = order.orig_qty
            opening = self._opening_qty(pos, order.side, qty)
            needed = opening * order.stop_price / self._leverage(acc, order.symbol)
            order.type = "MARKET"
            if qty == 0 or needed > self._available(acc):
                order.status, order.update_time = "EXPIRED", self.clock()
            else:
                self._fill(acc, order, order.stop_price, qty, maker=False)

    def _fill(self, acc: Account, order: Order, price: Decimal, qty: Decimal, *, maker: bool) -> None:
        """Trade ``qty`` of ``order`` at ``price``: position, margin, realized PnL, fee, the trade record."""
        now = self.clock()
        pos = acc.positions.setdefault(order.symbol, Position())
        signed = qty if order.side == "BUY" else -qty
        leverage = self._leverage(acc, order.symbol)
        realized = ZERO
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            total = pos.amount + signed
            pos.entry_price = (abs(pos.amount) * pos.entry_price + qty * price) / abs(total)
            pos.margin += qty * price / leverage
            pos.amount = total
        else:
            closed = min(qty, abs(pos.amount))
            realized = closed * (price - pos.entry_price) * (1 if pos.amount > 0 else -1)
            pos.margin -= pos.margin * closed / abs(pos.amount)
            pos.amount += signed
            if pos.amount == 0:
                pos.entry_price, pos.margin = ZERO, ZERO
            elif qty > closed:  # flipped: the rest opens at the fill price
                pos.entry_price, pos.margin = price, (qty - closed) * price / leverage
        pos.update_time = now
        fee = qty * price * self.taker_fee
        acc.wallet += realized - fee
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.status = "FILLED"
        order.update_time = now
        acc.fills.append(Fill(self._next_trade_id, order.order_id, order.symbol, order.side, price, qty, realized, fee,
                              now, maker))  # fmt: skip
        if realized:
            self._add_income(acc, order.symbol, "REALIZED_PNL", realized, now, self._next_trade_id)
        self._add_income(acc, order.symbol, "COMMISSION", -fee, now, self._next_trade_id)
        self._next_trade_id += 1

    def _find_order(self, acc: Account, p: dict[str, str]) -> Order:
        symbol = self._symbol(p)
        order_id = _integer(p, "orderId") if p.get("orderId") else None
        client_id = p.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise VenueReject(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        found = [
            o
            for o in self.orders.values()
            if o.account == acc.name
            and o.symbol == symbol
            and (order_id is None or o.order_id == order_id)
            and (client_id is None or o.client_order_id == client_id)
        ]
        if not found:
            raise VenueReject(-2013, "Order does not exist.")
        return found[-1]

    def _liquidation_price(self, pos: Position) -> Decimal:
        """Where isolated margin + unrealized PnL meets the maintenance margin (an estimate)."""
        qty, mmr = abs(pos.amount), self.maintenance_margin_rate
        if not qty:
            return ZERO
        if pos.amount > 0:
            price = (qty * pos.entry_price - pos.margin) / (qty * (1 - mmr))
        else:
            price = (qty * pos.entry_price + pos.margin) / (qty * (1 + mmr))
        return max(price, ZERO)

    @staticmethod
    def _max_notional(leverage: int) -> str:
        return str(50_000_000 // leverage)  # an arbitrary bracket table: only its shape matters here

    def _position_row(self, acc: Account, symbol: str) -> dict[str, Any]:
        pos = acc.positions.get(symbol, Position())
        mark = self.mark_price(symbol)
        pnl = self._unrealized(symbol, pos)
        isolated = self._isolated(acc, symbol)
        leverage = self._leverage(acc, symbol)
        return {
            "symbol": symbol, "positionAmt": _fmt(pos.amount), "entryPrice": _fmt8(pos.entry_price),
            "markPrice": _fmt(mark), "unRealizedProfit": _fmt8(pnl),
            "liquidationPrice": _fmt8(self._liquidation_price(pos)), "leverage": str(leverage),
            "maxNotionalValue": self._max_notional(leverage), "marginType": "isolated" if isolated else "cross",
            "isolatedMargin": _fmt8(pos.margin + pnl) if isolated and pos.amount else "0",
            "isAutoAddMargin": "false", "positionSide": "BOTH", "notional": _fmt8(pos.amount * mark),
            "isolatedWallet": _fmt8(pos.margin) if isolated else "0", "updateTime": pos.update_time,
        }  # fmt: skip

    def _totals(self, acc: Account) -> dict[str, Decimal]:
        pnl = {s: self._unrealized(s, p) for s, p in acc.positions.items()}
        isolated_wallet = sum((p.margin for s, p in acc.positions.items() if self._isolated(acc, s)), ZERO)
        return {
            "wallet": acc.wallet,
            "pnl": sum(pnl.values(), ZERO),
            "cross_pnl": sum((v for s, v in pnl.items() if not self._isolated(acc, s)), ZERO),
            "cross_wallet": acc.wallet - isolated_wallet,
            "position_margin": sum((p.margin for p in acc.positions.values()), ZERO),
            "order_margin": self._order_margin(acc),
            "maint": sum(
                (abs(p.amount) * self.mark_price(s) * self.maintenance_margin_rate for s, p in acc.positions.items()),
                ZERO,
            ),
            "available": self._available(acc),
        }

    def _balance_row(self, acc: Account) -> dict[str, Any]:
        t = self._totals(acc)
        return {
            "accountAlias": "FakeAster", "asset": "USDT", "balance": _fmt8(t["wallet"]),
            "crossWalletBalance": _fmt8(t["cross_wallet"]), "crossUnPnl": _fmt8(t["cross_pnl"]),
            "availableBalance": _fmt8(t["available"]), "maxWithdrawAmount": _fmt8(max(t["available"], ZERO)),
            "marginAvailable": True, "updateTime": self.clock(),
        }  # fmt: skip

    def _account_json(self, acc: Account) -> dict[str, Any]:
        t = self._totals(acc)
        initial = t["position_margin"] + t["order_margin"]
        now = self.clock()
        return {
            "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": now,
            "totalInitialMargin": _fmt8(initial), "totalMaintMargin": _fmt8(t["maint"]),
            "totalWalletBalance": _fmt8(t["wallet"]), "totalUnrealizedProfit": _fmt8(t["pnl"]),
            "totalMarginBalance": _fmt8(t["wallet"] + t["pnl"]),
            "totalPositionInitialMargin": _fmt8(t["position_margin"]),
            "totalOpenOrderInitialMargin": _fmt8(t["order_margin"]),
            "totalCrossWalletBalance": _fmt8(t["cross_wallet"]), "totalCrossUnPnl": _fmt8(t["cross_pnl"]),
            "availableBalance": _fmt8(t["available"]), "maxWithdrawAmount": _fmt8(max(t["available"], ZERO)),
            "assets": [{
                "asset": "USDT", "walletBalance": _fmt8(t["wallet"]), "unrealizedProfit": _fmt8(t["pnl"]),
                "marginBalance": _fmt8(t["wallet"] + t["pnl"]), "maintMargin": _fmt8(t["maint"]),
                "initialMargin": _fmt8(initial), "positionInitialMargin": _fmt8(t["position_margin"]),
                "openOrderInitialMargin": _fmt8(t["order_margin"]), "crossWalletBalance": _fmt8(t["cross_wallet"]),
                "crossUnPnl": _fmt8(t["cross_pnl"]), "availableBalance": _fmt8(t["available"]),
                "maxWithdrawAmount": _fmt8(max(t["available"], ZERO)), "marginAvailable": True, "updateTime": now,
            }],
            "positions": [
                {
                    "symbol": s, "initialMargin": _fmt8(p.margin), "maintMargin":
                    _fmt8(abs(p.amount) * self.mark_price(s) * self.maintenance_margin_rate),
                    "unrealizedProfit": _fmt8(self._unrealized(s, p)), "positionInitialMargin": _fmt8(p.margin),
                    "openOrderInitialMargin": "0", "leverage": str(self._leverage(acc, s)),
                    "isolated": self._isolated(acc, s), "entryPrice": _fmt8(p.entry_price),
                    "maxNotional": self._max_notional(self._leverage(acc, s)), "positionSide": "BOTH",
                    "positionAmt": _fmt(p.amount), "updateTime": p.update_time,
                }
                for s, p in acc.positions.items()
            ],
        }  # fmt: skip

    def _set_leverage(self, acc: Account, p: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(p)
        raw = _required(p, "leverage")
        leverage = int(raw) if raw.isdigit() else 0
        if not 1 <= leverage <= 125:
            raise VenueReject(-4028, f"Leverage {raw} is not valid")
        pos = acc.positions.get(symbol, Position())
        if self._isolated(acc, symbol) and pos.amount and leverage < self._leverage(acc, symbol):
            raise VenueReject(-4161, "Leverage reduction is not supported in Isolated Margin Mode with open positions.")
        acc.leverage[symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": self._max_notional(leverage), "symbol": symbol}

    def _set_margin_type(self, acc: Account, p: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(p)
        wanted = _required(p, "marginType")
        if wanted not in ("ISOLATED", "CROSSED"):
            raise VenueReject(-1130, "Data sent for parameter 'marginType' is not valid.")
        if acc.margin_type.get(symbol, self.default_margin_type) == wanted:
            raise VenueReject(-4046, "No need to change margin type.")
        if acc.positions.get(symbol, Position()).amount:
            raise VenueReject(-4048, "Margin type cannot be changed if there exists position.")
        if any(o.symbol == symbol for o in self.open_orders(acc.name)):
            raise VenueReject(-4047, "Margin type cannot be changed if there exists open orders.")
        acc.margin_type[symbol] = wanted
        return {"code": 200, "msg": "success"}

    def _window(self, p: dict[str, str]) -> tuple[int, int]:
        """startTime..endTime (inclusive) as the venue reads them: one of them alone means 7 days from (or up
        to) it, neither the last 7 days."""
        start = _integer(p, "startTime") if p.get("startTime") else None
        end = _integer(p, "endTime") if p.get("endTime") else None
        if start is None and end is None:
            end = self.clock()
        if start is None:
            assert end is not None
            start = end - 7 * DAY_MS
        if end is None:
            end = start + 7 * DAY_MS
        if start > end:
            raise VenueReject(-1023, "Start time is greater than end time.")
        return start, end

    @staticmethod
    def _limit(p: dict[str, str], default: int) -> int:
        limit = _integer(p, "limit", default)
        if not 1 <= limit <= 1000:
            raise VenueReject(-1130, "Data sent for parameter 'limit' is not valid.")
        return limit

    def _user_trades(self, acc: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(p)
        limit = self._limit(p, 500)
        if p.get("fromId"):
            if p.get("startTime") or p.get("endTime"):
                raise VenueReject(-1128, "Combination of optional parameters invalid.")
            from_id = _integer(p, "fromId")
            trades = [f for f in acc.fills if f.symbol == symbol and f.trade_id >= from_id]
        else:
            start, end = self._window(p)
            if end - start > 7 * DAY_MS:
                raise VenueReject(-1127, "More than 168 hours between startTime and endTime.")
            trades = [f for f in acc.fills if f.symbol == symbol and start <= f.time <= end]
        return [f.to_json() for f in trades[:limit]]

    def _income(self, acc: Account, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(p) if p.get("symbol") else None
        kind = p.get("incomeType") or None
        limit = self._limit(p, 100)
        start, end = self._window(p)
        rows = [
            i for i in sorted(acc.income, key=lambda i: (i.time, i.tran_id))
            if symbol in (None, i.symbol) and kind in (None, i.income_type) and start <= i.time <= end
        ]  # fmt: skip
        return [i.to_json() for i in rows[:limit]]

    # ---- the HTTP exchange ------------------------------------------------------------------
    def _used(self, hits: deque[int], now: int) -> int:
        while hits and hits[0] < now - 60_000:
            hits.popleft()
        return len(hits)

    def respond(
        self, method: str, path: str, query: str, body: str, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """One request end to end: records, faults, authentication, the endpoint. (status, JSON, headers)."""
        params = {**_params(query), **_params(body)}
        route = PRIVATE_ROUTES.get(path)
        is_order = route is not None and route[1] == "order"
        now = self.clock()
        record: SignedRequest | None = None
        with self._lock:
            self.requests.append((method, path, params))
            self._hits.append(now)
            if route is not None:
                record = SignedRequest(method, path, query, body, dict(headers), now)
                self.signed_requests.append(record)
            if is_order and method == "POST":
                self._order_posts.append(dict(params))
                self._order_hits.append(now)
        if self.latency_s:
            time.sleep(self.latency_s)
        fault = self._take_fault(path, method)
        stall = self._take_stall(path, method)
        extra: dict[str, str] = {}
        if fault is not None and not fault.after_apply:
            status, reply, extra = fault.status, fault.body, fault.headers
        elif stall is not None and stall.queued:
            time.sleep(stall.seconds)  # the request waits in the venue's queue, then settles
            status, reply = self._apply(method, path, query, body, headers, params, route)
        elif stall is not None and not stall.after_apply:
            time.sleep(stall.seconds)
            status, reply = 503, {"code": -1007, "msg": UNKNOWN_STATUS_MSG}
        else:
            status, reply = self._apply(method, path, query, body, headers, params, route)
            if fault is not None:
                status, reply, extra = fault.status, fault.body, fault.headers
            if stall is not None:
                time.sleep(stall.seconds)
        with self._lock:
            out = {"X-MBX-USED-WEIGHT-1M": str(self._used(self._hits, now))}
            if is_order:
                out["X-MBX-ORDER-COUNT-1M"] = str(self._used(self._order_hits, now))
            if record is not None:
                record.status, record.reply = status, reply
        return status, reply, {**out, **extra}

    def _apply(
        self,
        method: str,
        path: str,
        query: str,
        body: str,
        headers: dict[str, str],
        params: dict[str, str],
        route: tuple[str, str] | None,
    ) -> tuple[int, Any]:
        if route is None:
            if method != "GET":
                return 405, {"code": -1000, "msg": f"Request method '{method}' not supported"}
            return self.handle(V1_PUBLIC.get(path, path), params)
        scheme, name = route
        if method not in METHODS[name]:
            return 405, {"code": -1000, "msg": f"Request method '{method}' not supported"}
        with self._lock:
            try:
                acc, business = self._authenticate(scheme, query, body, headers)
                self._run_triggers()
                return 200, self._private(method, name, scheme, acc, business)
            except VenueReject as e:
                return e.status, {"code": e.code, "msg": e.msg}

    # ---- server -----------------------------------------------------------------------------
    def start(self) -> FakeAster:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waits for the client's delayed
            # ACK (~40 ms a reply on Linux), a latency no real venue adds.
            disable_nagle_algorithm = True

            def serve(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                # Like the venue, a body is read as params only when it is a form.
                form = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                body = raw if form == "application/x-www-form-urlencoded" else ""
                status, reply, headers = fake.respond(method, url.path, url.query, body, dict(self.headers.items()))
                payload = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a stall longer than its timeout)

            def do_GET(self) -> None:
                self.serve("GET")

            def do_POST(self) -> None:
                self.serve("POST")

            def do_DELETE(self) -> None:
                self.serve("DELETE")

            def do_PUT(self) -> None:
                self.serve("PUT")

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
