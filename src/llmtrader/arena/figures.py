"""Pictures of an arena: every equity curve in one terminal chart (80 columns), the leaderboard tables, and
one self-contained HTML report (inline SVG, no script, no network; every text we did not write escaped)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from llmtrader.core.formatting import safe_text

MARKERS = "B*ox+#@%&=~^"  # the baseline first; buy-and-hold and flat get their own
WIDTH = 80


def _day(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def curves_of(doc: dict[str, Any]) -> dict[str, list[list[float]]]:
    """Every curve to draw: the contestants', buy-and-hold and flat, by name."""
    mine = {name: points for name, points in doc["curves"].items() if points}
    curves: dict[str, list[list[float]]] = {}
    every = [p for points in mine.values() for p in points]
    if every:  # the references first: the contestants are drawn over them
        start = float(doc["spec"]["balance_usd"])
        curves["flat"] = [[min(p[0] for p in every), start], [max(p[0] for p in every), start]]
    bh = doc["references"]["buy_and_hold"]["curve"]
    if bh:
        curves["buy-and-hold"] = bh
    curves.update(mine)
    return curves


def terminal_chart(curves: dict[str, list[list[float]]], width: int = WIDTH, height: int = 14) -> list[str]:
    """The curves on one text grid (each its own marker, a later one drawn over an earlier one), a value axis
    on the left, the period below and a legend: no line longer than ``width``."""
    if not curves:
        return []
    label = 10
    cols = width - label - 2
    t0 = min(p[0] for c in curves.values() for p in c)
    t1 = max(p[0] for c in curves.values() for p in c)
    low = min(p[1] for c in curves.values() for p in c)
    high = max(p[1] for c in curves.values() for p in c)
    if high <= low:
        high = low + 1
    grid = [[" "] * cols for _ in range(height)]
    markers: dict[str, str] = {}
    for name, points in curves.items():
        own = len([n for n in markers if n not in ("flat", "buy-and-hold", "baseline")])
        others = MARKERS[1:]  # "B" is the baseline's alone
        mark = (
            "-" if name == "flat" else "=" if name == "buy-and-hold" else "B" if name == "baseline"
            else others[own % len(others)]
        )  # fmt: skip
        markers[name] = mark
        times = np.array([p[0] for p in points], dtype=np.float64)
        values = np.array([p[1] for p in points], dtype=np.float64)
        for c in range(cols):
            at = t0 + (t1 - t0) * c / max(cols - 1, 1)
            i = int(np.searchsorted(times, at, "right")) - 1
            if i < 0:
                continue
            row = round((high - values[i]) / (high - low) * (height - 1))
            grid[row][c] = mark
    lines = []
    for r, cells in enumerate(grid):
        value = high - (high - low) * r / (height - 1)
        text = f"{value:,.0f}" if r in (0, height // 2, height - 1) else ""
        lines.append(f"{text:>{label}} ┤" + "".join(cells))
    lines.append(" " * label + " └" + "─" * cols)
    first, last = _day(t0), _day(t1)
    lines.append(" " * (label + 2) + first + " " * max(1, cols - len(first) - len(last)) + last)
    legend = "  ".join(f"{m} {safe_text(n, multiline=False)[:20]}" for n, m in markers.items())
    while legend:
        lines.append(legend[:width])
        legend = legend[width:]
    return lines


def _pct(value: Any) -> str:
    return f"{value:+.2f}%" if isinstance(value, (int, float)) else "-"


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _pct_of(value: Any, digits: int = 2) -> str:
    return _num(value, digits) + "%" if isinstance(value, (int, float)) else "-"


def _edge(edge: dict[str, Any]) -> str:
    ci = edge.get("ci95_pct")
    if ci is None:
        return str(edge.get("verdict", "-"))
    return f"{edge['verdict']} [{ci[0]:+.1f},{ci[1]:+.1f}]"


def tables(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The leaderboard as (title, columns, rows) tables, each narrow enough for 80 columns."""
    refs = doc["references"]
    bh, flat = refs["buy_and_hold"], refs["flat"]
    results = [
        [
            c["model"],
            _pct(c["return_pct"]),
            _pct(c["excess_over_buy_and_hold_pct"]),
            _num(c["sharpe"]),
            _pct_of(c["max_drawdown_pct"]),
            str(c["trades"]),
            _pct_of(c["win_rate"] * 100 if c["win_rate"] is not None else None, 0),
            _num(c["profit_factor"]),
        ]
        for c in doc["contestants"]
    ]
    results.append(
        [
            "buy-and-hold",
            _pct(bh["return_pct"]),
            "+0.00%",
            _num(bh["sharpe"]),
            _pct_of(bh["max_drawdown_pct"]),
            "-",
            "-",
            "-",
        ]
    )
    results.append(
        ["flat (cash)", _pct(flat["return_pct"]), _pct(-(bh["return_pct"] or 0.0)), "-", "0.00%", "0", "-", "-"]
    )
    costs = [
        [
            c["model"],
            _num(c["fees_usd"]),
            _num(c["funding_usd"]),
            _num(c["slippage_usd"]),
            _num(c["model_cost_usd"], 4),
            _num(c["cost_per_trade_usd"], 4),
            str(c["prompt_tokens"] + c["completion_tokens"]),
            f"{_num(c['latency_p50_ms'], 0)}/{_num(c['latency_p95_ms'], 0)}",
        ]
        for c in doc["contestants"]
    ]
    shares = [
        [
            c["model"],
            str(c["parse_failures"]),
            str(c["reasks"]),
            "/".join(_num((c["shares"][k] or 0) * 100, 0) for k in ("accepted", "amended", "rejected")),
            _num(c["brier"], 3),
        ]
        for c in doc["contestants"]
    ]
    edges = [
        [c["model"], "-" if c["model"] == "baseline" else _edge(c["edge_over_baseline"]),
         _edge(c["edge_over_buy_and_hold"])]
        for c in doc["contestants"]
    ]  # fmt: skip
    return [
        ("Results", ["Contestant", "Return", "vs B&H", "Sharpe", "Max DD", "Trades", "Win", "PF"], results),
        (
            "Costs (USD; Fund: funding, Slip: slippage; model latency in ms)",
            ["Contestant", "Fees", "Fund", "Slip", "Model", "/trade", "Tokens", "p50/p95"],
            costs,
        ),
        ("Answers", ["Contestant", "Parse fail", "Re-asks", "Acc/Amd/Rej %", "Brier"], shares),
        (
            "Edge: summed daily excess %, [95% interval]",
            ["Contestant", "vs baseline", "vs buy-and-hold"],
            edges,
        ),
    ]


def view(doc: dict[str, Any]) -> None:
    """The leaderboard, the chart and the definitions on the terminal (80 columns)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=min(WIDTH, Console().width))
    spec = doc["spec"]
    if doc.get("live"):
        since = f" since {doc['since'][:10]}" if doc.get("since") else ""
        console.print(Text(f"live paper accounts{since} · to {(doc['created_at'] or '')[:16]}"))
        what = (
            f"{', '.join(spec['symbols']) or 'no symbol in common'} · {spec['interval']} · "
            f"strategy {spec['strategy']} · {doc['days']} days"
        )
        console.print(Text(safe_text(what)))
        for name, model in spec["accounts"].items():
            console.print(Text(safe_text(f"  {name}: {model}", multiline=False)))
    else:
        console.print(Text(f"arena {doc['arena']} · {doc['created_at'][:16]}"))
        what = (
            f"{', '.join(spec['symbols'])} · {spec['interval']} · strategy {spec['strategy']} · "
            f"{spec['balance_usd']:g} USD · {doc['days']} days"
        )
        console.print(Text(safe_text(what)))
    for title, columns, rows in tables(doc):
        table = Table(title=title, title_justify="left")
        for i, column in enumerate(columns):
            table.add_column(
                column, justify="left" if i == 0 else "right", no_wrap=i > 0, max_width=18 if i == 0 else None
            )
        for row in rows:
            table.add_row(*(Text(safe_text(cell, multiline=False)) for cell in row))
        console.print(table)
    for c in doc["contestants"]:
        if c["replay_of"]:
            console.print(
                Text(
                    safe_text(
                        f"{c['model']}: replayed {c['replayed']} answer(s) of {c['replay_of']}; {c['verdict_changes']} "
                        "verdict(s) changed (`backtest show " + c["run"] + "` lists them)"
                    ),
                    style="dim",
                )
            )
        if c["stop_reason"]:
            console.print(Text(safe_text(f"{c['model']}: {c['stop_reason']}"), style="yellow"))
    if doc.get("live"):
        missing = ", ".join(k.removesuffix("_usd").removesuffix("_pct") for k in doc["not_available_live"])
        console.print(Text(f"Not available live (shown as -): {missing}", style="dim"))
        skipped = doc.get("skipped_accounts") or []
        if skipped:
            console.print(Text(safe_text(f"Not paper, left out: {', '.join(skipped)}"), style="dim"))
        console.print(
            f"Equity (USD, as each decision saw it, scaled to a start of {spec['balance_usd']:,.0f}; "
            "buy-and-hold at the marks they saw)"
        )
    else:
        console.print("Equity (USD, marked to market at every step; buy-and-hold at each day's end)")
    for line in terminal_chart(curves_of(doc)):
        console.print(Text(line), highlight=False)
    for name, text in doc["definitions"].items():
        console.print(Text(safe_text(f"{name}: {text}"), style="dim"))


# ---- HTML -------------------------------------------------------------------------------------------------


def _svg(curves: dict[str, list[list[float]]], *, drawdown: bool, width: int = 860, height: int = 300) -> str:
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    series = {}
    for name, points in curves.items():
        values = np.array([p[1] for p in points], dtype=np.float64)
        if drawdown:
            peaks = np.maximum.accumulate(values)
            values = np.where(peaks > 0, (values - peaks) / peaks * 100, 0.0)
        series[name] = (np.array([p[0] for p in points], dtype=np.float64), values)
    t0 = min(t.min() for t, _ in series.values())
    t1 = max(t.max() for t, _ in series.values())
    low = min(v.min() for _, v in series.values())
    high = max(v.max() for _, v in series.values())
    if high <= low:
        high = low + 1
    pad = 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" role="img">']
    for k, (name, (t, v)) in enumerate(series.items()):
        xs = pad + (t - t0) / max(t1 - t0, 1) * (width - pad - 10)
        ys = 10 + (high - v) / (high - low) * (height - 20)
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))
        color = "#888" if name in ("flat", "buy-and-hold") else colors[k % len(colors)]
        dash = ' stroke-dasharray="6 4"' if name in ("flat", "buy-and-hold") else ""
        out.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{path}">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
        out.append(
            f'<text x="{pad + 150 * (k % 5)}" y="{height + 15 + 15 * (k // 5)}" fill="{color}" '
            f'font-size="12">{html.escape(name[:24])}</text>'
        )
    unit = "%" if drawdown else " USD"
    out.append(f'<text x="2" y="14" font-size="11">{high:,.1f}{unit}</text>')
    out.append(f'<text x="2" y="{height - 4}" font-size="11">{low:,.1f}{unit}</text>')
    out.append("</svg>")
    return "".join(out)


