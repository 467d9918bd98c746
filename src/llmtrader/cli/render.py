"""Terminal and JSON rendering of decisions, history and audit records (rich)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from llmtrader.core.formatting import fmt, safe_text
from llmtrader.core.json_views import CENT, _money, _ratio
from llmtrader.core.json_views import backtest_json as backtest_json  # `--json` of `backtest show`
from llmtrader.core.json_views import backtest_row_json as backtest_row_json  # rows of `backtest list --json`
from llmtrader.core.json_views import money_rounded as money_rounded  # arena documents
from llmtrader.core.json_views import positions_json as positions_json  # `--json` of `positions`
from llmtrader.core.json_views import stats_json as stats_json  # `--json` of `stats`
from llmtrader.core.json_views import stored_decision_json as stored_decision_json  # history, show
from llmtrader.core.json_views import usd as json_usd
from llmtrader.core.records import DecisionRecord
from llmtrader.core.textfmt import json_price, readable
from llmtrader.core.times import iso_utc
from llmtrader.errors import LLMTraderError, ModelError

if TYPE_CHECKING:
    from pathlib import Path

    from llmtrader.config.settings import Settings
    from llmtrader.core.risk import ValidationReport
    from llmtrader.core.stats import AccountStats, CalibrationBucket, DecisionStats, EquityPoint, TradingStats
    from llmtrader.cycle.execution import ExecutionReport
    from llmtrader.cycle.snapshot import Prepared
    from llmtrader.cycle.strategies import CatalogEntry

console = Console()
err_console = Console(stderr=True)
STATUS_STYLE = {"accepted": "green", "amended": "yellow", "rejected": "red", "declined": "yellow"}
OUTCOME_STYLE = {"decided": "green", "all_rejected": "yellow", "model_error": "red", "venue_error": "red"}
EXECUTION_STYLE = {
    "executed": "green",
    "partial": "yellow",
    "failed": "red",
    "emergency": "bold white on red",
    "unfilled": "yellow",
    "declined": "yellow",
    "dry_run": "cyan",
}
LEG_STYLE = {"filled": "green", "acknowledged": "green", "rejected": "red", "failed": "red", "unknown": "yellow",
             "not_sent": "red", "canceled": "dim", "sending": "yellow"}  # fmt: skip


def untrusted(value: object, style: str = "", *, multiline: bool = True) -> Text:
    """Text we did not write (model answers, venue messages, notes quoting them, files) for rich output:
    control characters removed and markup never interpreted. Every such text goes through here."""
    return Text(safe_text(value, multiline=multiline), style=style)


def warning(message: str) -> None:
    err_console.print(Panel(untrusted(message, "bold yellow"), title="warning", border_style="yellow"))


# ---- fitting the terminal ---------------------------------------------------------------------------------
# Every table cell holds a short token (an id, a symbol, a number, a date, a status) that is never split: a
# table is printed only when its columns fit the terminal unwrapped; otherwise the same rows are printed
# stacked, one record per block, its fields packed onto lines of the terminal's width. Free text (reasons,
# notes, rationales) goes under the table, where it wraps between words.


def _cell(value: str | Text) -> Text:
    return value if isinstance(value, Text) else Text(value)


def _fits(table: Table, target: Console | None = None) -> bool:
    """True when ``table`` fits the terminal with no cell wrapped."""
    target = target or console
    wanted = target.measure(table, options=target.options.update(max_width=100_000)).maximum
    return wanted <= target.width


def pack(fields: Sequence[str | Text], width: int, indent: int = 2, lead: str | Text = "") -> list[Text]:
    """Fields packed onto lines of at most ``width`` cells, a line broken only between two fields (so no
    field, an id, a number or a date with its time, is ever split); lines after the first are indented."""
    lines: list[Text] = []
    line = _cell(lead).copy()
    for field in fields:
        piece = _cell(field)
        if not piece.plain:
            continue
        sep = "  " if line.plain.strip() else ""
        if line.plain.strip() and line.cell_len + len(sep) + piece.cell_len > width:
            lines.append(line)
            line = Text(" " * indent)
            sep = ""
        line.append(sep)
        line.append_text(piece)
    if line.plain.strip():
        lines.append(line)
    return lines


def show_rows(
    title: str | Text,
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    *,
    lead: int = 1,
    right: Sequence[str] = (),
    target: Console | None = None,
) -> None:
    """A table of short tokens, or the same rows stacked when the table would not fit unwrapped: the first
    ``lead`` cells start a record's line, the others follow as "Header value" fields."""
    target = target or console
    table = Table(title=title)
    for header in headers:
        table.add_column(header, no_wrap=True, justify="right" if header in right else "left")
    for row in rows:
        table.add_row(*row)
    if _fits(table, target):
        target.print(table)
        return
    target.print(title if isinstance(title, Text) else Text(title), style="bold")
    for row in rows:
        head = Text("  ").join(_cell(c) for c in row[:lead] if _cell(c).plain)
        fields = [
            Text.assemble((f"{h} ", "dim"), _cell(c))
            for h, c in zip(headers[lead:], row[lead:], strict=False)
            if _cell(c).plain not in ("", "-")
        ]
        for line in pack(fields, target.width, lead=head):
            target.print(line, no_wrap=True, overflow="fold")


def _num(value: Any, digits: int = 7) -> str:
    return fmt(float(value), digits) if isinstance(value, (int, float)) else "-"


def _price(value: Any) -> str:
    """A price from a decision or the store, where the symbol's tick is not at hand: by magnitude (six
    significant digits, two to eight decimals; core.textfmt.readable)."""
    return readable(value) if isinstance(value, (int, float, Decimal, str)) and not isinstance(value, bool) else "-"


def _usd_cell(value: Any) -> str:
    """A USD amount to the cent; '-' when unknown."""
    if not isinstance(value, (int, float, Decimal, str)) or isinstance(value, bool):
        return "-"
    try:
        return usd(Decimal(str(value)))
    except ArithmeticError:  # not a number (a store row's '-'): shown as unknown
        return "-"


def execution_json(report: ExecutionReport | None) -> list[dict[str, Any]]:
    if report is None:
        return []
    return [
        {
            "symbol": a.symbol,
            "action": a.action,
            "outcome": a.outcome,
            "emergency": a.emergency,
            "orders": [
                {
                    "leg": leg.name,
                    "client_order_id": leg.client_order_id,
                    "request": leg.description,
                    "status": leg.status,
                    "code": leg.code,
                    "message": leg.message,
                    "executed_qty": float(leg.state.executed_qty) if leg.state else None,
                    # the venue's average: a division, rounded to 8 decimals (no tick is at hand here);
                    # null until something filled (the venue says 0)
                    "avg_price": json_price(leg.state.avg_price) if leg.state and leg.state.executed_qty else None,
                }
                for leg in a.legs
            ],
            "notes": a.notes,
        }
        for a in report.assets
    ]


