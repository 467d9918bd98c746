"""Telegram commands (llmtrader.notify.telegram) against a loopback fake of the Bot API: the allow-list, the
read commands, and /pause and /resume that act only on the confirmation button, recorded as control
requests (serve's), and honoured by ``run``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.notify.telegram import TelegramCommands
from llmtrader.storage.store import Store
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.helpers import telegram_config

ALLOWED = 42
STRANGER = 7


@pytest.fixture
def telegram(paper: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    fake = telegram_config(paper, ALLOWED, monkeypatch)
    yield fake
    fake.stop()


def poll(db: Path) -> None:
    """One round of the agent's command loop (a fresh start: nothing in memory but the button nonces
    of this round are kept by the caller's object)."""
    asyncio.run(_poll(commands(db)))


def commands(db: Path) -> TelegramCommands:
    settings = load_settings()
    return TelegramCommands(Store(db), {settings.account: settings}, now_ms=lambda: 1_790_000_000_000)


async def _poll(cmds: TelegramCommands) -> None:
    async with cmds.bot:
        await cmds.poll_once(timeout_s=0)


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_commands_from_a_chat_not_on_the_allow_list_change_nothing(
    paper: Path, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    cmds = commands(paper)
    telegram.send_command(ALLOWED, "/pause")  # a real nonce exists...
    asyncio.run(_poll(cmds))
    (ask,) = telegram.sent(ALLOWED)
    nonce = ask["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    telegram.send_command(STRANGER, "/pause")
    telegram.send_command(STRANGER, "/status")
    telegram.press(STRANGER, nonce)  # ...and a stranger presses it
    asyncio.run(_poll(cmds))
    assert telegram.sent(STRANGER) == [] and len(telegram.sent()) == 1
    assert rows(paper, "SELECT * FROM control_requests") == []
    assert rows(paper, "SELECT * FROM guard_events") == []
    assert "not on the allow-list" in caplog.text


def test_read_commands_answer_the_allowed_chat(paper: Path, telegram: FakeTelegram, fake_llm: FakeLLM) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["run", "--once"]).exit_code == 0
    for command in ("/status", "/last", "/pnl", "/positions", "/daily"):
        telegram.send_command(ALLOWED, command)
    poll(paper)
    status, last, pnl, positions, daily = (m["text"] for m in telegram.sent(ALLOWED))
    assert status.startswith("default (paper)") and "held" in status
    (decision,) = rows(paper, "SELECT id FROM decisions")
    assert decision["id"] in last
    assert "0 closed trades" in pnl and "no open position" in positions and "Daily summary" in daily
    assert all("reply_markup" not in m or m["reply_markup"] is None for m in telegram.sent())
    assert TOKEN not in json.dumps(telegram.calls)


def test_pause_acts_on_the_button_only_and_run_holds_until_resume(
    paper: Path, telegram: FakeTelegram, fake_llm: FakeLLM
) -> None:
    cmds = commands(paper)
    telegram.send_command(ALLOWED, "/pause")
    asyncio.run(_poll(cmds))
    assert rows(paper, "SELECT * FROM control_requests") == []  # asked, not done
    nonce = telegram.sent(ALLOWED)[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    telegram.press(ALLOWED, nonce)
    asyncio.run(_poll(cmds))
    assert telegram.sent(ALLOWED)[-1]["text"] == "default: paused"
    assert [(c["action"], c["source"], c["status"]) for c in rows(paper, "SELECT * FROM control_requests")] == [
        ("pause", f"telegram (chat {ALLOWED})", "pending")
    ]
    telegram.press(ALLOWED, nonce)  # a nonce is good once
    asyncio.run(_poll(cmds))
    assert "unknown or expired" in telegram.sent(ALLOWED)[-1]["text"]

    runner = CliRunner()
    assert runner.invoke(app, ["run", "--once"]).exit_code == 0
    (held,) = rows(paper, "SELECT outcome, reason FROM cycles")
    assert held["outcome"] == "skipped" and held["reason"].startswith(f"paused from telegram (chat {ALLOWED})")
    assert fake_llm.requests == []
    assert [c["status"] for c in rows(paper, "SELECT status FROM control_requests")] == ["done"]

    telegram.send_command(ALLOWED, "/resume")
    asyncio.run(_poll(cmds))
    nonce = telegram.sent(ALLOWED)[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    telegram.press(ALLOWED, nonce)
    asyncio.run(_poll(cmds))
    assert telegram.sent(ALLOWED)[-1]["text"] == "default: resumed"
    assert runner.invoke(app, ["run", "--once"]).exit_code == 0
    assert [c["outcome"] for c in rows(paper, "SELECT outcome FROM cycles ORDER BY id")] == ["skipped", "held"]
    assert [(c["action"], c["status"]) for c in rows(paper, "SELECT * FROM control_requests ORDER BY id")] == [
        ("pause", "done"), ("resume", "done"),
    ]  # fmt: skip


def test_control_commands_are_off_unless_the_config_enables_them(
    paper: Path, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = paper.parent / "config.toml"
    config.write_text(f'[notify]\ntelegram_chat_ids = [{ALLOWED}]\ntelegram_base_url = "{telegram.base_url}"\n')
    telegram.send_command(ALLOWED, "/closeall")
    poll(paper)
    (reply,) = telegram.sent(ALLOWED)
    assert "is off" in reply["text"] and reply.get("reply_markup") is None
    assert rows(paper, "SELECT * FROM control_requests") == []


def test_closeall_runs_the_close_on_confirmation_and_the_loop_answers_in_the_background(
    paper: Path, telegram: FakeTelegram
) -> None:
    closed: list[tuple[str, str]] = []

    async def close_all(account: str, note: str) -> str:
        closed.append((account, note))
        return "nothing was open"

    async def go() -> None:
        settings = load_settings()
        cmds = TelegramCommands(
            Store(paper), {"default": settings}, now_ms=lambda: 1_790_000_000_000, close_all=close_all,
            poll_timeout_s=0,
        )  # fmt: skip
        cmds.start()
        try:
            telegram.send_command(ALLOWED, "/closeall")
            while not telegram.sent(ALLOWED):
                await asyncio.sleep(0.02)
            assert closed == []
            nonce = telegram.sent(ALLOWED)[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            telegram.press(ALLOWED, nonce)
            while len(telegram.sent(ALLOWED)) < 2:
                await asyncio.sleep(0.02)
        finally:
            await cmds.close()

    asyncio.run(go())
    assert closed == [("default", f"closed at market from telegram (chat {ALLOWED}) with /closeall")]
    assert telegram.sent(ALLOWED)[-1]["text"] == "default: nothing was open"
    # the audit row serve's close_all leaves, marked done at once (never pending: the agent would close again)
    audit = rows(paper, "SELECT action, source, status, result FROM control_requests")
    assert [tuple(c.values()) for c in audit] == [
        ("close_all", f"telegram (chat {ALLOWED})", "done", "nothing was open")
    ]
