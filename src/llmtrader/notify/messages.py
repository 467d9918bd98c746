"""Outbox rows turned into messages: a short title that fits a phone's notification, and a plain-text body
without links. Everything the store holds that came from outside (model rationale, venue messages, guard
reasons) is made safe text (control characters removed, one line where one line is meant, bounded), and
every secret value is masked; Apprise escapes the plain text for each service's markup (``body_format``
text), so a ``<b>`` or ``*`` of the model reaches a chat as the characters it is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from llmtrader.core.formatting import fmt, safe_text
from llmtrader.core.times import DAY_MS, utc_minute
from llmtrader.storage import outbox
from llmtrader.storage.reader import Connection

if TYPE_CHECKING:
    from llmtrader.core.trades import Trade
    from llmtrader.storage.store import Store

TITLE_MAX = 64
LINE_MAX = 200
BODY_MAX = 1500
KILL_TRIPS = {"drawdown_stop": "drawdown", "daily_loss_stop": "daily loss", "budget_stop": "model budget"}
KILL_RESETS = {"resume": "drawdown", "daily_loss_reset": "daily loss", "budget_reset": "model budget"}
_FAILED_SKIPS = ("the cycle failed", "reconcile failed")
_EXIT_REASONS = {"stop_loss": "stop", "take_profit": "target", "liquidation": "liquidation", "adl": "liquidation"}


@dataclass(frozen=True)
class Message:
    """One notification: which event (``[notify].events``), its level, title and body (plain text)."""

    event: str
    level: str  # info | warning | critical
    title: str
    body: str


TEST_MESSAGE = Message("test", "info", "llmtrader test", "A test message from llmtrader: this URL works.")


def clean(value: object, limit: int = LINE_MAX, *, multiline: bool = False) -> str:
    """Untrusted text as one bounded line (or lines) of plain text."""
    text = safe_text("" if value is None else value, multiline=multiline).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finish(message: Message, secrets: list[str]) -> Message:
    """The message bounded, and with every secret value masked (the last step before it leaves)."""
    from llmtrader.core.redact import redact

    title = redact(clean(message.title, TITLE_MAX), secrets)
    body = redact(clean(message.body, BODY_MAX, multiline=True), secrets)
    return Message(message.event, message.level, title, body)


def money(value: Decimal | float | None) -> str:
    """A signed USD amount with two decimals."""
    if value is None:
        return "-"
    number = float(value)
    return f"{number:+,.2f}" if number else "0.00"


def _hold(ms: int | None) -> str:
    if ms is None:
        return "-"
    minutes = ms // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}d {hours}h {mins}m" if days else f"{hours}h {mins}m"


def render(store: Store, row: dict[str, Any], now_ms: int, failed_cycles: int = 3) -> Message | None:
    """The message of one outbox row; None when it tells nothing (a fill that neither opens nor closes a
    trade, a failed cycle that does not complete a streak, a record gone)."""
    kind = str(row["kind"])
    account = str(row["account"])
    conn = store.db.conn
    if kind == "fill":
        return _fill(store, row)
    if kind in ("emergency", "guard", "cycle_failed"):
        ref = outbox.referenced(conn, str(row["ref_table"]), int(row["ref_id"]))
        if ref is None:
            return None
        if kind == "emergency":
            return Message(
                "emergency", "critical", f"EMERGENCY {account} {clean(ref['symbol'], 24)}",
                f"Account {account}: {clean(ref['message'], 600)}",
            )  # fmt: skip
        if kind == "guard":
            return _guard(account, ref)
        return _failed_cycles(conn, account, ref, failed_cycles)
    payload = json.loads(row["payload"]) if row.get("payload") else {}
    if kind == "venue_ban":
        body = payload.get("body") or {}
        until = int(body.get("until_ms") or 0)
        return Message(
            "venue_ban", "critical", "Venue ban (HTTP 418)",
            f"The venue banned this machine's IP until {utc_minute(until)}: {clean(body.get('message'), 300)}. "
            "No request is sent until then.",
        )  # fmt: skip
    if kind == "agent":
        return _agent(account, payload)
    if kind == "daily_summary":
        return daily_message(store, account, payload)
    return None


def _agent(account: str, payload: dict[str, Any]) -> Message:
    state = str(payload.get("state"))
    why = clean(payload.get("reason"), 200)
    mode = clean(payload.get("mode"), 10)
    level = "warning" if state == "stopped" and payload.get("clean") is False else "info"
    title = f"Agent {state}: {account}" + (f" ({mode})" if mode else "")
    return Message("agent", level, title, f"Account {account} {state}" + (f": {why}" if why else "."))


def _guard(account: str, ref: dict[str, Any]) -> Message | None:
    kind = str(ref["kind"])
    why = clean(ref["message"], 400)
    if kind in KILL_TRIPS:
        return Message("kill_switch", "critical", f"Kill switch: {KILL_TRIPS[kind]} ({account})", why)
    if kind in KILL_RESETS:
        return Message("kill_switch", "info", f"Kill switch reset: {KILL_RESETS[kind]} ({account})", why)
    if kind == "circuit_open":
        return Message("circuit", "warning", f"Circuit breaker open ({account})", why)
    if kind == "circuit_closed":
        return Message("circuit", "info", f"Circuit breaker closed ({account})", why)
    return None


def is_failed(cycle: dict[str, Any]) -> bool:
    """A cycle that failed (not one a guard or an overlap skipped on purpose)."""
    outcome = cycle["outcome"]
    if outcome in ("model_error", "exchange_reject", "unprotected"):
        return True
    return outcome == "skipped" and str(cycle.get("reason") or "").startswith(_FAILED_SKIPS)


def _failed_cycles(conn: Connection, account: str, ref: dict[str, Any], n: int) -> Message | None:
    """Told once per streak: when this cycle is the n-th failed one in a row."""
    recent = outbox.recent_cycles(conn, account, int(ref["id"]), n + 1)
    streak = 0
    for cycle in recent:
        if not is_failed(cycle):
            break
        streak += 1
    if streak != n:
        return None
    last = recent[0]
    return Message(
        "failed_cycles", "warning", f"{n} failed cycles in a row ({account})",
        f"The last {n} cycles of {account} failed; the last: {clean(last['outcome'], 20)}: "
        f"{clean(last.get('reason'), 300)}",
    )  # fmt: skip


def _fill(store: Store, row: dict[str, Any]) -> Message | None:
    from llmtrader.core.trades import reconstruct_trades
    from llmtrader.storage.facts import account_history

    conn = store.db.conn
    fill = outbox.referenced(conn, str(row["ref_table"]), int(row["ref_id"]))
    if fill is None:
        return None
    mode: Literal["paper", "live"] = "paper" if row["ref_table"] == "paper_fills" else "live"
    account = str(fill["account"])
    history = account_history(store, account, mode)
    cid, time_ms, symbol = fill.get("client_order_id"), int(fill["time_ms"]), str(fill["symbol"])
    for trade in reconstruct_trades(history.fills, history.funding):
        if trade.symbol != symbol:
            continue
        first = trade.entries[0] if trade.entries else None
        if first is not None and trade.opened_ms == time_ms and first.client_order_id == cid:
            return _opened(conn, account, mode, trade)
        last = trade.exits[-1] if trade.exits else None
        if last is not None and trade.closed_ms == time_ms and last.client_order_id == cid:
            return _closed(conn, account, mode, trade)
    return None


def _decision(conn: Connection, cid: str | None, symbol: str) -> tuple[str | None, dict[str, Any]]:
    from llmtrader.core.trades import decision_id_of

    decision_id = decision_id_of(cid)
    found = outbox.decision_of(conn, decision_id, symbol) if decision_id else None
    return decision_id, found or {}


def _opened(conn: Connection, account: str, mode: str, trade: Trade) -> Message:
    entry = trade.entries[0]
    _, d = _decision(conn, entry.client_order_id, trade.symbol)
    notional = entry.qty * entry.price
    lines = [
        f"{account} ({mode}): {trade.side} {trade.symbol}",
        f"size {entry.qty} notional {fmt(float(notional))} USD",
        f"entry {entry.price} stop {fmt(d.get('sl_price'))} target {fmt(d.get('tp_price'))}",
        f"leverage {d.get('leverage') or '-'}x model {clean(d.get('model') or '-', 60)}",
    ]
    if d.get("rationale"):
        lines.append(f"why: {clean(d['rationale'], 200)}")
    title = f"OPENED {trade.side} {trade.symbol} {fmt(float(notional))} USD ({account})"
    return Message("trade_opened", "info", title, "\n".join(lines))


def _closed(conn: Connection, account: str, mode: str, trade: Trade) -> Message:
    last = trade.exits[-1]
    reason = _EXIT_REASONS.get(last.reason)
    if reason is None:
        _, d = _decision(conn, last.client_order_id, trade.symbol)
        by = d.get("model")
        if (last.client_order_id or "").endswith("_em"):
            reason = "emergency close"
        elif by == "guards":
            reason = "kill switch"
        elif by in ("manual", "reconcile", "control"):  # control: close_all from serve or Telegram
            reason = str(by)
        elif by is None:
            reason = "manual"
        else:
            reason = "model"
    net = trade.net_pnl
    lines = [
        f"{account} ({mode}): {trade.side} {trade.symbol} closed by {reason}",
        f"entry {fmt(float(trade.entry_price))} exit {fmt(float(trade.exit_price or 0))} size {trade.qty}",
        f"net PnL {money(net)} USD (fees {money(-trade.fees)}, funding {money(trade.funding)})",
        f"held {_hold(trade.hold_ms)}",
    ]
    level = "warning" if reason in ("liquidation", "kill switch", "emergency close") else "info"
    title = f"CLOSED {trade.symbol} {money(net)} USD ({reason}, {account})"
    return Message("trade_closed", level, title, "\n".join(lines))


def daily_message(store: Store, account: str, payload: dict[str, Any]) -> Message:
    """The summary of the UTC day starting at ``payload["day_ms"]`` (so far, for today)."""
    from llmtrader.core.trades import closed_trades, reconstruct_trades
    from llmtrader.storage.facts import account_history

    day_ms = int(payload["day_ms"])
    mode = str(payload.get("mode") or "paper")
    history = account_history(store, account, "live" if mode == "live" else "paper")
    trades = [
        t for t in closed_trades(reconstruct_trades(history.fills, history.funding), day_ms)
        if t.closed_ms is not None and t.closed_ms < day_ms + DAY_MS
    ]  # fmt: skip
    pnl = sum((t.net_pnl for t in trades), Decimal(0))
    wins = sum(1 for t in trades if t.is_win)
    figures = outbox.day_figures(store.db.conn, account, day_ms, day_ms + DAY_MS)
    day = datetime.fromtimestamp(day_ms / 1000, UTC).strftime("%Y-%m-%d")
    rate = f"{100 * wins / len(trades):.0f}%" if trades else "-"
    body = "\n".join(
        [
            f"{account} ({mode}), {day} UTC",
            f"equity {fmt(figures['equity_usd'])} USD, day PnL {money(pnl)} USD",
            f"trades closed {len(trades)}, win rate {rate}",
            f"model cost {figures['cost_usd']:.4f} USD",
        ]
    )
    return Message("daily_summary", "info", f"Daily summary {day} ({account}) {money(pnl)} USD", body)