def decision_json(rec: DecisionRecord, execution: ExecutionReport | None = None) -> dict[str, Any]:
    """The ``decide --json`` object (USD amounts by the money rule: a scaled allocation at the cent)."""
    doc: dict[str, Any] = {
        "decision_id": rec.id,
        "created_at": iso_utc(rec.created_at_ms),
        "account": rec.account,
        "mode": rec.mode,
        "dry_run": rec.dry_run,
        "executed": rec.execution in ("executed", "partial", "emergency"),
        "execution": rec.execution,
        "orders": execution_json(execution),
        "strategy": None if rec.strategy == "-" else rec.strategy,
        "arm": rec.arm,
        "model": rec.model,
        "equity_usd": rec.equity_usd,
        "outcome": rec.outcome,
        "assets": [
            {
                "symbol": a.symbol,
                "action": a.action,
                "allocation_usd": a.allocation_usd,
                "leverage": a.leverage,
                "entry_price": a.entry_price,
                "tp_price": a.tp_price,
                "sl_price": a.sl_price,
                "confidence": a.confidence,
                "risk_level": a.risk_level,
                "rationale": a.rationale,
                "mark_price": a.mark_price,
                "validation": {"status": a.status, "reasons": a.reasons},
            }
            for a in rec.assets
        ],
        "portfolio_rationale": rec.portfolio_rationale,
        "notes": rec.notes,
        "reasks": rec.reasks,
        "usage": {
            "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens,
            "cost_usd": rec.cost_usd,
        },
        "latency_ms": rec.latency_ms,
        "model_latency_ms": rec.model_latency_ms,
    }
    return money_rounded(doc)  # type: ignore[no-any-return]


def failure_json(exc: LLMTraderError) -> dict[str, Any]:
    """The ``--json`` object printed when a decision failed after being recorded."""
    outcome = "model_error" if isinstance(exc, ModelError) else "venue_error"
    return {"decision_id": exc.decision_id, "outcome": outcome, "error": str(exc)}


def execution_table(report: ExecutionReport) -> None:
    """What was sent for each asset, and what became of it; emergencies stand out. One block per asset
    (its legs one a line, its notes under them), so an order's description wraps between words only."""
    console.print(Text("Execution", style="bold"))
    for a in report.assets:
        console.print(
            Text.assemble(untrusted(a.symbol, "bold", multiline=False), "  ", untrusted(a.action, multiline=False),
                          "  ", untrusted(a.outcome, EXECUTION_STYLE.get(a.outcome, ""), multiline=False))
        )  # fmt: skip
        for leg in a.legs:
            line = Text("  ")
            line.append_text(untrusted(f"{leg.name}: {leg.description} ", multiline=False))
            line.append_text(untrusted(leg.status, LEG_STYLE.get(leg.status, "")))
            if leg.state is not None and leg.state.executed_qty > 0:
                line.append(f" {leg.state.executed_qty.normalize():f} @ {readable(leg.state.avg_price)}")
            if leg.code is not None:
                line.append_text(untrusted(f" (code {leg.code}: {leg.message})", "red", multiline=False))
            console.print(line)
        for note in a.notes:
            console.print(untrusted(f"  note: {note}", "dim"))
    for a in report.assets:
        if a.emergency:
            emergency_panel(a.symbol, [n for n in a.notes if n.startswith("emergency")])


def emergency_panel(symbol: str, lines: list[str]) -> None:
    body = "\n".join(lines) or "the stop-loss could not be placed"
    title = untrusted(f"EMERGENCY {symbol}", multiline=False)
    console.print(Panel(untrusted(body, "bold white"), title=title, style="on red"))
    err_console.print(untrusted(f"EMERGENCY on {symbol}: {body}", "bold red"))


def _reasons_under(assets: Sequence[Any], target: Console | None = None) -> None:
    """The validator's reasons, under the table: one line per reason, wrapping between words."""
    target = target or console
    for a in assets:
        symbol = a["symbol"] if isinstance(a, dict) else a.symbol
        reasons = (a.get("reasons") or []) if isinstance(a, dict) else a.reasons
        for reason in reasons:
            target.print(Text.assemble(untrusted(f"{symbol}: ", "bold", multiline=False), untrusted(reason, "dim")))


def _entry_cell(action: str, entry: Any) -> str:
    return _price(entry) if entry is not None else ("market" if action in ("buy", "sell") else "-")


def decision_table(
    rec: DecisionRecord, execution: ExecutionReport | None = None, *, target: Console | None = None
) -> None:
    out = target or console
    arm = f", A/B arm {rec.arm}" if rec.arm else ""
    title = untrusted(f"Decision {rec.id} ({rec.model}, strategy {rec.strategy}{arm}, {rec.mode})", multiline=False)
    rows: list[list[str | Text]] = [
        [
            untrusted(a.symbol, multiline=False),
            untrusted(a.action, multiline=False),
            _usd_cell(a.allocation_usd),
            f"{a.leverage}x" if a.leverage is not None else "-",
            _entry_cell(a.action, a.entry_price),
            _price(a.tp_price),
            _price(a.sl_price),
            _num(a.confidence, 2),
            untrusted(a.status, STATUS_STYLE.get(a.status, ""), multiline=False),
        ]
        for a in rec.assets
    ]
    headers = ["Symbol", "Action", "Margin USD", "Lev", "Entry", "TP", "SL", "Conf", "Validation"]
    show_rows(title, headers, rows, lead=2, right=("Margin USD", "Entry", "TP", "SL", "Conf"), target=out)
    _reasons_under(rec.assets, out)
    if rec.portfolio_rationale:
        out.print(Panel(untrusted(rec.portfolio_rationale), title="Portfolio rationale"))
    for note in rec.notes:
        out.print(_note(note))
    cost = f"${rec.cost_usd:.4f}" if rec.cost_usd is not None else "unknown"
    out.print(
        f"outcome [bold {OUTCOME_STYLE.get(rec.outcome, '')}]{rec.outcome}[/]; tokens {rec.prompt_tokens} in, "
        f"{rec.completion_tokens} out; cost {cost}; re-asks {rec.reasks}; latency {rec.latency_ms} ms"
    )
    if execution is not None:
        execution_table(execution)
    state = rec.execution or "not executed"
    reason = {
        "dry_run": "dry run: nothing was sent",
        "nothing": "nothing to execute",
        "declined": "not confirmed: nothing was sent",
    }.get(state, f"execution {state} ({rec.mode})")
    line = Text(f"Recorded as {rec.id}; ")
    line.append(reason, style=EXECUTION_STYLE.get(state, ""))
    out.print(line)


