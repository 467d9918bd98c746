"""Execution of a plan that opens 5 positions, with 50 ms added to every venue request: at most 8 round trips.

Each of the 5 assets (BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT, XRPUSDT) is an accepted market ``buy`` with a
stop-loss 2% below the mark and a take-profit 4% above it, so its legs are margin type and leverage, the
entry, then the stop-loss and the take-profit. The timed part is ``execution.execute`` on an
``AsterDexExchange`` (V3 signed requests) against the fake venue (tests/fakes/aster.py) sleeping
``LATENCY_S`` before each answer, with the orders recorded in a Store. What a long-running agent already
has is done beforehand and not timed: the clock sync, the exchangeInfo rules and the mark prices.

Assets run concurrently and only the legs of one asset run in order, so the wall time should be a few
round trips (positions and balance, then settings, entry, protective orders), not one per request.
Every run is checked: each asset executed, five long positions open at the venue, each with a stop and a
target open, and each entry's client order id applied exactly once. Each run uses a fresh decision id and
a fresh venue account (the same agent signer, registered for a new user), so no run sees another's state.

As in bench_fetch, the venue runs in a child process: its CPU is not ours, as it would not be with the
real venue. The fake still recovers the signer of every V3 request in pure Python, one request at a time
(its lock and the GIL), which a real venue does not; a second figure, for information only, has the fake
trust the ``signer`` parameter instead, so that it shows what the client side alone costs. The note of the
first figure gives this process's CPU time per V3 signature, which every request pays before it is sent.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from bench import ROOT, Result, perp_dir, result

if str(ROOT) not in sys.path:  # the fakes live in tests/, importable from the project root
    sys.path.insert(0, str(ROOT))

LATENCY_S = 0.05
TARGET_ROUND_TRIPS = 8.0
RUNS = 7
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
ALLOCATION_USD = 500.0
LEVERAGE = 3
BALANCE_USD = 100_000
# The signing reference vector: an agent (signer) key and its address.
SIGNER_KEY = "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"
SIGNER = "0xb67f9a782d3678a0bac50c22eacbb4924fe9d4cf"


def _user(run: int) -> str:
    """A distinct main-wallet address per run: a fresh, empty account at the venue."""
    return "0x" + f"{0xBE7C0000 + run:x}".rjust(40, "0")


class _Venue:
    """The fake venue in a child process, driven over a pipe."""

    def __init__(self, *, verify: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(theirs, str(perp_dir()), LATENCY_S, verify), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the fake venue did not start within 60 s")
        self.base_url = str(self._conn.recv())

    def _ask(self, *command: Any) -> Any:
        self._conn.send(command)
        if not self._conn.poll(30):
            raise RuntimeError(f"the fake venue did not answer {command[0]!r}")
        answer = self._conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def new_account(self, user: str) -> None:
        """Register the agent signer for ``user`` (moving it off the previous one) with ``BALANCE_USD``."""
        self._ask("account", user)

    def requests(self) -> int:
        return int(self._ask("count"))

    def state(self, user: str, entry_ids: list[str]) -> dict[str, Any]:
        return dict(self._ask("state", user, entry_ids))

    def stop(self) -> None:
        try:
            self._conn.send(("stop",))
            self._proc.join(10)
        finally:
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()


def _trust_signer(msg: str, signature: str, chain_id: int = 0) -> str:
    """Stands in for the fake's signature recovery: the ``signer`` the request names."""
    return dict(parse_qsl(msg)).get("signer", "")


def _serve(conn: Any, data_dir: str, latency_s: float, verify: bool) -> None:
    """The child process: serve until told to stop."""
    import tests.fakes.aster
    from tests.fakes.aster import FakeAster

    if not verify:  # this child process only: every other check on the request stays
        tests.fakes.aster.recover_signer = _trust_signer
    fake = FakeAster(Path(data_dir), latency_s=latency_s).start()
    conn.send(fake.base_url)
    try:
        while True:
            try:
                command, *args = conn.recv()
            except EOFError:
                return
            try:
                if command == "account":
                    (user,) = args
                    fake.add_v3_account(user, SIGNER)
                    fake.set_balance(user, BALANCE_USD)
                    conn.send(True)
                elif command == "count":
                    conn.send(len(fake.requests))
                elif command == "state":
                    user, entry_ids = args
                    conn.send(
                        {
                            "positions": {s: str(a) for s, a in fake.positions(user).items()},
                            "open_orders": [
                                (o.symbol, o.orig_type, o.close_position, o.client_order_id)
                                for o in fake.open_orders(user)
                            ],
                            "applied": {cid: fake.applied_orders(cid) for cid in entry_ids},
                        }
                    )
                else:
                    return
            except Exception as exc:  # hand it to the parent rather than hang it
                conn.send(exc)
    finally:
        fake.stop()


def _validations(marks: dict[str, Decimal]) -> list[Any]:
    from llmtrader.core.decision import Action, AssetDecision, RiskLevel
    from llmtrader.core.risk import AssetValidation, Status

    out = []
    for symbol in SYMBOLS:
        mark = float(marks[symbol])
        decision = AssetDecision(
            symbol=symbol,
            action=Action.BUY,
            rationale="benchmark",
            allocation_usd=ALLOCATION_USD,
            leverage=LEVERAGE,
            sl_price=mark * 0.98,
            tp_price=mark * 1.04,
            confidence=0.6,
            risk_level=RiskLevel.MEDIUM,
        )
        out.append(AssetValidation(symbol, "buy", Status.ACCEPTED, [], decision.model_dump(), decision))
    return out


