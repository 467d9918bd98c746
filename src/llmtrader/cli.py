"""The command line: parse, build services, call one core function, render. Heavy imports are lazy."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer

from llmtrader.errors import ConfigError, LLMTraderError

app = typer.Typer(
    name="llmtrader",
    help="An LLM trading agent for crypto perpetual futures, with risk limits enforced in code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

T = TypeVar("T")
_state: dict[str, Any] = {"config": None}


def _debug() -> bool:
    return os.environ.get("LLMTRADER_DEBUG") == "1" or "PYTEST_CURRENT_TEST" in os.environ


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body: project errors become one line and an exit code; others re-raise in debug."""
    try:
        return fn()
    except LLMTraderError as exc:
        recorded = f" (recorded as decision {exc.decision_id})" if exc.decision_id else ""
        _err(f"{exc}{recorded}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if _debug():
            raise
        _err(f"unexpected {type(exc).__name__}: {exc} (set LLMTRADER_DEBUG=1 for the traceback)")
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"llmtrader {version('llmtrader')}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML config file (default: $LLMTRADER_CONFIG, else ./config.toml)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """llmtrader: decide, validate and record portfolio decisions for crypto perpetuals."""
    _state["config"] = config


def _settings(overrides: dict[str, Any] | None = None) -> Any:
    from llmtrader.config import load_settings

    return load_settings(_state["config"], overrides)


def _parse_since(value: str | None) -> str | None:
    if value is None:
        return None
    from llmtrader.storage.records import iso_utc

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {value!r} is not a date: use YYYY-MM-DD or an ISO date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso_utc(int(parsed.timestamp() * 1000))


@app.command()
def decide(
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Comma list of symbols (default: ASSETS)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model id, or 'baseline' (default: LLM_MODEL)."),
    strategy: str | None = typer.Option(None, "--strategy", help="Strategy name (default: the configured one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Never execute; only decide and record."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Ask for one portfolio decision now, validate it against the limits, and record it."""

    def body() -> None:
        import asyncio

        from llmtrader import render
        from llmtrader.bootstrap import build_services, close_services
        from llmtrader.engine import decide as run_decide
        from llmtrader.errors import ModelError, VenueError

        settings = _settings({"assets": symbols, "llm_model": model, "strategy": strategy})
        services = build_services(settings, model_explicit=model is not None)
        for note in services.notes:  # on stderr, so --json output stays clean
            render.warning(note)

        async def go() -> Any:
            try:
                return await run_decide(services, settings.assets, dry_run=dry_run)
            finally:
                await close_services(services)

        try:
            result = asyncio.run(go())
        except (ModelError, VenueError) as exc:
            if as_json:
                typer.echo(json.dumps(render.failure_json(exc)))
            raise
        if as_json:
            typer.echo(json.dumps(render.decision_json(result.record), default=str))
        else:
            render.decision_table(result.record)

    guarded(body)


@app.command()
def history(
    symbol: str | None = typer.Option(None, "--symbol", help="Only decisions on this symbol."),
    action: str | None = typer.Option(None, "--action", help="Only asset decisions with this action."),
    since: str | None = typer.Option(None, "--since", help="Only decisions at or after this date (UTC)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=100_000, help="At most this many decisions."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List recorded decisions, newest first."""

    def body() -> None:
        from llmtrader.configfile import resolve_db_path
        from llmtrader.storage.reader import history as read_history
        from llmtrader.storage.reader import open_reader

        sym = None
        if symbol is not None:
            from llmtrader.configfile import normalize_symbol

            try:
                sym = normalize_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"--symbol: {exc}") from None
        actions = ("buy", "sell", "hold", "adjust_position", "close_position", "adjust_orders")
        if action is not None and action not in actions:
            raise ConfigError(f"--action {action!r} is not an action; accepted: {', '.join(actions)}")
        since_iso = _parse_since(since)
        conn = open_reader(resolve_db_path(_state["config"], os.environ))
        rows = [] if conn is None else read_history(conn, symbol=sym, action=action, since=since_iso, limit=limit)
        if as_json:
            sys.stdout.write(json.dumps(rows, default=str) + "\n")
            return
        from llmtrader import render

        render.history_table(rows)

    guarded(body)


@app.command()
def show(
    decision_id: str = typer.Argument(..., metavar="ID", help="A decision id (a unique prefix is enough)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole record as JSON."),
) -> None:
    """Show one whole audit record: prompt, raw answer, validation, model calls."""

    def body() -> None:
        from llmtrader.configfile import resolve_db_path
        from llmtrader.errors import NotFoundError
        from llmtrader.storage.reader import open_reader
        from llmtrader.storage.reader import show as read_show

        conn = open_reader(resolve_db_path(_state["config"], os.environ))
        if conn is None:
            raise NotFoundError(f"no decision with id {decision_id!r} (no database yet)")
        record = read_show(conn, decision_id)
        if as_json:
            sys.stdout.write(json.dumps(record, default=str) + "\n")
            return
        from llmtrader import render

        render.record_view(record)

    guarded(body)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings, every secret redacted."""

    def body() -> None:
        settings = _settings()
        data = settings.redacted()
        if as_json:
            typer.echo(json.dumps(data, default=str))
            return
        from llmtrader import render

        render.settings_table(data)

    guarded(body)


def main() -> None:
    """Console-script entry point."""
    app()