def live_confirmation(rec: DecisionRecord, report: ValidationReport, *, target: Console | None = None) -> None:
    """What a live ``decide`` is about to send, printed right above its question: built only from the
    validated, typed values of each executable asset decision (no model text), so nothing the model wrote
    can stand between this block and the question or pass for it."""
    out = target or console
    out.print(Rule(Text("About to execute on AsterDEX with REAL money", style="bold red")))
    margin = 0.0
    for v in report.assets:
        d = v.final
        if not v.executable or d is None or d.action.value == "hold":
            continue
        action, symbol = d.action.value, safe_text(d.symbol, multiline=False)
        stops = f"stop-loss {_price(d.sl_price)}, take-profit {_price(d.tp_price)}"
        if action in ("buy", "sell"):
            notional = d.allocation_usd * d.leverage
            reference = d.entry_price or rec.marks.get(d.symbol)
            size = _price(notional / reference) if reference else "-"
            entry = f"limit {_price(d.entry_price)}" if d.entry_price is not None else "at market"
            lines = [
                f"{action.upper()} {symbol}: size about {size} {entry}",
                f"  notional {notional:,.2f} USD, leverage {d.leverage}x, margin {d.allocation_usd:,.2f} USD",
                f"  {stops}",
            ]
            margin += d.allocation_usd
        elif action == "adjust_position":
            lines = [
                f"RESIZE {symbol}: to margin {d.allocation_usd:,.2f} USD at the position's leverage",
                f"  {stops}",
            ]
            margin += d.allocation_usd
        elif action == "close_position":
            lines = [f"CLOSE {symbol}: the whole position at market, reduce-only"]
        else:
            lines = [f"NEW ORDERS {symbol}: {stops}"]
        out.print(Text("\n".join(lines)))
    out.print(Text(f"Total margin of new and resized positions: {margin:,.2f} USD", style="bold"))


def _note(note: str) -> Text:
    return Text.assemble(("note: ", "yellow"), untrusted(note))


def _strategy_cell(row: dict[str, Any]) -> Text:
    arm = row.get("arm")
    return untrusted(f"{row.get('strategy') or '-'}" + (f" (arm {arm})" if arm else ""))


def _execution_word(row: dict[str, Any]) -> Text:
    """What became of a decision's orders, in words: executed, dry run, declined, failed, ..."""
    state = row.get("execution") or ("dry_run" if row.get("dry_run") else "")
    words = {"dry_run": "dry run", "nothing": "nothing to do", "": "-"}
    return Text(words.get(state, state), style=EXECUTION_STYLE.get(state, ""))


def history_table(rows: list[dict[str, Any]], *, filtered: bool = False) -> None:
    if not rows:
        console.print("No decision matches these filters." if filtered else "No decisions recorded yet.")
        return
    title = "Decisions, newest first"
    headers = ["Time (UTC)", "ID", "Account", "Mode", "Outcome", "Execution", "Model", "Strategy",
               "Symbol", "Action", "Status", "Margin", "Lev", "Conf", "Trade"]  # fmt: skip
    table_rows: list[list[str | Text]] = []
    for row in rows:
        assets = row["assets"] or [{}]
        for i, a in enumerate(assets):
            first = i == 0
            decision: list[str | Text] = [
                row["created_at"][:16].replace("T", " "),
                untrusted(row["decision_id"], multiline=False),
                untrusted(row.get("account") or "-", multiline=False),
                untrusted(row.get("mode") or "-", multiline=False),
                untrusted(row["outcome"], OUTCOME_STYLE.get(row["outcome"], ""), multiline=False),
                _execution_word(row),
                untrusted(row["model"], multiline=False),
                _strategy_cell(row),
            ]
            table_rows.append([
                *(decision if first else [""] * len(decision)),
                untrusted(a.get("symbol", "-"), multiline=False), untrusted(a.get("action", "-"), multiline=False),
                untrusted(a.get("status", "-"), STATUS_STYLE.get(a.get("status", ""), ""), multiline=False),
                _usd_cell(a.get("allocation_usd")), f"{a['leverage']}x" if a.get("leverage") else "-",
                _num(a.get("confidence"), 2), _trade_cell(a.get("trade")),
            ])  # fmt: skip
    table = Table(title=title)
    for header in headers:
        table.add_column(header, no_wrap=True, justify="right" if header in ("Margin", "Conf", "Trade") else "left")
    for cells in table_rows:
        table.add_row(*cells)
    if _fits(table):
        console.print(table)
        return
    # Narrow: a decision's line (time, id, what became of it), then one indented line per asset decision.
    console.print(Text(title, style="bold"))
    for row in rows:
        head = [
            Text(row["created_at"][:16].replace("T", " ")),
            untrusted(row["decision_id"], "bold", multiline=False),
            untrusted(f"{row.get('account') or '-'} ({row.get('mode') or '-'})", multiline=False),
            untrusted(row["outcome"], OUTCOME_STYLE.get(row["outcome"], ""), multiline=False),
            _execution_word(row),
            untrusted(row["model"], "dim", multiline=False),
            _strategy_cell(row),
        ]
        for line in pack(head, console.width, indent=2):
            console.print(line, no_wrap=True, overflow="fold")
        for a in row["assets"]:
            fields: list[str | Text] = [
                untrusted(a.get("symbol", "-"), multiline=False), untrusted(a.get("action", "-"), multiline=False),
                untrusted(a.get("status", "-"), STATUS_STYLE.get(a.get("status", ""), ""), multiline=False),
            ]  # fmt: skip
            if a.get("allocation_usd"):
                lev = f" at {a['leverage']}x" if a.get("leverage") else ""
                fields.append(f"margin {_usd_cell(a.get('allocation_usd'))}{lev}")
            if a.get("confidence") is not None:
                fields.append(f"conf {_num(a.get('confidence'), 2)}")
            if a.get("trade") is not None:
                fields.append(Text.assemble("trade ", _trade_cell(a.get("trade"))))
            for line in pack(fields, console.width, indent=6, lead="    "):
                console.print(line, no_wrap=True, overflow="fold")


def _trade_cell(trade: dict[str, Any] | None) -> Text:
    """What became of the trade an asset decision's orders went into: its net PnL once closed, else its state."""
    if trade is None:
        return Text("-")
    if trade["status"] != "closed":
        return untrusted(trade["status"], style="cyan" if trade["status"] == "open" else "dim")
    net = Decimal(str(trade["net_pnl_usd"]))
    return Text(usd(net, sign=True), style="green" if net > 0 else ("red" if net < 0 else ""))