def _check(report: Any, state: dict[str, Any], entry_ids: list[str]) -> None:
    """A fast wrong answer must not pass: every asset opened and protected, every entry applied once."""
    outcomes = {a.symbol: a.outcome for a in report.assets}
    if outcomes != dict.fromkeys(SYMBOLS, "executed"):
        details = {a.symbol: [f"{leg.name}:{leg.status} {leg.message or ''}" for leg in a.legs] for a in report.assets}
        raise AssertionError(f"outcomes {outcomes}; legs {details}")
    positions = state["positions"]
    if sorted(positions) != sorted(SYMBOLS) or any(Decimal(a) <= 0 for a in positions.values()):
        raise AssertionError(f"positions at the venue: {positions}, expected a long on each of {SYMBOLS}")
    for symbol in SYMBOLS:
        kinds = sorted(t for s, t, close, _ in state["open_orders"] if s == symbol and close)
        if kinds != ["STOP_MARKET", "TAKE_PROFIT_MARKET"]:
            raise AssertionError(f"{symbol}: open closePosition orders {kinds}, expected one stop and one target")
    for cid in entry_ids:
        if state["applied"][cid] != 1:
            raise AssertionError(f"entry {cid} applied {state['applied'][cid]} times, expected exactly once")


async def _measure(venue: _Venue, store: Any) -> tuple[list[float], list[int]]:
    """Round trips and request counts of each recorded run (the first run is a warm-up)."""
    from llmtrader.core.records import new_decision_id
    from llmtrader.cycle.execution import client_order_id, execute
    from llmtrader.exchange.asterdex import AsterDexExchange
    from llmtrader.exchange.asterdex_market import AsterMarketData
    from llmtrader.exchange.credentials import V3Credentials

    market = AsterMarketData(venue.base_url, timeout_s=10.0)
    rules = await market.exchange_info()  # once, not timed: a running agent has it cached

    async def cached_rules() -> dict[str, Any]:
        return rules

    samples: list[float] = []
    counts: list[int] = []
    exchange: AsterDexExchange | None = None
    try:
        for run in range(RUNS + 1):
            user = _user(run)
            venue.new_account(user)
            if exchange is not None:
                await exchange.aclose()
            # Not timed: the clock sync and the marks, which a running agent has already. A new exchange per
            # run opens new connections, as after a decision interval longer than the keep-alive expiry.
            exchange = AsterDexExchange(market, V3Credentials(user, SIGNER, SIGNER_KEY), rules=cached_rules)
            await exchange.sync_time()
            marks = await market.mark_prices(list(SYMBOLS))
            validations = _validations(marks)
            decision_id = new_decision_id()
            recorder = store.execution_log(user, "live", lambda: int(time.time() * 1000))
            before = venue.requests()
            start = time.perf_counter()
            report = await execute(
                exchange, validations, decision_id=decision_id, recorder=recorder, rules=rules, marks=marks
            )
            elapsed = time.perf_counter() - start
            made = venue.requests() - before
            entry_ids = [client_order_id(decision_id, s, "en") for s in SYMBOLS]
            _check(report, venue.state(user, entry_ids), entry_ids)
            if run > 0:  # the first run is the warm-up: imports, parsed CSV files, the signing library
                samples.append(elapsed / LATENCY_S)
                counts.append(made)
    finally:
        if exchange is not None:
            await exchange.aclose()
        await market.aclose()
    return samples, counts


def _signing_ms() -> float:
    """This process's CPU time for one V3 request signature (what every signed request pays), in ms."""
    from llmtrader.exchange.signing import NonceSource, v3_signed_body

    nonces = NonceSource()
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.016")]
    samples = []
    for _ in range(20):
        start = time.process_time()
        v3_signed_body(params, user=_user(0), signer=SIGNER, private_key=SIGNER_KEY, nonce=nonces.next(), chain_id=1666)
        samples.append(time.process_time() - start)
    return statistics.median(samples) * 1000


def _venue_runs(verify: bool, db: Path) -> tuple[list[float], list[int]]:
    from llmtrader.storage.store import Store

    venue = _Venue(verify=verify)
    try:
        store = Store(db)
        try:
            return asyncio.run(_measure(venue, store))
        finally:
            store.close()
    finally:
        venue.stop()


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="llmtrader-bench-") as tmp:
        samples, counts = _venue_runs(True, Path(tmp) / "execute.db")
        trusted, _ = _venue_runs(False, Path(tmp) / "execute-trusted.db")
    rtt = f"1 RTT = {LATENCY_S * 1000:.0f} ms"
    note = (
        f"{statistics.median(samples) * LATENCY_S * 1000:.0f} ms wall; 5 assets x (margin, leverage, entry, sl, tp); "
        f"{rtt}; V3 signing {_signing_ms():.1f} ms CPU per request; venue in a child process"
    )
    trusted_note = (
        f"{statistics.median(trusted) * LATENCY_S * 1000:.0f} ms wall; {rtt}; the fake trusts the signer parameter "
        "instead of recovering it from the signature"
    )
    return [
        result("execute.open_5_positions", samples, "RTT", TARGET_ROUND_TRIPS, note),
        result("execute.requests", [float(c) for c in counts], "req", None, "venue requests per execution"),
        result("execute.no_venue_sig_check", trusted, "RTT", None, trusted_note),
    ]
