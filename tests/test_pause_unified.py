"""One pause: Telegram's /pause and /resume are the control requests of ``llmtrader serve`` (control_requests),
carried out by the same cycle code. A paused account is still reconciled (a vanished stop is re-armed) and
guarded, it only makes no decision; ``status``, serve's /api/v1/status and the dashboard show a pause from
either source, and a resume from either lifts it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.logs import reset_logging
from llmtrader.notify.telegram import TelegramCommands
from llmtrader.storage.store import Store
from llmtrader.web.app import ServeConfig, create_app
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.fakes.telegram import FakeTelegram
from tests.helpers import telegram_config

CHAT = 42
SERVE_TOKEN = "serve-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


@pytest.fixture
def telegram(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    fake = telegram_config(env, CHAT, monkeypatch)
    yield fake
    fake.stop()


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def telegram_control(telegram: FakeTelegram, db: Path, command: str) -> str:
    """Send ``/command`` from the allowed chat, press its confirmation button; the bot's last answer."""
    settings = load_settings()
    cmds = TelegramCommands(Store(db), {settings.account: settings}, now_ms=lambda: 1_790_000_000_000)

    async def one_round() -> None:
        async with cmds.bot:
            await cmds.poll_once(timeout_s=0)

    telegram.send_command(CHAT, f"/{command}")
    asyncio.run(one_round())
    nonce = telegram.sent(CHAT)[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    telegram.press(CHAT, nonce)
    asyncio.run(one_round())
    cmds.store.close()
    return str(telegram.sent(CHAT)[-1]["text"])


def run_once(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--once"])
    assert result.exit_code == 0, result.output
    reset_logging()


def long_btc(fake: FakeAster) -> dict[str, Any]:
    mark = fake.mark("BTCUSDT")
    return asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, confidence=0.7, risk_level="medium",
                 tp_price=round(mark * 1.04, 1), sl_price=round(mark * 0.98, 1))  # fmt: skip


def cancel_at_venue(client_order_id: str) -> None:
    """The stop vanishes at the venue (cancelled there, behind the agent's back)."""

    async def go() -> None:
        services = build_services(load_settings())
        try:
            await services.exchange.cancel_order("BTCUSDT", client_order_id)
        finally:
            await close_services(services)

    asyncio.run(go())


def stops(fake: FakeAster) -> list[Any]:
    return [o for o in fake.open_orders(USER) if o.symbol == "BTCUSDT" and o.orig_type == "STOP_MARKET"]


def test_an_account_paused_from_telegram_gets_its_vanished_stop_rearmed_and_makes_no_decision(
    live: Path, telegram: FakeTelegram, fake_aster: FakeAster, fake_llm: FakeLLM, runner: CliRunner
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    run_once(runner)
    assert fake_aster.positions(USER).get("BTCUSDT") and len(fake_llm.requests) == 1
    (stop,) = stops(fake_aster)
    cancel_at_venue(stop.client_order_id)
    assert stops(fake_aster) == []  # the position is naked now

    assert telegram_control(telegram, live, "pause") == "default: paused"
    run_once(runner)  # the scheduled cycle of `run`, one fire

    rearmed = stops(fake_aster)
    assert len(rearmed) == 1 and rearmed[0].close_position and rearmed[0].side == "SELL"
    assert fake_aster.positions(USER).get("BTCUSDT")  # still open, now protected
    assert len(fake_llm.requests) == 1  # no decision while paused
    (last,) = rows(live, "SELECT outcome, reason, reconcile FROM cycles ORDER BY id DESC LIMIT 1")
    assert last["outcome"] == "skipped" and last["reason"].startswith(f"paused from telegram (chat {CHAT})")
    assert any(n.startswith("re-armed the stop-loss of BTCUSDT") for n in json.loads(last["reconcile"]))
    assert [(c["action"], c["source"], c["status"]) for c in rows(live, "SELECT * FROM control_requests")] == [
        ("pause", f"telegram (chat {CHAT})", "done")
    ]


def test_a_pause_from_telegram_shows_in_serve_and_status_and_a_resume_from_serve_lifts_it(
    paper: Path, telegram: FakeTelegram, runner: CliRunner
) -> None:
    run_once(runner)
    assert telegram_control(telegram, paper, "pause") == "default: paused"

    # the CLI's status, as JSON and on the screen
    out = runner.invoke(app, ["status", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)
    assert row["paused"].startswith(f"paused from telegram (chat {CHAT})")
    screen = runner.invoke(app, ["status"])
    assert screen.exit_code == 0 and "PAUSED" in screen.stdout and f"telegram (chat {CHAT})" in screen.stdout
    # Telegram's own /status says so too
    settings = load_settings()
    cmds = TelegramCommands(Store(paper), {settings.account: settings}, now_ms=lambda: 1_790_000_000_000)
    said = cmds.answer("status")
    cmds.store.close()
    assert said.startswith("default (paper) PAUSED") and f"telegram (chat {CHAT})" in said

    cfg = ServeConfig(settings=settings, accounts=["default"], token=SERVE_TOKEN, allow_control=True)
    auth = {"Authorization": f"Bearer {SERVE_TOKEN}"}
    with TestClient(create_app(cfg)) as client:
        (served,) = client.get("/api/v1/status", headers=auth).json()
        assert served["paused"] == row["paused"]
        login = client.post("/login", data={"token": SERVE_TOKEN}, follow_redirects=False)
        assert login.status_code == 303
        page = client.get("/")
        assert page.status_code == 200 and 'class="tag bad paused"' in page.text
        client.cookies.clear()  # the API with the bearer token (a cookie session would want the CSRF token)
        # resume from serve's API
        r = client.post("/api/v1/accounts/default/control", json={"action": "resume", "confirm": "default"},
                        headers=auth)  # fmt: skip
        assert r.status_code == 202, r.text
        (served,) = client.get("/api/v1/status", headers=auth).json()
        assert served["paused"] is None

    run_once(runner)
    # the Telegram pause is lifted: this cycle decided again (the same candle: from the decision cache)
    (last,) = rows(paper, "SELECT outcome, reason, decision_id FROM cycles ORDER BY id DESC LIMIT 1")
    assert last["outcome"] == "held" and last["decision_id"] is not None and not last["reason"]
    assert [(c["action"], c["status"]) for c in rows(paper, "SELECT * FROM control_requests ORDER BY id")] == [
        ("pause", "done"), ("resume", "done"),
    ]  # fmt: skip
    assert telegram_control(telegram, paper, "resume") == "default: was not paused"