def record_view(rec: dict[str, Any]) -> None:
    cost = rec.get("cost_usd")
    header = "\n".join(
        [
            f"id {rec['decision_id']}   time {rec['created_at']}   account {rec['account']}   mode {rec['mode']}"
            f"{'   dry run' if rec.get('dry_run') else ''}",
            f"strategy {_strategy_cell(rec)}   model {rec['model']}   endpoint {rec['base_url']}   "
            f"equity {_usd_cell(rec.get('equity_usd'))} USD",
            f"outcome {rec['outcome']}   execution {rec.get('execution') or '-'}   "
            f"tokens {rec.get('prompt_tokens')} in / {rec.get('completion_tokens')} out   "
            f"cost {f'${cost:.4f}' if isinstance(cost, (int, float)) else 'unknown'}   "
            f"re-asks {rec.get('reasks')}   latency {rec.get('latency_ms')} ms",
        ]
    )
    console.print(Panel(untrusted(header), title="Decision"))
    if rec.get("error"):
        console.print(Panel(untrusted(rec["error"], "bold red"), title="Error"))
    prompt = rec.get("prompt") or {}
    if prompt.get("system"):
        console.print(Panel(untrusted(prompt["system"]), title="Prompt: system"))
    if prompt.get("user"):
        console.print(Panel(untrusted(prompt["user"]), title="Prompt: user"))
    if rec.get("raw_response"):
        console.print(Panel(untrusted(rec["raw_response"]), title="Raw response"))
    if rec.get("assets"):
        rows: list[list[str | Text]] = [
            [
                untrusted(a["symbol"], multiline=False), untrusted(a["action"], multiline=False),
                _usd_cell(a.get("allocation_usd")), f"{a['leverage']}x" if a.get("leverage") else "-",
                _entry_cell(a["action"], a.get("entry_price")), _price(a.get("tp_price")), _price(a.get("sl_price")),
                _num(a.get("confidence"), 2), _price(a.get("mark_price")),
                untrusted(a["status"], STATUS_STYLE.get(a["status"], ""), multiline=False),
            ]
            for a in rec["assets"]
        ]  # fmt: skip
        headers = ["Symbol", "Action", "Margin USD", "Lev", "Entry", "TP", "SL", "Conf", "Mark", "Validation"]
        show_rows("Validation", headers, rows, lead=2, right=("Margin USD", "Entry", "TP", "SL", "Conf", "Mark"))
        _reasons_under(rec["assets"])
    for note in rec.get("notes") or []:
        console.print(_note(note))
    if rec.get("parse_errors"):
        console.print("[yellow]schema errors in the last answer:[/]")
        for line in rec["parse_errors"]:
            console.print(untrusted(f"  - {line}"))
    events = rec.get("events") or []
    emergencies = [e for e in events if e["kind"] == "emergency"]
    if emergencies:
        emergency_panel(emergencies[0]["symbol"] or "-", [e["message"] for e in emergencies])
    orders = rec.get("orders") or []
    if orders:
        # One block per order: its tokens on a line (never split), the request and the venue's answer under it.
        console.print(Text(f"Orders (execution: {rec.get('execution') or '-'})", style="bold"))
        for o in orders:
            request = o.get("request") or {}
            shown = " ".join(
                str(request.get(k)) for k in ("side", "type", "quantity", "price", "stopPrice") if request.get(k)
            )
            filled = f"{o['executed_qty']} @ {o['avg_price']}" if o.get("executed_qty") else ""  # 0: nothing filled
            answer = (
                f"{o['venue_code']}: {o['venue_message']}"
                if o.get("venue_code") is not None
                else (o.get("venue_message") or "")
            )
            fields: list[str | Text] = [
                o["created_at"][11:19], untrusted(o["symbol"], "bold", multiline=False),
                untrusted(o["leg"], multiline=False),
                untrusted(o["status"], LEG_STYLE.get(o["status"], ""), multiline=False),
                untrusted(filled, multiline=False),
                untrusted(o["client_order_id"], "dim", multiline=False),
            ]  # fmt: skip
            for line in pack(fields, console.width, indent=4):
                console.print(line, no_wrap=True, overflow="fold")
            if shown:
                console.print(untrusted(f"    request: {shown}", multiline=False))
            if answer:
                console.print(untrusted(f"    venue: {answer}", "dim"))
    if events:
        console.print(Text("Execution events", style="bold"))
        for e in events:
            style = "bold red" if e["kind"] == "emergency" else ("yellow" if e["kind"] == "rejection" else "")
            console.print(
                Text.assemble(
                    e["created_at"][11:19] + "  ", untrusted(e["symbol"] or "-", multiline=False), "  ",
                    untrusted(e["kind"], style, multiline=False), ": ", untrusted(e["message"]),
                )
            )  # fmt: skip
    calls = rec.get("llm_calls") or []
    if calls:
        call_rows: list[list[str | Text]] = []
        for c in calls:
            call_cost = c.get("cost_usd")
            call_rows.append([
                str(c["attempt"]), untrusted(c.get("response_format") or "-", multiline=False),
                f"{c.get('prompt_tokens', 0)}/{c.get('completion_tokens', 0)}",
                f"${call_cost:.4f}" if isinstance(call_cost, (int, float)) else "-",
                f"{c.get('latency_ms')} ms", untrusted(c.get("finish_reason") or "-", multiline=False),
            ])  # fmt: skip
        show_rows("Model calls", ["#", "Format", "Tokens in/out", "Cost", "Latency", "Finish"], call_rows, lead=1)
        for c in calls:
            if c.get("error"):
                console.print(Text.assemble(f"call {c['attempt']}: ", untrusted(c["error"], "red")))


def settings_table(data: dict[str, Any], sources: dict[str, str] | None = None) -> None:
    """Each setting, its value (secrets redacted) and where it came from (file, env NAME, default)."""
    table = Table(title="Effective settings (secrets redacted)")
    table.add_column("Setting", no_wrap=True)
    table.add_column("Value", overflow="fold")
    if sources is not None:
        table.add_column("From", no_wrap=True)
    for key, value in data.items():
        cells: list[str | Text] = [key, untrusted(json.dumps(value) if not isinstance(value, str) else value)]
        if sources is not None:
            cells.append(untrusted(sources.get(key, "-"), multiline=False))
        table.add_row(*cells)
    console.print(table)


def positions_table(rows: list[dict[str, Any]], mode: str) -> None:
    if not rows:
        console.print(f"No open positions ({mode}).")
        return
    cells: list[list[str | Text]] = []
    for p in rows:
        pnl = Decimal(str(p["unrealized_pnl"]))
        stop = untrusted(p["sl_price"], multiline=False) if p["sl_price"] else Text("NONE", style="bold white on red")
        cells.append([
            *(untrusted(p[k], multiline=False) for k in ("symbol", "side", "size", "entry_price", "mark_price")),
            Text(usd(pnl, sign=True), style="green" if pnl >= 0 else "red"),
            untrusted(p["liquidation_price"] or "-", multiline=False), f"{p['leverage']}x", stop,
            untrusted(p["tp_price"] or "-", multiline=False),
        ])  # fmt: skip
    headers = ["Symbol", "Side", "Size", "Entry", "Mark", "Unrealized PnL", "Liq. price", "Lev", "Stop", "Target"]
    right = ("Size", "Entry", "Mark", "Unrealized PnL", "Liq. price", "Stop", "Target")
    show_rows(f"Open positions ({mode})", headers, cells, lead=3, right=right)


def checklist(checks: list[Any]) -> None:
    marks = {"ok": ("✔", "green"), "warn": ("!", "yellow"), "fail": ("✘", "bold red")}
    for c in checks:
        mark, style = marks[c.status]
        console.print(Text.assemble((mark, style), " ", untrusted(c.name, "bold"), ": ", untrusted(c.detail)))
    failed = [c.name for c in checks if c.status == "fail"]
    console.print(
        f"[bold red]{len(failed)} check(s) failed: {', '.join(failed)}[/]" if failed else "[green]all good[/]"
    )


