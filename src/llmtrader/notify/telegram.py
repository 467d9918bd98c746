"""Telegram commands answered by the agent (python-telegram-bot, long polling), beside ``llmtrader run``.

Only the chats of ``[notify].telegram_chat_ids`` are answered; a message or button press from any other
chat changes nothing, gets no answer, and is logged. Read commands: ``/status``, ``/positions``, ``/pnl``,
``/daily``, ``/last``. With ``[notify].telegram_control = true`` also ``/pause``, ``/resume`` and
``/closeall``: each first answers with a confirmation button (valid two minutes, once), and only the press
of that button acts. Every action is a control request of the account (``control_requests``, the audit trail
of ``llmtrader serve`` too, its source ``telegram (chat <id>)``): /pause and /resume are carried out by the
agent's next cycle exactly as the dashboard's are (a paused account is still reconciled and its guards still
act; it only makes no decision), and /closeall closes at once, under the account's cycle lock, recorded done
or failed.

Replies are plain text (no parse mode), so model text and venue messages cannot become markup; control
characters are removed and every secret value masked. The bot token is TELEGRAM_BOT_TOKEN (environment
only); the Bot API base URL is ``[notify].telegram_base_url`` (a loopback fake in tests).
"""

from __future__ import annotations

import asyncio
import secrets as random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmtrader.core.redact import redact, secrets_of
from llmtrader.core.times import DAY_MS
from llmtrader.notify.messages import clean, daily_message, money
from llmtrader.storage import outbox
from llmtrader.storage import web as controls

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings
    from llmtrader.storage.store import Store

CONFIRM_MS = 120_000
REPLY_MAX = 3500
READ_COMMANDS = ("status", "positions", "pnl", "daily", "last")
CONTROL_COMMANDS = ("pause", "resume", "closeall")
CloseAll = Callable[[str, str], Awaitable[str]]  # (account, note) -> what was done


@dataclass
class _Pending:
    command: str
    chat_id: int
    expires_ms: int


