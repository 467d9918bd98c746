"""Terminal and JSON rendering of decisions, history and audit records (rich)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmtrader.errors import LLMTraderError, ModelError
from llmtrader.formatting import fmt
from llmtrader.storage.records import DecisionRecord, iso_utc

if TYPE_CHECKING:
    from llmtrader.config import Settings
    from llmtrader.engine import CatalogEntry, Prepared
    from llmtrader.execution import ExecutionReport

console = Console()
err_console = Console(stderr=True)
STATUS_STYLE = {"accepted": "green", "amended": "yellow", "rejected": "red"}
OUTCOME_STYLE = {"decided": "green", "all_rejected": "yellow", "model_error": "red", "venue_error": "red"}
EXECUTION_STYLE = {
    "executed": "green",
    "partial": "yellow",
    "failed": "red",
    "emergency": "bold white on red",
    "declined": "yellow",
    "dry_run": "cyan",
}
LEG_STYLE = {"filled": "green", "acknowledged": "green", "rejected": "red", "failed": "red", "unknown": "yellow",
             "not_sent": "red", "canceled": "dim", "sending": "yellow"}  # fmt: skip


def warning(message: str) -> None:
    err_console.print(Panel(Text(message, style="bold yellow"), title="warning", border_style="yellow"))


def _num(value: Any, digits: int = 7) -> str:
    return fmt(float(value), digits) if isinstance(value, (int, float)) else "-"


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
                    "executed_qty": str(leg.state.executed_qty) if leg.state else None,
                    "avg_price": str(leg.state.avg_price) if leg.state else None,
                }
                for leg in a.legs
            ],
            "notes": a.notes,
        }
        for a in report.assets
    ]


def decision_json(rec: DecisionRecord, execution: ExecutionReport | None = None) -> dict[str, Any]:
    """The ``decide --json`` object."""
    return {
        "decision_id": rec.id,
        "created_at": iso_utc(rec.created_at_ms),
        "account": rec.account,
        "mode": rec.mode,
        "dry_run": rec.dry_run,
        "executed": rec.execution in ("executed", "partial", "emergency"),
        "execution": rec.execution,
        "orders": execution_json(execution),
        "strategy": rec.strategy,
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


def failure_json(exc: LLMTraderError) -> dict[str, Any]:
    """The ``--json`` object printed when a decision failed after being recorded."""
    outcome = "model_error" if isinstance(exc, ModelError) else "venue_error"
    return {"decision_id": exc.decision_id, "outcome": outcome, "error": str(exc)}


def _validation_cell(status: str, reasons: list[str]) -> Text:
    text = Text(status, style=STATUS_STYLE.get(status, ""))
    for reason in reasons:
        text.append(f"\n- {reason}", style="dim")
    return text


def execution_table(report: ExecutionReport) -> None:
    """What was sent for each asset, and what became of it; emergencies stand out."""
    table = Table(title="Execution")
    for column in ("Symbol", "Action", "Outcome", "Orders", "Notes"):
        table.add_column(column, overflow="fold")
    for a in report.assets:
        orders = Text()
        for i, leg in enumerate(a.legs):
            if i:
                orders.append("\n")
            orders.append(f"{leg.name}: {leg.description} ")
            orders.append(leg.status, style=LEG_STYLE.get(leg.status, ""))
            if leg.state is not None and leg.state.executed_qty > 0:
                orders.append(f" {leg.state.executed_qty.normalize():f} @ {leg.state.avg_price.normalize():f}")
            if leg.code is not None:
                orders.append(f" (code {leg.code}: {leg.message})", style="red")
        table.add_row(
            a.symbol, a.action, Text(a.outcome, style=EXECUTION_STYLE.get(a.outcome, "")), orders, "\n".join(a.notes)
        )
    console.print(table)
    for a in report.assets:
        if a.emergency:
            emergency_panel(a.symbol, [n for n in a.notes if n.startswith("emergency")])


def emergency_panel(symbol: str, lines: list[str]) -> None:
    body = "\n".join(lines) or "the stop-loss could not be placed"
    console.print(Panel(Text(body, style="bold white"), title=f"EMERGENCY {symbol}", style="on red"))
    err_console.print(f"EMERGENCY on {symbol}: {body}", style="bold red", highlight=False)


def decision_table(rec: DecisionRecord, execution: ExecutionReport | None = None) -> None:
    arm = f", A/B arm {rec.arm}" if rec.arm else ""
    table = Table(title=f"Decision {rec.id} ({rec.model}, strategy {rec.strategy}{arm}, {rec.mode})")
    for column in ("Symbol", "Action", "Alloc USD", "Lev", "Entry", "TP", "SL", "Conf", "Validation"):
        table.add_column(column, overflow="fold")
    for a in rec.assets:
        table.add_row(
            a.symbol,
            a.action,
            _num(a.allocation_usd),
            str(a.leverage) if a.leverage is not None else "-",
            _num(a.entry_price) if a.entry_price is not None else ("market" if a.action in ("buy", "sell") else "-"),
            _num(a.tp_price),
            _num(a.sl_price),
            _num(a.confidence, 2),
            _validation_cell(a.status, a.reasons),
        )
    console.print(table)
    if rec.portfolio_rationale:
        console.print(Panel(rec.portfolio_rationale, title="Portfolio rationale"))
    for note in rec.notes:
        console.print(f"[yellow]note:[/] {note}")
    cost = f"${rec.cost_usd:.4f}" if rec.cost_usd is not None else "unknown"
    console.print(
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
    console.print(line)


def _strategy_cell(row: dict[str, Any]) -> str:
    arm = row.get("arm")
    return f"{row.get('strategy') or '-'}" + (f" (arm {arm})" if arm else "")


def history_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("No decisions recorded yet.")
        return
    table = Table(title="Decisions, newest first")
    for column in (
        "Time (UTC)",
        "ID",
        "Model",
        "Strategy",
        "Outcome",
        "Symbol",
        "Action",
        "Status",
        "Alloc",
        "Lev",
        "Conf",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        assets = row["assets"] or [{}]
        for i, a in enumerate(assets):
            first = i == 0
            table.add_row(
                row["created_at"][:19].replace("T", " ") if first else "",
                row["decision_id"] if first else "",
                row["model"] if first else "",
                _strategy_cell(row) if first else "",
                Text(row["outcome"], style=OUTCOME_STYLE.get(row["outcome"], "")) if first else "",
                a.get("symbol", "-"),
                a.get("action", "-"),
                Text(a.get("status", "-"), style=STATUS_STYLE.get(a.get("status", ""), "")),
                _num(a.get("allocation_usd")),
                str(a.get("leverage") or "-"),
                _num(a.get("confidence"), 2),
            )
    console.print(table)


def record_view(rec: dict[str, Any]) -> None:
    cost = rec.get("cost_usd")
    header = "\n".join(
        [
            f"id {rec['decision_id']}   time {rec['created_at']}   account {rec['account']}   mode {rec['mode']}"
            f"{'   dry run' if rec.get('dry_run') else ''}",
            f"strategy {_strategy_cell(rec)}   model {rec['model']}   endpoint {rec['base_url']}   "
            f"equity {_num(rec.get('equity_usd'))} USD",
            f"outcome {rec['outcome']}   execution {rec.get('execution') or '-'}   "
            f"tokens {rec.get('prompt_tokens')} in / {rec.get('completion_tokens')} out   "
            f"cost {f'${cost:.4f}' if isinstance(cost, (int, float)) else 'unknown'}   "
            f"re-asks {rec.get('reasks')}   latency {rec.get('latency_ms')} ms",
        ]
    )
    console.print(Panel(header, title="Decision"))
    if rec.get("error"):
        console.print(Panel(Text(rec["error"], style="bold red"), title="Error"))
    prompt = rec.get("prompt") or {}
    if prompt.get("system"):
        console.print(Panel(Text(prompt["system"]), title="Prompt: system"))
    if prompt.get("user"):
        console.print(Panel(Text(prompt["user"]), title="Prompt: user"))
    if rec.get("raw_response"):
        console.print(Panel(Text(rec["raw_response"]), title="Raw response"))
    if rec.get("assets"):
        table = Table(title="Validation")
        for column in (
            "Symbol",
            "Action",
            "Alloc USD",
            "Lev",
            "Entry",
            "TP",
            "SL",
            "Conf",
            "Mark",
            "Validation",
        ):
            table.add_column(column, overflow="fold")
        for a in rec["assets"]:
            table.add_row(
                a["symbol"], a["action"], _num(a.get("allocation_usd")), str(a.get("leverage") or "-"),
                _num(a.get("entry_price")), _num(a.get("tp_price")), _num(a.get("sl_price")),
                _num(a.get("confidence"), 2), _num(a.get("mark_price")),
                _validation_cell(a["status"], a.get("reasons") or []),
            )  # fmt: skip
        console.print(table)
    for note in rec.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}")
    if rec.get("parse_errors"):
        console.print("[yellow]schema errors in the last answer:[/]")
        for line in rec["parse_errors"]:
            console.print(f"  - {line}")
    events = rec.get("events") or []
    emergencies = [e for e in events if e["kind"] == "emergency"]
    if emergencies:
        emergency_panel(emergencies[0]["symbol"] or "-", [e["message"] for e in emergencies])
    orders = rec.get("orders") or []
    if orders:
        table = Table(title=f"Orders (execution: {rec.get('execution') or '-'})")
        for column in ("Time", "Symbol", "Leg", "Client order id", "Request", "Status", "Filled", "Venue answer"):
            table.add_column(column, overflow="fold")
        for o in orders:
            request = o.get("request") or {}
            shown = " ".join(
                str(request.get(k)) for k in ("side", "type", "quantity", "price", "stopPrice") if request.get(k)
            )
            filled = f"{o['executed_qty']} @ {o['avg_price']}" if o.get("executed_qty") not in (None, "0") else "-"
            answer = (
                f"{o['venue_code']}: {o['venue_message']}"
                if o.get("venue_code") is not None
                else (o.get("venue_message") or "")
            )
            table.add_row(
                o["created_at"][11:19], o["symbol"], o["leg"], o["client_order_id"], shown,
                Text(o["status"], style=LEG_STYLE.get(o["status"], "")), filled, answer,
            )  # fmt: skip
        console.print(table)
    if events:
        table = Table(title="Execution events")
        for column in ("Time", "Symbol", "Kind", "Message"):
            table.add_column(column, overflow="fold")
        for e in events:
            style = "bold red" if e["kind"] == "emergency" else ("yellow" if e["kind"] == "rejection" else "")
            table.add_row(e["created_at"][11:19], e["symbol"] or "-", Text(e["kind"], style=style), e["message"])
        console.print(table)
    calls = rec.get("llm_calls") or []
    if calls:
        table = Table(title="Model calls")
        for column in ("#", "Format", "Tokens in/out", "Cost", "Latency ms", "Finish", "Error"):
            table.add_column(column, overflow="fold")
        for c in calls:
            call_cost = c.get("cost_usd")
            table.add_row(
                str(c["attempt"]), c.get("response_format") or "-",
                f"{c.get('prompt_tokens', 0)}/{c.get('completion_tokens', 0)}",
                f"${call_cost:.4f}" if isinstance(call_cost, (int, float)) else "-",
                str(c.get("latency_ms")), c.get("finish_reason") or "-", c.get("error") or "",
            )  # fmt: skip
        console.print(table)


def settings_table(data: dict[str, Any]) -> None:
    table = Table(title="Effective settings (secrets redacted)")
    table.add_column("Setting")
    table.add_column("Value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if not isinstance(value, str) else value)
    console.print(table)


def positions_table(rows: list[dict[str, Any]], mode: str) -> None:
    if not rows:
        console.print(f"No open positions ({mode}).")
        return
    table = Table(title=f"Open positions ({mode})")
    for column in ("Symbol", "Side", "Size", "Entry", "Mark", "Unrealized PnL", "Liq. price", "Lev", "Stop", "Target"):
        table.add_column(column, overflow="fold")
    for p in rows:
        pnl = float(p["unrealized_pnl"])
        stop = p["stop_loss"] or Text("NONE", style="bold white on red")
        table.add_row(
            p["symbol"], p["side"], p["size"], p["entry_price"], p["mark_price"],
            Text(f"{pnl:+.2f}", style="green" if pnl >= 0 else "red"), p["liquidation_price"] or "-",
            str(p["leverage"]), stop, p["take_profit"] or "-",
        )  # fmt: skip
    console.print(table)


def checklist(checks: list[Any]) -> None:
    marks = {"ok": ("✔", "green"), "warn": ("!", "yellow"), "fail": ("✘", "bold red")}
    for c in checks:
        mark, style = marks[c.status]
        console.print(f"[{style}]{mark}[/] [bold]{c.name}[/]: {c.detail}", highlight=False)
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


def strategies_table(entries: list[CatalogEntry], account: str, in_force: str, source: str) -> None:
    """Every available strategy with its key limits; the one in force marked; a broken file with its error."""
    how = "chosen with `strategy use`" if source == "chosen" else "the configured `strategy`"
    table = Table(title=f"Strategies (account {account}: {in_force}, {how})")
    for column in ("", "Name", "Source", "Interval", "Timeframes", "Max lev", "Min conf", "Min R/R", "Description"):
        table.add_column(column, overflow="fold")
    for e in entries:
        mark = Text("*", style="bold green") if e.in_force else ""
        st = e.strategy
        if st is None:
            table.add_row(mark, e.name, e.source, "-", "-", "-", "-", "-", Text(e.error or "", style="red"))
            continue
        table.add_row(
            mark, e.name, e.source, st.interval, ", ".join(st.timeframes), str(st.limits.max_leverage),
            fmt(st.limits.min_confidence), fmt(st.limits.min_reward_risk), st.description,
        )  # fmt: skip
    console.print(table)
    console.print(f"* in force for account {account}; switch with `llmtrader strategy use NAME`.")
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
                    "equity_usd": prepared.account.equity_usd},
        "prompt": {"system": prepared.system, "user": prepared.user},
    }  # fmt: skip


def strategy_view(prepared: Prepared, settings: Settings) -> None:
    """A strategy's limits and context options, then the prompt as the model would receive it now."""
    data = preview_json(prepared, settings)
    table = Table(title=f"Strategy {data['name']}: {data['description']}")
    table.add_column("Setting")
    table.add_column("Value", overflow="fold")
    table.add_row("interval", f"{data['interval']} suits it; decisions every {settings.interval}")
    table.add_row("timeframes", ", ".join(data["timeframes"]))
    for section in ("limits", "context"):
        for key, value in data[section].items():
            table.add_row(f"{section}.{key}", json.dumps(value))
    caps = data["settings_caps"]
    table.add_row("settings caps", f"leverage {caps['leverage']}, position {fmt(caps['max_position_size_usd'])} USD")
    console.print(table)
    console.print(Panel(Text(prepared.system), title="Prompt: system"))
    console.print(Panel(Text(prepared.user), title=f"Prompt: user (data as of {data['as_of']})"))
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
    ("cost per decision USD", lambda a: _num(a["cost_usd_per_decision"], 5)),
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
        table.add_column(arm["arm"], overflow="fold")
    for label, cell in AB_ROWS:
        table.add_row(label, *(cell(a) for a in result["arms"]))
    console.print(table)
    console.print(result["note"])
