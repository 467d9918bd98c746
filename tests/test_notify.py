"""Notifications (llmtrader.notify): the outbox filled by the store's triggers, delivered by Apprise to a
loopback JSON webhook receiver (``json://127.0.0.1:PORT/hook``), never in a cycle's way, and at least once
without duplicates across a restart; ``notify test`` and doctor's URL check."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.core.guards import GuardEvent, GuardState
from llmtrader.core.times import MINUTE_MS
from llmtrader.notify.delivery import Notifier
from llmtrader.storage.store import Store
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import FakeClock as Clock
from tests.helpers import cycle, long_btc


class Receiver:
    """A loopback JSON webhook: records each POST body; ``block`` holds requests until ``release``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.arrived.set()
                owner.gate.wait(30)
                owner.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    @property
    def titles(self) -> list[str]:
        return [str(b.get("title")) for b in self.bodies]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def free_port() -> int:
    """A loopback port nothing listens on (a receiver that is down: connections are refused)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return port


def deliver(db: Path, clock: Clock, passes: int = 1) -> int:
    """Run ``passes`` delivery passes of a fresh notifier (as a fresh agent process would)."""

    async def go() -> int:
        settings = load_settings()
        notifier = Notifier(Store(db), {settings.account: settings}, now_ms=clock.now_ms)
        try:
            return sum([await notifier.process_once() for _ in range(passes)])
        finally:
            await notifier.close()

    return asyncio.run(go())


def emergency(db: Path, message: str) -> None:
    store = Store(db)
    try:
        store.execution_log("default", "paper", lambda: 1).event(
            decision_id=None, symbol="BTCUSDT", kind="emergency", message=message
        )
    finally:
        store.close()


def outbox(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM notify_outbox ORDER BY id")]
    finally:
        conn.close()


def test_a_trade_stopped_out_gives_one_opened_and_one_closed_message_with_its_pnl(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("NOTIFY_URLS", receiver.url)
    buy = long_btc(fake_aster)
    fake_llm.push(answer(decision(buy, asset("ETHUSDT"))))
    assert cycle(clock).outcome == "traded"
    fake_aster.set_mark("BTCUSDT", Decimal(str(buy["sl_price"])) - 50)  # through the stop: the venue fills it
    assert fake_aster.positions(USER) == {}
    clock.advance(MINUTE_MS)
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    cycle(clock)  # reconcile syncs the venue's fills: the stop's fill closes the trade
    deliver(live, clock)
    deliver(live, clock)  # a second agent start sends nothing again
    opened = [b for b in receiver.bodies if str(b["title"]).startswith("OPENED")]
    closed = [b for b in receiver.bodies if str(b["title"]).startswith("CLOSED")]
    assert len(opened) == 1 and len(closed) == 1, receiver.titles
    assert "long BTCUSDT" in opened[0]["message"] and "leverage 2x" in opened[0]["message"]
    fills = fake_aster.fills(USER)
    net = sum((f.realized_pnl - f.commission for f in fills), Decimal(0))
    assert f"net PnL {float(net):+,.2f} USD" in closed[0]["message"]
    assert "closed by stop" in closed[0]["message"]


def test_a_dead_receiver_delays_nothing_and_gets_the_message_once_after_a_restart(
    paper: Path, clock: Clock, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("NOTIFY_URLS", f"json://127.0.0.1:{port}/hook")
    emergency(paper, "stop not acknowledged: position closed")
    assert deliver(paper, clock) == 1  # refused: recorded for a retry
    (row,) = outbox(paper)
    assert row["kind"] == "emergency" and row["status"] == "pending"
    assert cycle(clock).outcome == "held"  # the agent goes on trading meanwhile

    # The receiver comes back on the same port; the agent restarts after the backoff.
    bodies: list[dict[str, Any]] = []
    server = _receiver_on(port, bodies)
    try:
        clock.advance(MINUTE_MS)
        deliver(paper, clock, passes=2)
        deliver(paper, clock)
        assert [b["title"] for b in bodies] == ["EMERGENCY default BTCUSDT"]
        assert outbox(paper)[0]["status"] == "done"
    finally:
        server.shutdown()
        server.server_close()


def _receiver_on(port: int, bodies: list[dict[str, Any]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_blocked_receiver_does_not_hold_up_a_cycle(
    paper: Path, clock: Clock, fake_llm: FakeLLM, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtrader.cycle.compose import build_services, close_services
    from llmtrader.cycle.run import run_cycle

    monkeypatch.setenv("NOTIFY_URLS", receiver.url)
    receiver.gate.clear()  # the receiver takes requests and does not answer
    emergency(paper, "stop rejected")

    async def go() -> tuple[str, bool, int]:
        settings = load_settings()
        notifier = Notifier(Store(paper), {settings.account: settings}, now_ms=clock.now_ms, poll_s=0.05)
        notifier.start()
        try:
            await asyncio.to_thread(receiver.arrived.wait, 30)  # the send is in progress, and hangs
            services = build_services(settings, clock=clock)
            try:
                result = await run_cycle(services)
            finally:
                await close_services(services)
            still_blocked = not receiver.gate.is_set() and receiver.bodies == []
            receiver.gate.set()
            for _ in range(200):
                if outbox(paper)[0]["status"] == "done":
                    break
                await asyncio.sleep(0.05)
            return result.outcome, still_blocked, len(receiver.bodies)
        finally:
            await notifier.close()

    outcome, still_blocked, received = asyncio.run(go())
    assert outcome == "held" and still_blocked  # the cycle finished while the send hung
    assert received == 1 and outbox(paper)[0]["status"] == "done"


def test_kill_switch_and_secrets_never_reach_a_message(
    paper: Path, clock: Clock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-or-v1-" + "a1b2c3d4" * 6
    monkeypatch.setenv("OPENROUTER_API_KEY", key)
    monkeypatch.setenv("NOTIFY_URLS", receiver.url)
    store = Store(paper)
    try:
        trip = GuardEvent("drawdown_stop", f"maximum drawdown reached <b>{key}</b>\x1b[2J")
        store.save_guard_state("default", GuardState(), [trip], now_ms=clock.now)
    finally:
        store.close()
    deliver(paper, clock)
    (body,) = receiver.bodies
    assert body["title"] == "Kill switch: drawdown (default)"
    assert key not in json.dumps(body) and "\x1b" not in body["message"]
    assert "maximum drawdown reached <b>" in body["message"]  # plain text as it is: Apprise escapes per service


def test_events_not_chosen_for_a_url_are_not_sent(
    clean_env: Path, clock: Clock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env.parent / "config.toml"
    config.write_text('[notify]\nevents = ["kill_switch"]\n[notify.urls.2]\nmin_level = "critical"\n')
    monkeypatch.setenv("LLMTRADER_CONFIG", str(config))
    monkeypatch.setenv("NOTIFY_URLS", f"{receiver.url}?n=1 {receiver.url}?n=2")
    emergency(clean_env, "closed")  # not chosen
    store = Store(clean_env)
    try:
        store.save_guard_state("default", GuardState(), [GuardEvent("resume", "resumed by hand")], now_ms=1)
    finally:
        store.close()
    deliver(clean_env, clock)
    assert receiver.titles == ["Kill switch reset: drawdown (default)"]  # info: not for URL 2
    assert [r["status"] for r in outbox(clean_env)] == ["done", "done"]


def test_notify_test_reports_each_url_and_doctor_checks_they_parse(
    clean_env: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    dead = f"json://127.0.0.1:{free_port()}/hook"
    monkeypatch.setenv("NOTIFY_URLS", f"{receiver.url} {dead}")
    result = runner.invoke(app, ["notify", "test", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert [(r["target"], r["ok"]) for r in doc["results"]] == [("#1 json", True), ("#2 json", False)]
    assert str(receiver.port) not in result.stdout
    assert receiver.titles == ["llmtrader test"]

    result = runner.invoke(app, ["notify", "test", "--url", receiver.url])
    assert result.exit_code == 0 and result.stdout == "#1 json: sent\n"

    from llmtrader.cycle.doctor import _notify_checks

    monkeypatch.setenv("NOTIFY_URLS", "nosuchservice://abc")
    (check,) = _notify_checks(load_settings(), {})
    assert check.status == "fail" and "#1 nosuchservice" in check.detail and "abc" not in check.detail


def test_run_tells_its_start_and_stop(
    paper: Path, fake_llm: FakeLLM, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_URLS", receiver.url)
    result = CliRunner().invoke(app, ["run", "--once"])
    assert result.exit_code == 0, result.output
    assert receiver.titles == ["Agent started: default (paper)", "Agent stopped: default (paper)"]
    assert "exit code 0" in receiver.bodies[1]["message"]


def test_the_daily_summary_is_sent_once_after_midnight(
    paper: Path, clock: Clock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_URLS", receiver.url)
    day_ms = 86_400_000
    before_midnight = (clock.now // day_ms) * day_ms + day_ms - 1000  # 23:59:59 UTC

    async def agent() -> None:
        clock.now = before_midnight
        notifier = Notifier(Store(paper), {"default": load_settings()}, now_ms=clock.now_ms)
        try:
            await notifier.process_once()
            clock.advance(2000)  # 00:00:01 UTC
            await notifier.process_once()
        finally:
            await notifier.close()

    asyncio.run(agent())
    asyncio.run(agent())  # another agent seeing the same midnight queues the same summary: not sent again
    summaries = [b for b in receiver.bodies if str(b["title"]).startswith("Daily summary")]
    assert len(summaries) == 1, receiver.titles
    assert "trades closed 0" in summaries[0]["message"] and "model cost" in summaries[0]["message"]


def test_failed_cycles_are_told_once_a_streak_and_a_venue_ban_is_told(
    paper: Path, clock: Clock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtrader.storage.bans import VenueBans

    monkeypatch.setenv("NOTIFY_URLS", receiver.url)
    store = Store(paper)
    try:
        outcomes = ["model_error", "exchange_reject", "model_error", "model_error", "held", "model_error"]
        for i, outcome in enumerate(outcomes):
            store.record_cycle(
                account="default", started_ms=clock.now + i, finished_ms=clock.now + i, outcome=outcome,
                reason=f"HTTP 402 <i>{i}</i>", decision_id=None, equity_usd=None, cached=False, reconcile=[],
            )  # fmt: skip
        VenueBans(store, "https://venue.example", lambda: clock.now).put_ban(clock.now + 120_000, "IP banned")
    finally:
        store.close()
    deliver(paper, clock)
    assert receiver.titles == ["3 failed cycles in a row (default)", "Venue ban (HTTP 418)"]
    assert "HTTP 402 <i>2</i>" in receiver.bodies[0]["message"]
    assert "IP banned" in receiver.bodies[1]["message"]


def test_failed_deliveries_show_in_status_and_doctor(
    paper: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtrader.cycle.doctor import _notify_checks

    url = f"json://127.0.0.1:{free_port()}/hook-secret-12345678"
    monkeypatch.setenv("NOTIFY_URLS", url)
    emergency(paper, "closed")
    deliver(paper, clock)  # refused: waits for a retry
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)
    notes = row["notifications"]
    assert notes["retrying"] == 1 and notes["failed"] == 0 and notes["last_error"].startswith("#1 json: ")
    screen = CliRunner().invoke(app, ["status"])
    assert "notifications" in screen.stdout and "1 retrying" in screen.stdout
    assert all(len(line) <= 80 for line in screen.stdout.splitlines())
    checks = _notify_checks(load_settings(), {})
    assert [(c.name, c.status) for c in checks] == [("notify", "ok"), ("notify delivery", "warn")]
    assert "hook-secret-12345678" not in result.stdout + screen.stdout + json.dumps([c.detail for c in checks])