class TelegramCommands:
    """Answers the allowed chats' commands (see the module docstring). ``close_all`` closes every position
    of an account outside any cycle (the agent passes one that holds the account's cycle lock). ``store``
    is this object's own connection: :meth:`close` closes it."""

    def __init__(
        self,
        store: Store,
        accounts: Mapping[str, Settings],
        *,
        now_ms: Callable[[], int],
        close_all: CloseAll | None = None,
        poll_timeout_s: int = 25,
    ) -> None:
        from telegram import Bot

        from llmtrader.logs import get_logger

        first = next(iter(accounts.values()))
        token = first.telegram_bot_token
        if token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self.config = first.notify
        self.bot = Bot(token.get_secret_value().strip(), base_url=self.config.telegram_base_url)
        self.store = store
        self.accounts = dict(accounts)
        self.now_ms = now_ms
        self.close_all = close_all
        self.poll_timeout_s = poll_timeout_s
        self.allowed = frozenset(self.config.telegram_chat_ids)
        self.secrets = [s for a in accounts.values() for s in secrets_of(a)]
        self.log = get_logger("llmtrader.telegram")
        self._offset: int | None = None
        self._pending: dict[str, _Pending] = {}
        self._task: asyncio.Task[None] | None = None

    # ---- the loop --------------------------------------------------------------------------------------

    async def poll_once(self, timeout_s: int | None = None) -> int:
        """One getUpdates round; every update answered (or ignored). Returns how many came."""
        updates = await self.bot.get_updates(
            offset=self._offset, timeout=self.poll_timeout_s if timeout_s is None else timeout_s,
            allowed_updates=["message", "callback_query"],
        )  # fmt: skip
        for update in updates:
            self._offset = update.update_id + 1
            try:
                await self.handle(update)
            except Exception:
                self.log.exception("a Telegram update could not be handled", update_id=update.update_id)
        return len(updates)

    async def run(self) -> None:
        """Poll until cancelled; a failed round (the Bot API down, a bad token) waits, up to a minute, and
        tries again: the trading goes on whatever Telegram does."""
        wait = 1.0
        while True:
            try:
                async with self.bot:
                    while True:
                        await self.poll_once()
                        wait = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("Telegram polling failed", error=self._safe(str(exc)), retry_in_s=wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 60.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="llmtrader telegram")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.store.close()

    # ---- one update ------------------------------------------------------------------------------------

    def _safe(self, text: str) -> str:
        return redact(clean(text, REPLY_MAX, multiline=True), self.secrets)

    async def _reply(self, chat_id: int, text: str, markup: Any = None) -> None:
        await self.bot.send_message(chat_id=chat_id, text=self._safe(text) or "-", reply_markup=markup)

    async def handle(self, update: Any) -> None:
        """Answer one update from an allowed chat; log and drop one from any other."""
        chat = update.effective_chat
        chat_id = chat.id if chat is not None else None
        if chat_id is None or chat_id not in self.allowed:
            self.log.warning("Telegram: ignored an update from a chat not on the allow-list", chat_id=chat_id)
            return
        if update.callback_query is not None:
            await self._confirmed(chat_id, update.callback_query)
            return
        text = (update.message.text or "") if update.message is not None else ""
        if not text.startswith("/"):
            return
        command = text.split()[0][1:].split("@")[0].lower()
        if command in READ_COMMANDS:
            await self._reply(chat_id, self.answer(command))
        elif command in CONTROL_COMMANDS:
            await self._ask(chat_id, command)
        else:
            await self._reply(chat_id, "Commands: /status /positions /pnl /daily /last, and with control on: "
                              "/pause /resume /closeall")  # fmt: skip

    async def _ask(self, chat_id: int, command: str) -> None:
        from telegram import InlineKeyboardButton, InlineKeyboardMarkup

        if not self.config.telegram_control:
            await self._reply(chat_id, f"/{command} is off: set [notify] telegram_control = true to allow it.")
            return
        nonce = random.token_hex(8)
        self._pending[nonce] = _Pending(command, chat_id, self.now_ms() + CONFIRM_MS)
        what = {"pause": "Pause every account (stops still kept, no decision until /resume)",
                "resume": "Resume every paused account",
                "closeall": "CLOSE EVERY POSITION of every account now"}[command]  # fmt: skip
        button = InlineKeyboardButton(f"Confirm /{command}", callback_data=f"confirm:{nonce}")
        await self._reply(chat_id, f"{what}? Press the button within 2 minutes.", InlineKeyboardMarkup([[button]]))

    async def _confirmed(self, chat_id: int, query: Any) -> None:
        data = str(query.data or "")
        pending = self._pending.pop(data.removeprefix("confirm:"), None) if data.startswith("confirm:") else None
        await query.answer()
        if pending is None or pending.chat_id != chat_id or pending.expires_ms < self.now_ms():
            await self._reply(chat_id, "That confirmation is unknown or expired: send the command again.")
            return
        await self._reply(chat_id, await self.act(pending.command, chat_id))

    async def act(self, command: str, chat_id: int) -> str:
        """Carry out a confirmed control command for every account, each recorded as a control request (as
        ``serve`` records them): pause and resume pending for the agent's next cycle, closeall done or failed."""
        conn = self.store.db.conn
        now = self.now_ms()
        source = f"telegram (chat {chat_id})"
        lines = []
        for name in self.accounts:
            if command in ("pause", "resume"):
                paused = controls.pause_of(conn, name) is not None
                if paused == (command == "pause"):
                    lines.append(f"{name}: {'already paused' if paused else 'was not paused'}")
                    continue
                controls.request_control(conn, account=name, action=command, source=source, now_ms=now)
                lines.append(f"{name}: {'paused' if command == 'pause' else 'resumed'}")
                continue
            note = f"closed at market from {source} with /closeall"
            status, said = "failed", "closing is not available in this process"
            if self.close_all is not None:
                try:
                    status, said = "done", await self.close_all(name, note)
                except Exception as exc:
                    said = f"closing failed: {exc}"
            said = redact(said, self.secrets)  # a venue's error text goes to the store: no secret with it
            controls.request_control(
                conn, account=name, action="close_all", source=source, now_ms=self.now_ms(), status=status, result=said
            )
            lines.append(f"{name}: {said}")
        return "\n".join(lines)

    # ---- read commands ---------------------------------------------------------------------------------

    def answer(self, command: str) -> str:
        """The text of a read command, over every account of this agent."""
        return "\n\n".join(getattr(self, f"_{command}")(name, s) for name, s in self.accounts.items())

    def _history_trades(self, name: str, settings: Settings) -> list[Any]:
        from llmtrader.core.trades import reconstruct_trades
        from llmtrader.storage.facts import account_history

        history = account_history(self.store, name, settings.trading_mode)
        return reconstruct_trades(history.fills, history.funding)

    def _status(self, name: str, settings: Settings) -> str:
        from llmtrader.core.guards import describe
        from llmtrader.storage.reader import last_cycles

        conn = self.store.db.conn
        last = last_cycles(conn, [name]).get(name)
        guards = describe(self.store.load_guard_state(name), self.now_ms())
        paused = controls.pause_of(conn, name)
        lines = [f"{name} ({settings.trading_mode}){' PAUSED' if paused else ''}"]
        if paused:
            lines.append(f"{clean(paused, 120)}: stops still kept, no decision until /resume")
        if last is None:
            lines.append("no cycle yet")
        else:
            lines.append(f"last cycle {last['started_at']}: {clean(last['outcome'], 20)}")
            if last.get("reason"):
                lines.append(clean(last["reason"], 200))
            if last.get("equity_usd") is not None:
                lines.append(f"equity {float(last['equity_usd']):,.2f} USD")
        stops = [k for k, v in guards.items() if k != "circuit" and (v.get("stopped") or v.get("tripped") or
                                                                    v.get("reached"))]  # fmt: skip
        lines.append(f"kill switches: {', '.join(stops) or 'none'}; circuit {guards['circuit']['state']}")
        return "\n".join(lines)

    def _positions(self, name: str, settings: Settings) -> str:
        open_trades = [t for t in self._history_trades(name, settings) if t.is_open]
        if not open_trades:
            return f"{name}: no open position" + (" (as last synced)" if settings.trading_mode == "live" else "")
        lines = [f"{name}: {len(open_trades)} open"]
        for t in open_trades:
            held = sum((e.qty for e in t.entries), Decimal(0)) - sum((e.qty for e in t.exits), Decimal(0))
            lines.append(f"{t.symbol} {t.side} {held} @ {t.entry_price:.6g}")
        return "\n".join(lines)

    def _pnl(self, name: str, settings: Settings) -> str:
        closed = [t for t in self._history_trades(name, settings) if not t.is_open]
        day = self.now_ms() // DAY_MS * DAY_MS
        today = [t for t in closed if (t.closed_ms or 0) >= day]
        total = sum((t.net_pnl for t in closed), Decimal(0))
        day_pnl = sum((t.net_pnl for t in today), Decimal(0))
        wins = sum(1 for t in closed if t.is_win)
        rate = f"{100 * wins / len(closed):.0f}%" if closed else "-"
        return (
            f"{name}: net PnL {money(total)} USD over {len(closed)} closed trades (win rate {rate}); "
            f"today {money(day_pnl)} USD over {len(today)}"
        )

    def _daily(self, name: str, settings: Settings) -> str:
        day = self.now_ms() // DAY_MS * DAY_MS
        message = daily_message(self.store, name, {"day_ms": day, "mode": settings.trading_mode})
        return f"{message.title} (so far)\n{message.body}"

    def _last(self, name: str, settings: Settings) -> str:
        found = outbox.last_decision(self.store.db.conn, name)
        if found is None:
            return f"{name}: no decision yet"
        lines = [
            f"{name}: decision {found['id']} at {found['created_at']} by {clean(found['model'], 60)}: "
            f"{clean(found['outcome'], 30)}",
        ]
        if found.get("portfolio_rationale"):
            lines.append(f"why: {clean(found['portfolio_rationale'], 400)}")
        for a in found["assets"]:
            line = f"{clean(a['symbol'], 24)} {clean(a['action'], 12)}: {clean(a['status'], 12)}"
            if a.get("reasons") and a["reasons"] not in ("[]", "null"):
                line += f" ({clean(a['reasons'], 200)})"
            lines.append(line)
        return "\n".join(lines)
