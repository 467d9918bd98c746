"""The OpenAPI description of /api/v1 (served at /api/v1/openapi.json). Keys and units are the CLI's ``--json``:
times are ISO 8601 UTC strings (``*_ms``: epoch milliseconds); money, prices and sizes are numbers (USD at the
cent, docs/json.md)."""

from __future__ import annotations

from typing import Any


def _get(summary: str, params: tuple[str, ...] = (), item: str | None = None) -> dict[str, Any]:
    described = {
        "account": "A served account (default: the only one)",
        "symbol": "A symbol, e.g. BTCUSDT",
        "action": "buy, sell, hold, adjust_position, close_position or adjust_orders",
        "since": "From this date or ISO date-time (UTC)",
        "until": "Before this date or ISO date-time (UTC)",
        "limit": "At most this many (1 to 500)",
        "cursor": "The next_cursor of the previous page",
        "by": "Also per group: asset, strategy, model or arm",
    }
    parameters = [
        {"name": p, "in": "query", "required": False, "description": described[p], "schema": {"type": "string"}}
        for p in params
    ]
    if item is not None:
        parameters.append({"name": item, "in": "path", "required": True, "schema": {"type": "string"}})
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": 'A bad parameter: {"error": "..."}'},
                "401": {"description": "A token is needed, or it is wrong"},
                "404": {"description": "Not found"},
            },
        }
    }


SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "llmtrader serve",
        "version": "1",
        "description": "Read-only view of the llmtrader store: the same keys and units as the CLI's --json. "
        "Times are ISO 8601 UTC (fields ending in _ms: epoch milliseconds); money, prices and sizes are JSON "
        "numbers (USD at the cent, model costs at a millionth of a dollar).",
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/status": _get(
            "Per account: alive, mode, strategy, model, last and next cycle, guards, paused (`status --json`)"
        ),
        "/api/v1/decisions": _get(
            "Decisions newest first (`history --json` rows) with next_cursor",
            (
                "account",
                "symbol",
                "action",
                "since",
                "until",
                "limit",
                "cursor",
            ),
        ),
        "/api/v1/decisions/{decision_id}": _get("The whole audit record (`show --json`)", item="decision_id"),
        "/api/v1/positions": _get("Open positions as last recorded by the agent, with the snapshot time", ("account",)),
        "/api/v1/trades": _get(
            "Trades rebuilt from the recorded fills, newest first",
            (
                "account",
                "limit",
            ),
        ),
        "/api/v1/stats": _get(
            "`stats --json`",
            (
                "account",
                "by",
                "since",
            ),
        ),
        "/api/v1/equity": _get(
            "The equity curve (at each cycle) with drawdown",
            (
                "account",
                "since",
            ),
        ),
        "/api/v1/prices": _get("Per asset: mark prices at each decision and the account's fills", ("account",)),
        "/api/v1/backtests": _get("`backtest list --json`", ("limit",)),
        "/api/v1/backtests/{run_id}": _get("`backtest show --json`", item="run_id"),
        "/api/v1/stream": _get(
            "Server-Sent Events: cycle, decision, order, paper_fill, venue_fill, guard, event, control"
        ),
        "/api/v1/accounts/{account}/control": {
            "post": {
                "summary": "With --allow-control: pause, resume, close_all (carried out by the agent at its next "
                'cycle) or resume_drawdown; body {"action": ..., "confirm": "<account>"}',
                "parameters": [{"name": "account", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "Carried out (resume_drawdown)"},
                    "202": {"description": "Recorded for the agent's next cycle"},
                    "403": {"description": "Read-only server, or a missing CSRF token (cookie sessions)"},
                },
            }
        },
    },
}