def catalog_json(entries: list[CatalogEntry]) -> list[dict[str, Any]]:
    """The ``strategy list --json`` list."""
    out = []
    for e in entries:
        st = e.strategy
        out.append(
            {
                "name": e.name,
                "source": e.source,
                "path": str(e.path),
                "in_force": e.in_force,
                "error": e.error,
                "description": st.description if st else None,
                "interval": st.interval if st else None,
                "timeframes": list(st.timeframes) if st else None,
                "limits": st.limits.model_dump(mode="json") if st else None,
            }
        )
    return out


def strategies_table(
    entries: list[CatalogEntry], account: str, in_force: str, source: str, *, leverage_cap: int | None = None
) -> None:
    """Every available strategy with the limits in force (the strategy's, capped by the settings'
    ``leverage``); the one in force marked; descriptions and a broken file's error under the table."""
    how = "chosen with `strategy use`" if source == "chosen" else "the configured `strategy`"
    rows: list[list[str | Text]] = []
    for e in entries:
        mark: str | Text = Text("*", style="bold green") if e.in_force else ""
        st = e.strategy
        if st is None:
            rows.append([mark, untrusted(e.name, multiline=False), e.source, Text("broken", style="red"),
                         "-", "-", "-", "-"])  # fmt: skip
            continue
        lev = st.limits.max_leverage if leverage_cap is None else min(st.limits.max_leverage, leverage_cap)
        rows.append([
            mark, untrusted(e.name, multiline=False), e.source, untrusted(st.interval, multiline=False),
            untrusted(",".join(st.timeframes), multiline=False), f"{lev}x", fmt(st.limits.min_confidence),
            fmt(st.limits.min_reward_risk),
        ])  # fmt: skip
    headers = ["", "Name", "Source", "Every", "Timeframes", "Lev", "Conf", "R/R"]  # Lev, Conf, R/R: the limits
    show_rows(f"Strategies (account {account}: {in_force}, {how})", headers, rows, lead=2)
    for e in entries:
        text = e.error if e.strategy is None else e.strategy.description
        if text:
            style = "red" if e.strategy is None else "dim"
            console.print(Text.assemble(untrusted(f"{e.name}: ", "bold", multiline=False), untrusted(text, style)))
    cap = (
        f" Lev (maximum leverage) is capped by the settings' leverage ({leverage_cap}x)."
        if leverage_cap is not None
        else ""
    )
    console.print(
        f"* in force for account {account}; switch with `llmtrader strategy use NAME`. Every: the decision "
        f"interval; Conf, R/R: the minimum confidence and reward/risk.{cap}"
    )
    names = {e.name: e for e in entries}
    if in_force not in names:
        warning(f"account {account} uses strategy {in_force!r}, which is not available: choose another one")
    elif names[in_force].error:
        warning(f"account {account} uses strategy {in_force!r}, which does not load: fix it or choose another one")


def preview_json(prepared: Prepared, settings: Settings) -> dict[str, Any]:
    """The ``strategy show --json`` object."""
    st = prepared.strategy
    return {
        "name": st.name,
        "description": st.description,
        "interval": st.interval,
        "timeframes": list(st.timeframes),
        "limits": st.limits.model_dump(mode="json"),
        "context": st.context.model_dump(mode="json"),
        "settings_caps": {"leverage": settings.leverage, "max_position_size_usd": settings.max_position_size_usd},
        "decision_interval": settings.interval,
        "symbols": list(prepared.context.symbols),
        "as_of": iso_utc(prepared.snapshot.as_of_ms),
        "account": {"name": prepared.account.name, "mode": prepared.account.mode,
                    "equity_usd": json_usd(prepared.account.equity_usd)},
        "prompt": {"system": prepared.system, "user": prepared.user},
    }  # fmt: skip


def strategy_view(prepared: Prepared, settings: Settings) -> None:
    """A strategy's limits and context options, then the prompt as the model would receive it now."""
    data = preview_json(prepared, settings)
    table = Table(title=untrusted(f"Strategy {data['name']}: {data['description']}"))
    table.add_column("Setting")
    table.add_column("Value", overflow="fold")
    table.add_row("interval", f"{data['interval']} suits it; decisions every {settings.interval}")
    table.add_row("timeframes", ", ".join(data["timeframes"]))
    for section in ("limits", "context"):
        for key, value in data[section].items():
            table.add_row(f"{section}.{key}", json.dumps(value))
    caps = data["settings_caps"]
    table.add_row(
        "settings caps", f"leverage {caps['leverage']}, position {_usd_cell(caps['max_position_size_usd'])} USD"
    )
    console.print(table)
    console.print(Panel(untrusted(prepared.system), title="Prompt: system"))
    console.print(Panel(untrusted(prepared.user), title=f"Prompt: user (data as of {data['as_of']})"))
    console.print("Rendered on current data: no model was called and nothing was recorded.")


def _share(value: Any) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else "-"


AB_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("models", lambda a: ", ".join(a["models"]) or "-"),
    ("strategies", lambda a: ", ".join(a["strategies"]) or "-"),
    ("decisions", lambda a: str(a["decisions"])),
    ("asset decisions", lambda a: str(a["asset_decisions"])),
    ("accepted", lambda a: _share(a["accepted_share"])),
    ("amended", lambda a: _share(a["amended_share"])),
    ("rejected", lambda a: _share(a["rejected_share"])),
    ("model errors", lambda a: str(a["model_errors"])),
    ("venue errors", lambda a: str(a["venue_errors"])),
    ("executed (or partial)", lambda a: str(a["executed"])),
    ("dry runs", lambda a: str(a["dry_runs"])),
    ("mean latency ms", lambda a: _num(a["mean_latency_ms"], 5)),
    ("mean model latency ms", lambda a: _num(a["mean_model_latency_ms"], 5)),
    ("model cost USD", lambda a: _num(a["cost_usd"], 5)),
    ("cost per decision USD", lambda a: _num(a["cost_per_decision_usd"], 5)),
    ("decisions without a cost", lambda a: str(a["decisions_without_cost"])),
]


def ab_table(result: dict[str, Any]) -> None:
    """The A/B arms side by side over their common period, and what the comparison leaves out."""
    period = result["period"]
    if not result["arms"]:
        console.print(f"A/B comparison (account {result['account']}): {result['note']}")
        return
    table = Table(title=f"A/B arms, account {result['account']}, {period['start']} to {period['end']}")
    table.add_column("")
    for arm in result["arms"]:
        table.add_column(untrusted(arm["arm"]), overflow="fold")
    for label, cell in AB_ROWS:
        table.add_row(label, *(untrusted(cell(a)) for a in result["arms"]))
    console.print(table)
    console.print(result["note"])


# ---- stats ---------------------------------------------------------------------------------------------


