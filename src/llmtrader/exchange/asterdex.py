"""The live AsterDEX futures venue over httpx: signed requests, rate limits, and orders never re-sent blindly.

Which signing scheme is used follows from the credentials: V3 agent-wallet EIP-712 signatures (the
current scheme) or V1 HMAC for existing legacy keys. What is signed is exactly what is sent.

Every reply body is checked for an error ``code``, even with HTTP 200. Reads are retried with bounded
backoff. An order request is different: when its outcome is unknown (timeout, 5xx, 503, -1006,
-1007, 429) the order is looked up by its client order id, and only a confirmed absence allows another
attempt. 418 (an IP ban) stops every further request on this account.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol

import httpx

from llmtrader.core.filters import SymbolRules
from llmtrader.core.redact import MIN_SECRET_LENGTH, redact
from llmtrader.core.trades import AccountHistory
from llmtrader.errors import (
    OrderOutcomeUnknown,
    VenueBanned,
    VenueError,
    VenueRejected,
    VenueUnavailable,
)
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.exchange.base import (
    Balance,
    HistoryRead,
    HistoryStore,
    HistoryVersion,
    MarginType,
    OrderRequest,
    OrderState,
    VenuePosition,
)
from llmtrader.exchange.credentials import Credentials, V1Credentials, V3Credentials
from llmtrader.exchange.http import (
    Answer,
    Judged,
    RateLimited,
    Resend,
    Sleep,
    Temporary,
    read_with_retries,
    retry_after_s,
)
from llmtrader.exchange.signing import NonceSource, v1_signed_body, v3_signed_body


class BanStore(Protocol):
    """Where an IP ban (HTTP 418) is kept across processes, so the next run does not walk into it."""

    def get_ban(self) -> tuple[int, str] | None:
        """(banned until, epoch ms; the message), or None."""
        ...

    def put_ban(self, until_ms: int, message: str) -> None: ...


# Venue codes that mean "the request may or may not have been executed".
UNKNOWN_OUTCOME_CODES = frozenset({-1006, -1007})
NONCE_REJECTED = -4225
TIMESTAMP_REJECTED = -1021
ORDER_DOES_NOT_EXIST = -2013
UNKNOWN_ORDER = -2011
MARGIN_TYPE_ALREADY_SET = -4046
HISTORY_LIMIT = 1000  # the most rows userTrades and income return per request
HISTORY_WINDOW_MS = 7 * 86_400_000  # the longest startTime..endTime window userTrades accepts
# Fields a history row must carry (section 5); a row without one proves nothing about the account.
USER_TRADE_FIELDS = ("id", "orderId", "symbol", "side", "price", "qty", "commission", "time")
INCOME_FIELDS = ("incomeType", "income", "time", "tranId")

# V1 (legacy HMAC keys) serves the same operations under older paths.
V1_PATHS = {
    "/fapi/v3/order": "/fapi/v1/order",
    "/fapi/v3/openOrders": "/fapi/v1/openOrders",
    "/fapi/v3/allOpenOrders": "/fapi/v1/allOpenOrders",
    "/fapi/v3/leverage": "/fapi/v1/leverage",
    "/fapi/v3/marginType": "/fapi/v1/marginType",
    "/fapi/v3/balance": "/fapi/v2/balance",
    "/fapi/v3/positionRisk": "/fapi/v2/positionRisk",
    "/fapi/v3/userTrades": "/fapi/v1/userTrades",
    "/fapi/v3/income": "/fapi/v1/income",
    "/fapi/v3/positionSide/dual": "/fapi/v1/positionSide/dual",
    "/fapi/v3/accountWithJoinMargin": "/fapi/v4/account",
}


class _Unknown(Exception):
    """Internal: the outcome of a state-changing request is unknown."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class AsterDexExchange:
    """The ``Exchange`` port on the live venue."""

    mode: Literal["paper", "live"] = "live"
    READ_ATTEMPTS = 3
    ORDER_SENDS = 3
    BACKOFF_S = 0.25
    MAX_RETRY_AFTER_S = 30.0
    LOOKUPS = 3  # lookups of an order whose outcome is unknown, waits doubling from lookup_grace_s
    DEFAULT_BAN_S = 300  # when a 418 names no Retry-After: bans escalate from 2 minutes
    WEIGHT_LIMIT_1M = 2400
    WEIGHT_HEADROOM = 0.9

    def __init__(
        self,
        market: AsterMarketData,
        credentials: Credentials,
        *,
        rules: Callable[[], Awaitable[dict[str, SymbolRules]]],
        timeout_s: float = 10.0,
        chain_id: int = 1666,
        recv_window_ms: int = 5000,
        lookup_grace_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        now_ms: Callable[[], int] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        bans: BanStore | None = None,
        history: HistoryStore | None = None,
        account: str = "default",
        symbols: Sequence[str] = (),
        history_timeout_s: float = 20.0,
        history_requests: int = 20,
    ) -> None:
        self.market = market
        self.base_url = market.base_url
        self.credentials = credentials
        self.scheme = "v3" if isinstance(credentials, V3Credentials) else "v1"
        self._rules = rules
        self.chain_id = chain_id
        self.recv_window_ms = recv_window_ms
        self.lookup_grace_s = lookup_grace_s
        self._sleep = sleep
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.nonces = NonceSource()
        self.clock_offset_ms = 0
        self._time_synced = False
        self.used_weight_1m: int | None = None
        self._weight_minute: int | None = None
        self.banned: str | None = None
        self._bans = bans
        # The account's trade history (trade_history): where it is kept, whose, which symbols at least, and the
        # bounds of one sync (its time and its venue requests).
        self._history = history
        self._account = account
        self._symbols = tuple(symbols)
        self._history_timeout_s = history_timeout_s
        self._history_requests = history_requests
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": "llmtrader"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- signing and transport ---------------------------------------------------------------
    async def sync_time(self) -> int:
        """Measure the offset of the venue's clock to ours (ms); nonces and timestamps follow it."""
        before = self._now_ms()
        server = await self.market.server_time_ms()
        after = self._now_ms()
        local = (before + after) // 2
        self.clock_offset_ms = server - local
        self.nonces.set_offset_ms(server, local)
        self._time_synced = True
        return self.clock_offset_ms

    def _path(self, path: str) -> str:
        return V1_PATHS.get(path, path) if self.scheme == "v1" else path

    def _sign(self, params: Sequence[tuple[str, str]]) -> str:
        creds = self.credentials
        if isinstance(creds, V3Credentials):
            return v3_signed_body(
                params,
                user=creds.user,
                signer=creds.signer,
                private_key=creds.private_key,
                nonce=self.nonces.next(),
                chain_id=self.chain_id,
            )
        return v1_signed_body(
            params,
            secret=creds.secret,
            timestamp_ms=self._now_ms() + self.clock_offset_ms,
            recv_window_ms=self.recv_window_ms,
        )

    async def _respect_weight(self) -> None:
        """Wait for the next minute when the used weight is near the venue's per-minute limit."""
        if self.used_weight_1m is None or self._weight_minute is None:
            return
        now = self._now_ms()
        if now // 60_000 != self._weight_minute:
            self.used_weight_1m = 0
            return
        if self.used_weight_1m >= self.WEIGHT_LIMIT_1M * self.WEIGHT_HEADROOM:
            await self._sleep((60_000 - now % 60_000) / 1000 + 0.1)
            self.used_weight_1m = 0

    def _check_ban(self) -> None:
        if self.banned is not None:
            raise VenueBanned(self.banned, code=418)
        stored = self._bans.get_ban() if self._bans is not None else None
        if stored is not None and stored[0] > self._now_ms():
            until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stored[0] / 1000))
            raise VenueBanned(f"{stored[1]} (until about {until}); nothing is sent meanwhile", code=418)

    async def _send(
        self, method: str, path: str, params: Sequence[tuple[str, str]], *, urgent: bool = False
    ) -> httpx.Response:
        """Sign and send one request. ``urgent`` requests (protective and reduce-only orders, and their
        lookups) never wait for the weight budget: the headroom below the limit is kept for them."""
        self._check_ban()
        if not urgent:
            await self._respect_weight()
        body = self._sign(params)
        headers = {}
        if isinstance(self.credentials, V1Credentials):
            headers["X-MBX-APIKEY"] = self.credentials.api_key
        url = self._path(path)
        if method == "GET" or method == "DELETE":
            resp = await self._client.request(method, f"{url}?{body}", headers=headers)
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            resp = await self._client.request(method, url, content=body.encode(), headers=headers)
        weight = resp.headers.get("X-MBX-USED-WEIGHT-1M")
        if weight and weight.isdigit():
            self.used_weight_1m = int(weight)
            self._weight_minute = self._now_ms() // 60_000
        if resp.status_code == 418:
            self.banned = (
                f"{path}: the venue has banned this IP (HTTP 418) after too many requests; "
                "trading on this account has stopped"
            )
            if self._bans is not None:
                retry_after = retry_after_s(resp)
                seconds = retry_after if retry_after is not None and retry_after > 0 else self.DEFAULT_BAN_S
                self._bans.put_ban(self._now_ms() + int(seconds * 1000), self.banned)
            raise VenueBanned(self.banned, code=418)
        return resp

    def _error(self, path: str, resp: httpx.Response) -> tuple[int | None, str] | None:
        """The venue's (code, message) when the reply is an error, else None; the message with our
        credentials masked, as it goes on to errors, the store and the screen."""
        found = self._raw_error(resp)
        if found is None:
            return None
        creds = self.credentials
        secrets = [creds.private_key] if isinstance(creds, V3Credentials) else [creds.api_key, creds.secret]
        secrets += [s.removeprefix("0x") for s in secrets]
        return found[0], redact(found[1], [s for s in secrets if len(s) >= MIN_SECRET_LENGTH])

    @staticmethod
    def _raw_error(resp: httpx.Response) -> tuple[int | None, str] | None:
        try:
            body = resp.json()
        except ValueError:
            if resp.status_code >= 400:
                return resp.status_code, f"HTTP {resp.status_code} with a body that is not JSON"
            return None
        if isinstance(body, dict) and "code" in body and str(body["code"]) not in ("200", "0"):
            try:
                return int(body["code"]), str(body.get("msg", ""))
            except (TypeError, ValueError):
                return None, str(body.get("msg", ""))
        if resp.status_code >= 400:
            return resp.status_code, f"HTTP {resp.status_code}"
        return None

    async def _fix_auth(self, code: int | None, fixed: set[int]) -> bool:
        """A rejected nonce (V3) or timestamp (V1) gets a clock resync and one fresh attempt."""
        if code in (NONCE_REJECTED, TIMESTAMP_REJECTED) and code not in fixed:
            fixed.add(code)
            await self.sync_time()
            return True
        return False

    async def _read(
        self, method: str, path: str, params: Sequence[tuple[str, str]] = (), *, urgent: bool = False
    ) -> Any:
        """A signed request that is safe to repeat (reads, cancels, settings), with bounded retries."""
        if not self._time_synced:
            await self.sync_time()
        fixed: set[int] = set()

        async def send() -> httpx.Response:
            return await self._send(method, path, params, urgent=urgent)

        async def judge(resp: httpx.Response) -> Judged:
            error = self._error(path, resp)
            if error is None:
                try:
                    return Answer(resp.json())
                except ValueError:
                    raise VenueError(
                        f"{path}: the venue answered HTTP {resp.status_code} with a body that is not JSON"
                    ) from None
            code, msg = error
            if await self._fix_auth(code, fixed):
                return Resend()
            if resp.status_code == 429:
                return RateLimited(retry_after_s(resp))
            if resp.status_code >= 500 or code in UNKNOWN_OUTCOME_CODES:
                return Temporary(VenueUnavailable(f"{path}: the venue answered HTTP {resp.status_code}: {msg}"))
            raise VenueRejected(f"{path}: venue error {code}: {msg}", code=code, venue_message=msg)

        return await read_with_retries(
            path, send, judge, base_url=self.base_url, attempts=self.READ_ATTEMPTS, backoff_s=self.BACKOFF_S,
            max_retry_after_s=self.MAX_RETRY_AFTER_S, over_cap="raise", sleep=self._sleep,
        )  # fmt: skip

    async def _write_once(self, path: str, params: Sequence[tuple[str, str]], *, urgent: bool = False) -> Any:
        """Send a state-changing request once. Raises _Unknown when its outcome cannot be known."""
        fixed: set[int] = set()
        while True:
            try:
                resp = await self._send("POST", path, params, urgent=urgent)
            except httpx.ConnectError as exc:  # nothing reached the venue
                raise VenueUnavailable(f"{path}: cannot reach {self.base_url} ({type(exc).__name__})") from exc
            except httpx.TimeoutException:
                raise _Unknown("the venue did not answer within the timeout") from None
            except httpx.HTTPError as exc:
                raise _Unknown(f"the connection failed mid-request ({type(exc).__name__})") from None
            error = self._error(path, resp)
            if error is None:
                try:
                    return resp.json()
                except ValueError:
                    raise _Unknown(f"HTTP {resp.status_code} with a body that is not JSON") from None
            code, msg = error
            if await self._fix_auth(code, fixed):
                continue  # the request was not accepted: a fresh nonce or timestamp, one new attempt
            if resp.status_code == 429:
                retry_after = retry_after_s(resp)
                raise _Unknown("rate limited (HTTP 429)", retry_after)
            if resp.status_code >= 500 or code in UNKNOWN_OUTCOME_CODES:
                raise _Unknown(f"HTTP {resp.status_code}, venue code {code}: {msg}")
            raise VenueRejected(f"{path}: venue error {code}: {msg}", code=code, venue_message=msg)

    # ---- the Exchange port ------------------------------------------------------------------
    async def rules(self) -> dict[str, SymbolRules]:
        return await self._rules()

    async def mark_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        found = await self.market.premium_indexes(list(symbols))
        return {s: Decimal(str(found[s]["markPrice"])) for s in symbols}

    async def balance(self) -> Balance:
        body = await self._read("GET", "/fapi/v3/balance")
        items = body if isinstance(body, list) else []
        usdt = next((i for i in items if isinstance(i, dict) and i.get("asset") == "USDT"), None)
        if usdt is None:
            raise VenueError("balance: the reply has no USDT balance")
        try:
            return Balance(
                wallet=Decimal(str(usdt.get("balance", usdt.get("crossWalletBalance")))),
                available=Decimal(str(usdt.get("availableBalance"))),
                unrealized_pnl=Decimal(str(usdt.get("crossUnPnl", "0"))),
            )
        except ArithmeticError:
            raise VenueError(f"balance: a USDT figure is not a number: {usdt!r}") from None

    async def positions(self) -> list[VenuePosition]:
        body = await self._read("GET", "/fapi/v3/positionRisk")
        if not isinstance(body, list):
            raise VenueError("positionRisk: the reply is not a list")
        try:
            rows = [VenuePosition.from_venue(r) for r in body if isinstance(r, dict)]
        except ArithmeticError:
            raise VenueError("positionRisk: a row holds a figure that is not a number") from None
        return [p for p in rows if p.amount != 0]

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        params = [("symbol", symbol)] if symbol else []
        body = await self._read("GET", "/fapi/v3/openOrders", params)
        if not isinstance(body, list):
            raise VenueError("openOrders: the reply is not a list")
        return [OrderState.from_venue(o) for o in body if isinstance(o, dict)]

    async def query_order(self, symbol: str, client_order_id: str, *, urgent: bool = False) -> OrderState | None:
        try:
            body = await self._read(
                "GET", "/fapi/v3/order", [("symbol", symbol), ("origClientOrderId", client_order_id)], urgent=urgent
            )
        except VenueRejected as exc:
            if exc.code == ORDER_DOES_NOT_EXIST:
                return None
            raise
        if not isinstance(body, dict):
            raise VenueError(f"order {client_order_id}: the reply is not an object")
        return OrderState.from_venue(body)

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Send an order; on an unknown outcome look it up, and re-send only after a confirmed absence.

        A V3 request can sit in the venue's queue before it settles, so one lookup that finds nothing
        proves little: the order is looked up ``LOOKUPS`` times with doubling waits, and only when every
        lookup says it does not exist is a new attempt made (with the same client order id).
        Protective and reduce-only orders never wait for the weight budget.
        """
        if not self._time_synced:
            await self.sync_time()
        urgent = request.close_position or request.reduce_only
        reason = ""
        for _ in range(self.ORDER_SENDS):
            try:
                body = await self._write_once("/fapi/v3/order", request.params(), urgent=urgent)
                if not isinstance(body, dict):
                    raise _Unknown("the reply is not an order object")
                try:
                    return OrderState.from_venue(body)
                except VenueError as exc:
                    raise _Unknown(f"the reply is malformed ({exc})") from None
            except _Unknown as unknown:
                reason = unknown.reason
                found = await self._look_up(request, unknown)
                if found is not None:
                    return found
                # confirmed absent after every lookup: a new attempt is safe
        raise VenueUnavailable(
            f"order {request.client_order_id} ({request.describe()}) was not accepted after "
            f"{self.ORDER_SENDS} attempts, each confirmed absent: {reason}"
        )

    async def _look_up(self, request: OrderRequest, unknown: _Unknown) -> OrderState | None:
        """The order after an unknown outcome, or None when the venue confirms, again and again, that it
        has no such order. Raises OrderOutcomeUnknown when the venue cannot say."""
        urgent = request.close_position or request.reduce_only
        wait = self.lookup_grace_s
        if unknown.retry_after_s is not None:
            wait = max(wait, min(unknown.retry_after_s, self.MAX_RETRY_AFTER_S))
        for _ in range(self.LOOKUPS):
            await self._sleep(wait)  # let a request still in flight land before looking for it
            try:
                found = await self.query_order(request.symbol, request.client_order_id, urgent=urgent)
            except VenueError as exc:
                raise OrderOutcomeUnknown(
                    f"order {request.client_order_id} ({request.describe()}): {unknown.reason}, and the lookup "
                    f"failed too ({exc}); it may exist on the venue",
                    client_order_id=request.client_order_id,
                ) from exc
            if found is not None:
                return found
            wait *= 2
        return None

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        try:
            body = await self._read(
                "DELETE", "/fapi/v3/order", [("symbol", symbol), ("origClientOrderId", client_order_id)]
            )
        except VenueRejected as exc:
            if exc.code in (ORDER_DOES_NOT_EXIST, UNKNOWN_ORDER):
                return None
            raise
        return OrderState.from_venue(body) if isinstance(body, dict) else None

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        await self._read("POST", "/fapi/v3/leverage", [("symbol", symbol), ("leverage", str(leverage))])

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        try:
            await self._read("POST", "/fapi/v3/marginType", [("symbol", symbol), ("marginType", margin_type)])
        except VenueRejected as exc:
            if exc.code != MARGIN_TYPE_ALREADY_SET:
                raise

    async def hedge_mode(self) -> bool:
        """True when the account is in hedge (dual-side) position mode, where every order must name
        positionSide LONG or SHORT; llmtrader sends one-way orders only (positionSide BOTH)."""
        body = await self._read("GET", "/fapi/v3/positionSide/dual", [])
        value = body.get("dualSidePosition") if isinstance(body, dict) else None
        if str(value).lower() not in ("true", "false"):
            raise VenueError("positionSide/dual: the reply has no dualSidePosition true or false")
        return str(value).lower() == "true"

    # ---- account history (trades and income) ---------------------------------------------------
    async def trade_history(self, *, refresh: bool, now_ms: int) -> HistoryRead:
        """The venue's fills and funding as stored; with ``refresh``, synced first (the fills, funding and
        transfers since the last sync: :class:`HistoryStore`), within a request budget and a timeout. When the
        sync fails or stops short, the read says why (``problem``) and what is stored is read all the same;
        what was not synced follows at the next refresh."""
        store = self._history
        if store is None:
            if not refresh:
                return HistoryRead()
            return HistoryRead(
                "this exchange cannot read the venue's trade history",
                ("the venue's trade history cannot be read from this exchange; using what is stored",),
            )
        account = self._account

        def read() -> AccountHistory:
            return store.venue_history(account)

        def changes(since: HistoryVersion | None) -> tuple[HistoryVersion, AccountHistory | None]:
            return store.venue_history_changes(account, since)

        if not refresh:
            return HistoryRead(read=read, changes=changes)
        try:
            sync = await asyncio.wait_for(
                store.sync_venue(self, account, self._symbols, now_ms, max_requests=self._history_requests),
                timeout=self._history_timeout_s,
            )
        except (VenueError, TimeoutError) as exc:
            reason = str(exc) or "it took too long"
            return HistoryRead(
                f"the venue's trade history could not be read ({reason})",
                (f"venue history not synced ({reason}); recent trades use what is stored",),
                read,
                changes,
            )
        notes = tuple(f"venue history sync: {n}" for n in sync.notes)
        if sync.budget_spent:
            return HistoryRead(
                "the venue's trade history is not synced up to now yet (the next cycles go on)", notes, read, changes
            )
        return HistoryRead(None, notes, read, changes)

    async def user_trades(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[dict[str, Any]]:
        """The account's trades on ``symbol`` (userTrades rows, oldest first), each row's fields checked.

        Either ``from_id`` (trades with id >= it) or a time window of at most 7 days, never both: the venue
        refuses the combination. Without either the venue answers the last 7 days.
        """
        if from_id is not None and (start_ms is not None or end_ms is not None):
            raise ValueError("userTrades: fromId cannot be combined with startTime or endTime")
        if start_ms is not None and end_ms is not None and end_ms - start_ms > HISTORY_WINDOW_MS:
            raise ValueError(f"userTrades: the window {start_ms}..{end_ms} is longer than 7 days")
        params = [("symbol", symbol), *_history_params(start_ms, end_ms, limit)]
        if from_id is not None:
            params.append(("fromId", str(from_id)))
        body = await self._read("GET", "/fapi/v3/userTrades", params)
        return _history_rows(
            "userTrades", body, USER_TRADE_FIELDS, numbers=("price", "qty", "commission", "realizedPnl"),
            integers=("id", "orderId", "time"),
        )  # fmt: skip

    async def income(
        self,
        income_type: str,
        *,
        start_ms: int,
        end_ms: int,
        limit: int = HISTORY_LIMIT,
        symbol: str | None = None,
    ) -> list[dict[str, Any]]:
        """The account's income rows of one type (FUNDING_FEE, COMMISSION, REALIZED_PNL…) in [start, end].

        The venue lists them oldest first from ``start_ms``, at most ``limit`` (≤ 1000); the caller pages.
        """
        params = [("incomeType", income_type), *_history_params(start_ms, end_ms, limit)]
        if symbol is not None:
            params.insert(0, ("symbol", symbol))
        body = await self._read("GET", "/fapi/v3/income", params)
        return _history_rows("income", body, INCOME_FIELDS, numbers=("income",), integers=("time",))

    async def order_by_id(self, symbol: str, order_id: str) -> OrderState | None:
        """An order looked up by the venue's order id (one llmtrader did not send, such as a liquidation's);
        None when the venue has no such order."""
        try:
            body = await self._read("GET", "/fapi/v3/order", [("symbol", symbol), ("orderId", order_id)])
        except VenueRejected as exc:
            if exc.code == ORDER_DOES_NOT_EXIST:
                return None
            raise
        if not isinstance(body, dict):
            raise VenueError(f"order {order_id}: the reply is not an object")
        return OrderState.from_venue(body)


def _history_params(start_ms: int | None, end_ms: int | None, limit: int) -> list[tuple[str, str]]:
    if not 1 <= limit <= HISTORY_LIMIT:
        raise ValueError(f"limit {limit} is outside 1..{HISTORY_LIMIT}")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise ValueError(f"the window starts ({start_ms}) after it ends ({end_ms})")
    params = []
    if start_ms is not None:
        params.append(("startTime", str(start_ms)))
    if end_ms is not None:
        params.append(("endTime", str(end_ms)))
    params.append(("limit", str(limit)))
    return params


def _history_rows(
    endpoint: str, body: Any, required: Sequence[str], *, numbers: Sequence[str], integers: Sequence[str]
) -> list[dict[str, Any]]:
    """A history reply as a list of rows, each with the ``required`` fields, its numbers finite and its ids and
    times whole numbers (strings or not). VenueError names the endpoint, the row and the field otherwise."""
    if not isinstance(body, list):
        raise VenueError(f"{endpoint}: the reply is not a list")
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(body):
        if not isinstance(row, dict):
            raise VenueError(f"{endpoint}: row {i} is not an object")
        for key in required:
            if row.get(key) is None or row.get(key) == "":
                raise VenueError(f"{endpoint}: row {i} has no {key!r}")
        for key in numbers:
            if key in row:
                try:
                    ok = Decimal(str(row[key])).is_finite()
                except ArithmeticError:
                    ok = False
                if not ok:
                    raise VenueError(f"{endpoint}: row {i} has {row[key]!r} for {key!r}, which is not a number")
        for key in integers:
            if key in row and not (isinstance(row[key], int) or str(row[key]).lstrip("-").isdigit()):
                raise VenueError(f"{endpoint}: row {i} has {row[key]!r} for {key!r}, which is not a whole number")
        rows.append(row)
    return rows