def html_report(doc: dict[str, Any], trades: dict[str, list[dict[str, Any]]]) -> str:
    """The arena as one HTML page that opens offline: curves, drawdowns, the leaderboard, the definitions and
    each contestant's trades. Every text comes through html.escape."""
    e = html.escape
    curves = curves_of(doc)
    spec = doc["spec"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>arena {e(doc['arena'])}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>",
        f"<h1>Arena {e(doc['arena'])}</h1>",
        f"<p>{e(', '.join(spec['symbols']))} · {e(str(spec['interval']))} · strategy {e(str(spec['strategy']))} · "
        f"{e(str(spec['balance_usd']))} USD · {doc['days']} days · made {e(doc['created_at'])}</p>",
    ]
    if curves:
        parts += ["<h2>Equity</h2>", _svg(curves, drawdown=False), "<h2>Drawdown (%)</h2>", _svg(curves, drawdown=True)]
    for title, columns, rows in tables(doc):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("<h2>Definitions</h2><ul>")
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in doc["definitions"].items()]
    parts.append("</ul>")
    for model, listed in trades.items():
        parts.append(
            f"<h2>Trades of {e(model)}</h2><table><tr><th>Symbol</th><th>Side</th><th>Opened</th>"
            "<th>Closed</th><th>Entry</th><th>Exit</th><th>Net PnL USD</th><th>Rationale</th></tr>"
        )
        for t in listed:
            parts.append(
                "<tr>"
                + "".join(
                    f"<td>{e(str(t.get(k, '')))}</td>"
                    for k in ("symbol", "side", "opened", "closed", "entry", "exit", "net_pnl_usd", "rationale")
                )
                + "</tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def trade_rows(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's trades for the report, each with the rationale of the decision that opened it."""
    from llmtrader.core.trades import reconstruct_trades
    from llmtrader.storage.arena import opening_rationales
    from llmtrader.storage.facts import paper_history

    history = paper_history(store, run_id)
    why = opening_rationales(store, run_id)
    rows = []
    for t in reconstruct_trades(history.fills, history.funding):
        reason = next((text for when, symbol, text in why if symbol == t.symbol and when <= t.opened_ms), "")
        rows.append(
            {
                "symbol": t.symbol,
                "side": t.side,
                "opened": _day(t.opened_ms),
                "closed": _day(t.closed_ms) if t.closed_ms is not None else "open",
                "entry": f"{t.entry_price:.6g}",
                "exit": f"{t.exit_price:.6g}" if t.exit_price is not None else "",
                "net_pnl_usd": f"{t.net_pnl:.2f}" if not t.is_open else "",
                "rationale": reason,
            }
        )
    return rows


def trade_lists(store: Any, doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {c["model"]: trade_rows(store, c["run"]) for c in doc["contestants"]}


__all__: Sequence[str] = ("html_report", "tables", "terminal_chart", "trade_lists", "view")