def usd(value: Decimal | None, sign: bool = False) -> str:
    """A USD amount to the cent for the terminal, rounded half up ('-' when unknown)."""
    if value is None:
        return "-"
    cents = value.quantize(CENT, ROUND_HALF_UP)
    return f"{cents:+,.2f}" if sign else f"{cents:,.2f}"


def duration(ms: int | None) -> str:
    """A duration in the two largest units: '2d 3h', '3h 12m', '4m 5s'."""
    if ms is None:
        return "-"
    seconds = ms // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def _pct(value: float | None) -> str:
    return f"{value:.2f}%" if value is not None else "-"


def _pnl(value: Decimal | None) -> Text:
    if value is None:
        return Text("-")
    return Text(usd(value, sign=True), style="green" if value > 0 else ("red" if value < 0 else ""))


def _opt(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if value is not None else "-"


TRADING_ROWS: list[tuple[str, Callable[[TradingStats], str | Text]]] = [
    (
        "closed trades",
        lambda t: (
            f"{t.trades} ({t.wins} won, {t.losses} lost, {t.breakeven} even"
            + (f"; {t.adopted} adopted)" if t.adopted else ")")
        ),
    ),
    ("win rate", lambda t: _share(t.win_rate)),
    ("gross PnL", lambda t: _pnl(t.gross_pnl)),
    ("fees", lambda t: usd(t.fees) + (f" (liquidations {usd(t.liquidation_fees)})" if t.liquidation_fees else "")),
    ("funding", lambda t: _pnl(t.funding)),
    ("net PnL", lambda t: _pnl(t.net_pnl)),
    ("profit factor", lambda t: _opt(_ratio(t.profit_factor))),
    ("best / worst trade", lambda t: f"{usd(t.best_trade, True)} / {usd(t.worst_trade, True)}"),
    ("Sharpe (daily, annualized)", lambda t: _opt(t.sharpe)),
    ("equity start / end", lambda t: f"{usd(t.equity_start)} / {usd(t.equity_end)}"),
    ("max drawdown", lambda t: f"{usd(t.max_drawdown_usd)} ({_pct(t.max_drawdown_pct)})"),
    ("average hold", lambda t: duration(t.avg_hold_ms)),
    ("exposure", lambda t: _share(t.exposure)),
    ("liquidations", lambda t: str(t.liquidations)),
    ("open trades", lambda t: str(t.open_trades)),
]


def _decision_count(q: DecisionStats) -> str:
    manual = f"; closed by hand: {q.manual}" if q.manual else ""
    return f"{q.decisions} (dry runs: {q.dry_runs}{manual})"


def _cost(value: Decimal | None, missing: int = 0) -> str:
    if value is None:
        return "-"
    return f"${value:.4f}" + (f" (decisions without a cost: {missing})" if missing else "")


DECISION_ROWS: list[tuple[str, Callable[[DecisionStats], str]]] = [
    ("decisions", _decision_count),
    ("asset decisions", lambda q: str(q.asset_decisions)),
    ("accepted / amended / rejected",
     lambda q: " / ".join(_share(x) for x in (q.accepted_share, q.amended_share, q.rejected_share))),
    ("model errors / venue errors", lambda q: f"{q.model_errors} / {q.venue_errors}"),
    ("re-asks", lambda q: f"{q.reasks} (in {q.decisions_reasked} decisions)"),
    ("latency p50 / p95", lambda q: f"{_ms(q.latency_p50_ms)} / {_ms(q.latency_p95_ms)}"),
    ("model latency p50 / p95", lambda q: f"{_ms(q.model_latency_p50_ms)} / {_ms(q.model_latency_p95_ms)}"),
    ("tokens per decision", lambda q: _opt(q.tokens_per_decision, 0)),
    ("model cost", lambda q: _cost(q.cost_usd, q.decisions_without_cost)),
    ("cost per decision", lambda q: _cost(q.cost_per_decision_usd)),
    ("cost per trade opened", lambda q: _cost(q.cost_per_trade_usd)),
]  # fmt: skip


def _ms(value: int | None) -> str:
    return f"{value:,} ms" if value is not None else "-"


def _figures_table(title: str, columns: Sequence[str], rows: list[tuple[str, list[str | Text]]]) -> Table:
    table = Table(title=title)
    table.add_column("")
    for column in columns:
        table.add_column(untrusted(column), overflow="fold")
    for label, cells in rows:
        table.add_row(label, *cells)
    return table


def stats_view(s: AccountStats) -> None:
    """The trading figures, decision quality and calibration; then the same per group of ``--by``."""
    end = iso_utc(s.end_ms)[:16].replace("T", " ")
    period = (
        "nothing recorded yet" if s.start_ms is None else f"{iso_utc(s.start_ms)[:16].replace('T', ' ')} to {end} UTC"
    )
    console.print(Text.assemble(untrusted(f"Account {s.account} ({s.mode})", "bold"), f", {period}"))
    if s.trading.trades == 0:
        console.print("No closed trades yet.")
    else:
        rows = [(label, [cell(s.trading)]) for label, cell in TRADING_ROWS]
        console.print(_figures_table("Trading (closed trades, after fees and funding)", ["all"], rows))
    rows = [(label, [cell(s.decisions)]) for label, cell in DECISION_ROWS]
    console.print(_figures_table("Decision quality", ["all"], list(rows)))
    if s.calibration:
        calibration_table(s.calibration, "Confidence calibration (closed trades)")
    if s.by is not None and s.groups:
        keys = [g.key for g in s.groups]
        trading = [(label, [cell(g.trading) for g in s.groups]) for label, cell in TRADING_ROWS]
        console.print(_figures_table(f"Trading by {s.by}", keys, trading))
        quality: list[tuple[str, list[str | Text]]] = [
            (label, [cell(g.decisions) for g in s.groups]) for label, cell in DECISION_ROWS
        ]
        console.print(_figures_table(f"Decision quality by {s.by}", keys, quality))
        if s.by != "asset":
            console.print(f"Trades are counted under the {s.by} of the decision that opened them.")
    console.print("USD from the recorded fills and funding; net PnL is after every fee and funding payment.")


def calibration_table(buckets: Sequence[CalibrationBucket], title: str) -> None:
    table = Table(title=title)
    for column in ("Confidence", "Trades", "Wins", "Hit rate", "Mean confidence"):
        table.add_column(column)
    for b in buckets:
        table.add_row(b.label, str(b.trades), str(b.wins), _share(b.hit_rate), _opt(b.mean_confidence))
    console.print(table)


def equity_chart(curve: Sequence[EquityPoint], width: int = 64, height: int = 12) -> list[str]:
    """The equity curve as text: a step line over time (box-drawing characters), labelled axes.

    The time axis runs from the curve's start to its last closed trade (the equity only moves when a
    trade closes, so nothing is lost after it). Column c shows the equity at the time
    start + c × (end − start) / (width − 1): that of the last point at or before it. Rows split the range
    from the lowest to the highest equity evenly.
    """
    if not curve:
        return []
    start, end = curve[0].time_ms, curve[-1].time_ms
    values = [p.equity for p in curve]
    lo, hi = min(values), max(values)
    span = end - start
    columns: list[Decimal] = []
    k = 0
    for c in range(width):
        t = start + (span * c) // (width - 1) if span else end
        while k + 1 < len(curve) and curve[k + 1].time_ms <= t:
            k += 1
        columns.append(curve[k].equity)
    # the last point is shown even when it falls between two columns
    columns[-1] = curve[-1].equity

    def row_of(v: Decimal) -> int:
        return round((v - lo) / (hi - lo) * (height - 1)) if hi > lo else height // 2

    grid = [[" "] * width for _ in range(height)]
    prev = row_of(columns[0])
    for c, v in enumerate(columns):
        r = row_of(v)
        if r == prev:
            grid[r][c] = "─"
        else:
            step = 1 if r > prev else -1
            grid[prev][c] = "╯" if step > 0 else "╮"
            for between in range(prev + step, r, step):
                grid[between][c] = "│"
            grid[r][c] = "╭" if step > 0 else "╰"
        prev = r
    labels = {height - 1: usd(hi), 0: usd(lo)}
    if height > 2:
        labels[(height - 1) // 2] = usd(lo + (hi - lo) * Decimal((height - 1) // 2) / Decimal(height - 1))
    pad = max(len(x) for x in labels.values())
    lines = [f"{labels.get(r, ''):>{pad}} ┤{''.join(grid[r])}" for r in range(height - 1, -1, -1)]
    first, last = (iso_utc(ms)[:16].replace("T", " ") for ms in (start, end))
    lines.append(" " * pad + " └" + "─" * width)
    lines.append(" " * (pad + 2) + first + last.rjust(width - len(first)))
    return lines


def equity_plot(s: AccountStats, to_stderr: bool = False) -> None:
    """The equity curve drawn in the terminal (on stderr with ``--json``, so stdout stays one object)."""
    target = err_console if to_stderr else console
    lines = equity_chart(s.trading.curve, width=max(20, min(100, target.width - 16)))
    if s.trading.trades == 0 or not lines:
        target.print("No closed trades yet: no equity curve to draw.")
        return
    what = "USD, after fees and funding" if s.trading.equity_start is not None else "cumulative net PnL, USD"
    target.print(untrusted(f"Equity curve ({what}), account {s.account}"))
    target.print("\n".join(lines), highlight=False, markup=False)


def write_equity_csv(path: Path, curve: Sequence[EquityPoint]) -> None:
    """The equity curve as CSV: time (ISO UTC), time_ms, equity_usd, drawdown_usd, drawdown_pct; exact amounts."""
    import csv

    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["time", "time_ms", "equity_usd", "drawdown_usd", "drawdown_pct"])
        for p in curve:
            pct = "" if p.drawdown_pct is None else f"{p.drawdown_pct:.6f}"
            out.writerow([iso_utc(p.time_ms), p.time_ms, _money(p.equity), _money(p.drawdown_usd), pct])


CYCLE_OUTCOME_STYLE = {
    "traded": "green",
    "held": "cyan",
    "model_error": "red",
    "risk_veto": "yellow",
    "exchange_reject": "red",
    "skipped": "yellow",
    "unprotected": "bold white on red",
}


def _guard_lines(guards: dict[str, Any]) -> tuple[Text, Text]:
    """The kill switches and the circuit breaker of ``guards.describe``, as two cells."""
    kill = Text()
    drawdown, daily, budget = guards["drawdown"], guards["daily_loss"], guards["budget"]
    tripped = [
        (drawdown["stopped"], f"drawdown STOPPED since {drawdown['since']}: {drawdown['reason']}"),
        (daily["tripped"], f"daily loss TRIPPED: {daily['reason']}"),
        (budget["reached"], f"model budget REACHED: {budget['reason']}"),
    ]
    for on, line in tripped:
        if on:
            kill.append_text(untrusted(("\n" if kill else "") + line, "bold red"))
    if not kill:
        kill.append("all clear", style="green")
    circuit = guards["circuit"]
    state = circuit["state"]
    cell = Text(state.replace("_", "-"), style={"closed": "green", "open": "bold red"}.get(state, "yellow"))
    if state == "open":
        cell.append(f" until {circuit['until']}")
    if circuit["consecutive_failures"]:
        cell.append(f" ({circuit['consecutive_failures']} consecutive model failures)")
    if state != "closed" and circuit["last_error"]:
        cell.append_text(untrusted(f"\nlast error: {circuit['last_error']}"))
    return kill, cell


def status_view(rows: list[dict[str, Any]]) -> None:
    """``llmtrader status``: one table per account, and a warning for each one deciding without an LLM."""
    for row in rows:
        if row["baseline_fallback"]:
            warning(
                f"account {row['account']!r}: no model key: decisions come from the built-in 'baseline' rules, "
                "not from an LLM (set OPENROUTER_API_KEY or LLM_API_KEY)"
            )
    for row in rows:
        mode = Text("LIVE", style="bold red") if row["mode"] == "live" else Text("paper", style="cyan")
        table = Table(title=Text.assemble(untrusted(f"Account {row['account']} ("), mode, ")"), show_header=False)
        table.add_column("Field", style="bold")
        table.add_column("Value", overflow="fold")
        if row["running"]:
            table.add_row("agent", Text(f"running (pid {row['pid']})", style="green"))
        else:
            table.add_row("agent", Text("not running (start it with `llmtrader run`)", style="yellow"))
        source = "chosen with `strategy use`" if row["strategy_source"] == "chosen" else "configured"
        table.add_row("strategy", untrusted(f"{row['strategy']} ({source})"))
        model = untrusted(row["model"], "bold yellow" if row["baseline_fallback"] else "")
        table.add_row("model", model)
        table.add_row("interval", untrusted(f"{row['interval']} on {', '.join(row['assets'])}"))
        last = row["last_cycle"]
        if last is None:
            table.add_row("last cycle", Text("none yet", style="dim"))
        else:
            cell = Text(f"{last['started_at']}  ")
            cell.append_text(untrusted(last["outcome"], CYCLE_OUTCOME_STYLE.get(last["outcome"], "")))
            if last["cached"]:
                cell.append(" (cached decision)")
            took = last["duration_ms"]
            if took is not None:
                cell.append(f"  in {took / 1000:.1f} s" if took < 60_000 else f"  in {duration(took)}")
            if last["decision_id"]:
                cell.append(f"  decision {last['decision_id']}")
            if last["reason"]:
                cell.append_text(untrusted(f"\n{last['reason']}", "dim"))
            table.add_row("last cycle", cell)
        table.add_row(
            "next cycle", row["next_cycle"] if row["running"] else f"{row['next_cycle']} (if it runs by then)"
        )
        equity = row["equity_usd"]
        table.add_row("equity", f"{_usd_cell(equity)} USD (at the last cycle)" if equity is not None else "-")
        positions = row["open_positions"]
        table.add_row(
            "open positions",
            str(positions) if positions is not None else "not known here (live): `llmtrader positions` asks the venue",
        )
        if last is not None and last["outcome"] == "unprotected":
            # The reason names the symbols left open without a stop (see llmtrader.cycle).
            table.add_row("UNPROTECTED", Text(str(last["reason"] or "a position has no stop-loss"), style="bold red"))
        if row.get("paused"):  # from serve or Telegram: positions still protected, no decision
            cell = untrusted(str(row["paused"]), "bold yellow")
            cell.append("\nstops still kept; no decision until resumed")
            table.add_row("PAUSED", cell)
        kill, circuit = _guard_lines(row["guards"])
        table.add_row("kill switches", kill)
        table.add_row("circuit breaker", circuit)
        notes = row.get("notifications")  # llmtrader.notify: deliveries that failed or wait for a retry
        if notes and (notes["failed"] or notes["retrying"]):
            cell = Text(f"{notes['failed']} failed, {notes['retrying']} retrying, {notes['pending']} pending", "yellow")
            cell.append_text(untrusted(f"\n{notes['last_error']}", "dim"))
            table.add_row("notifications", cell)
        console.print(table)


# ---- backtests --------------------------------------------------------------------------------------------


def _pct_text(value: Any, digits: int = 2) -> str:
    return f"{value:+.{digits}f}%" if isinstance(value, (int, float)) else "-"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def backtest_view(
    run: Any, equity: Sequence[tuple[int, float, float, int]], changes: Sequence[Any], *, to_stderr: bool = False
) -> None:
    """A stored run: what ran, its figures against buy-and-hold, the equity curve, notes, and a replay's
    changed verdicts."""
    from llmtrader.backtest.figures import equity_points
    from llmtrader.core.times import utc_minute

    target = err_console if to_stderr else console
    spec, m = run.spec, run.metrics or {}
    style = {"finished": "green", "interrupted": "yellow", "stopped": "yellow", "failed": "red"}.get(run.status, "")
    title = Text.assemble(f"backtest {run.id} ", (run.status, style))
    if run.replay_of:
        title.append(f"  (replay of {run.replay_of})", style="cyan")
    target.print(title)
    period = f"{utc_minute(m['start_ms'])} to {utc_minute(m['end_ms'])}" if m else "no step made"
    what = f"{', '.join(spec['symbols'])} · {spec['interval']} · strategy {spec['strategy']} · model {spec['model']}"
    target.print(untrusted(f"{what} · {run.steps_done} steps · {period}"))
    if m:
        bh = m.get("buy_and_hold_pct", {})
        table = Table(title="Results", show_header=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        rows = [
            ("Equity", f"{_usd_cell(m['start_equity_usd'])} -> {_usd_cell(m['end_equity_usd'])} USD"),
            ("Total return", _pct_text(m["total_return_pct"])),
            ("Buy and hold (equal weights)", _pct_text(bh.get("portfolio"))),
            *((f"  buy and hold {s}", _pct_text(v)) for s, v in bh.items() if s != "portfolio"),
            ("Sharpe (daily, annualized)", _opt(m.get("sharpe"))),
            ("Maximum drawdown", f"{m['max_drawdown_pct']:.2f}%"),
            ("Closed trades", f"{m['trades']} (open at the end: {m['open_at_end']})"),
            ("Win rate", _share(m.get("win_rate"))),
            ("Profit factor", _opt(m.get("profit_factor"))),
            ("Time in the market", f"{m['exposure_time_pct']:.1f}% of steps"),
            ("Average gross exposure", f"{m['avg_gross_exposure_pct']:.1f}% of equity"),
            ("Flat (cash)", _pct_text(m.get("flat_pct", 0.0))),
            *([("Baseline (same strategy)", _pct_text(m["baseline_pct"]))] if "baseline_pct" in m else []),
            ("Fees paid", f"{_usd_cell(m['fees_usd'])} USD"),
            *([("Slippage paid", f"{_usd_cell(m['slippage_usd'])} USD")] if "slippage_usd" in m else []),
            ("Funding paid (net)", f"{_usd_cell(m['funding_usd'])} USD ({m['funding_settlements']} settlements)"),
            ("Model cost", f"{fmt(m['model_cost_usd'])} USD ({m['model_decisions']} decisions)"),
            ("Cycles", _counts(m.get("cycles", {}))),
            ("Validation (non-hold)", _counts(m.get("asset_decisions", {}))),
            ("Fills", _counts(m.get("fills_by_reason", {}))),
        ]  # fmt: skip
        for name, value in rows:
            table.add_row(name, value)
        target.print(table)
        lines = equity_chart(
            equity_points(float(m["start_equity_usd"]), int(m["start_ms"]), equity),
            width=max(20, min(100, target.width - 16)),
        )
        if lines:
            target.print("Equity (USD, marked to market at every step)", highlight=False)
            target.print("\n".join(lines), highlight=False, markup=False)
        for name, text in m.get("definitions", {}).items():
            target.print(untrusted(f"{name}: {text}", "dim"))
        for event in m.get("guard_events", [])[:10]:
            target.print(untrusted(f"guard {event['time'][:16]} {event['kind']}: {event['message']}", "yellow"))
    for note in run.notes:
        target.print(untrusted(f"note: {note}", "dim"))
    if run.replay_of:
        target.print(f"The validator judged {len(changes)} asset decision(s) differently from run {run.replay_of}.")
        for c in changes[:20]:
            why = "; ".join(c.reasons[:2])
            target.print(
                untrusted(
                    f"  {iso_utc(c.time_ms)[:16]} {c.symbol} {c.action}: {c.before} -> {c.after}"
                    + (f" ({why})" if why else "")
                )
            )
        if len(changes) > 20:
            target.print(f"  ... and {len(changes) - 20} more (--json lists them all)")


def backtest_runs_table(rows: Sequence[Any]) -> None:
    if not rows:
        console.print("No backtest yet: run `llmtrader backtest --data DIR`.")
        return
    table = Table(title="Backtests (newest first)")
    table.add_column("Run", no_wrap=True)  # whole: it is what `backtest show` takes
    table.add_column("What ran")
    for column in ("Steps", "Return", "B&H", "Max DD", "Trades"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in rows:
        m = r.metrics or {}
        spec = r.spec
        what = f"{','.join(s.removesuffix('USDT') for s in spec['symbols'])} {spec['interval']} {spec['strategy']}"
        what += f"\n{spec['model']}" + (f"\nreplay of {r.replay_of}" if r.replay_of else "")
        table.add_row(
            f"{r.id}\n{r.status}\n{r.created_at[:16].replace('T', ' ')}",
            untrusted(what),
            str(r.steps_done),
            _pct_text(m.get("total_return_pct")),
            _pct_text(m.get("buy_and_hold_pct", {}).get("portfolio")),
            f"{m['max_drawdown_pct']:.1f}%" if m else "-",
            str(m.get("trades", "-")),
        )
    console.print(table)
