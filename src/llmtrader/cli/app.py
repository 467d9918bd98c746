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
    add_completion=True,  # --install-completion, --show-completion
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no Python types (<bool>, <list[str]>) and no mid-sentence boxes
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config")
paper_app = typer.Typer(
    help="The paper account (the default trading mode).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(paper_app, name="paper")
strategy_app = typer.Typer(
    help="Strategies: list, show, validate, choose one per account, compare A/B arms.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(strategy_app, name="strategy")

backtest_app = typer.Typer(
    help="Replay history through the agent's own cycle: run (with --data or --replay), list, show.",
    rich_markup_mode=None,
)
app.add_typer(backtest_app, name="backtest")
notify_app = typer.Typer(help="Notifications: test the URLs of NOTIFY_URLS.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")
arena_app = typer.Typer(help="Several models on exactly the same history, side by side: run, list, show.")
app.add_typer(arena_app, name="arena")

T = TypeVar("T")
# Global options, for commands to use: log_json is None (terminal decides), or True with --log-json.
_state: dict[str, Any] = {"config": None, "log_json": None, "log_file": None, "log_level": "info"}


def _debug() -> bool:
    return os.environ.get("LLMTRADER_DEBUG") == "1" or "PYTEST_CURRENT_TEST" in os.environ


def _err(message: str) -> None:
    from llmtrader.core.formatting import safe_text

    # Errors quote venue messages, model errors and file contents: never let them steer the terminal.
    typer.echo(f"error: {safe_text(message)}", err=True)


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body: project errors become one line and an exit code; others re-raise in debug."""
    try:
        return fn()
    except (typer.Exit, typer.Abort):
        raise  # a deliberate exit code (decide's 3 on an emergency, doctor's 1), not a failure
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
        None,
        "--config",
        "-c",
        help="TOML config file (default: $LLMTRADER_CONFIG, else config.toml in the user's config directory).",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    log_json: bool = typer.Option(
        False, "--log-json", help="Log JSON lines even on a terminal (the default when stderr is not one)."
    ),
    log_file: Path | None = typer.Option(
        None, "--log-file", dir_okay=False, help="Also append JSON log lines to this file (created mode 0600)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug events too, including HTTP requests."),
) -> None:
    """llmtrader: decide, validate and record portfolio decisions for crypto perpetuals."""
    _state["config"] = config
    _state["log_json"] = True if log_json else None
    _state["log_file"] = log_file
    _state["log_level"] = "debug" if verbose else "info"


def _settings(overrides: dict[str, Any] | None = None, *, read_only: bool = False) -> Any:
    """The top-level settings. Live trading needs this process's opt-in (TRADING_MODE=live or --live, given
    as the override ``trading_mode="live"``) unless ``read_only`` (a command that never trades)."""
    from llmtrader.config.load import load_settings

    return load_settings(_state["config"], overrides, read_only=read_only)


LIVE_HELP = "Opt this process into live trading (as TRADING_MODE=live) for the accounts the config sets live."
# Flags the account's own table does not override: they are the process's (mode) or choose the account.
_PROCESS_FLAGS = ("trading_mode", "account")


def _account_settings(overrides: dict[str, Any], *, live: bool = False) -> Any:
    """The effective settings of the account this command acts on (the ``account`` setting, or --account):
    its [accounts.NAME] table when the config has them, with the command's flags on top, so that `decide`,
    `close` and `positions` trade in the account's own mode, as `run` does."""
    from llmtrader.config.accounts import settings_for_account

    settings = _settings({**overrides, "trading_mode": "live" if live else None})
    if not settings.accounts:
        return settings
    name = _chosen_account(settings)
    flags = {k: v for k, v in overrides.items() if k not in _PROCESS_FLAGS}
    return settings_for_account(settings, name, flags=flags)


def _chosen_account(settings: Any) -> str:
    """The account a command acts on. With [accounts.*] tables and no account named (--account,
    LLMTRADER_ACCOUNT, the file's ``account``), never an undefined ``default``: the only account, or the
    one a person picks on a terminal; otherwise an error listing them. A named account must be configured."""
    from llmtrader.config.accounts import account_names, require_account

    names = account_names(settings)
    if settings.account in names:
        return str(settings.account)
    named = settings.account != "default"  # the built-in default: nobody chose it
    if named or not settings.accounts:
        require_account(settings, settings.account)  # ConfigError listing the accounts
    if len(names) == 1:
        return names[0]
    listed = ", ".join(names)
    if _interactive():
        choice = str(typer.prompt(f"Which account? ({listed})", err=True)).strip()
        require_account(settings, choice)
        return choice
    raise ConfigError(f"the config has several accounts ({listed}): choose one with --account (or LLMTRADER_ACCOUNT)")


def _settings_of_account(account: str | None, flags: dict[str, Any] | None = None) -> Any:
    """The read-only effective settings of one account (--account, else the one :func:`_chosen_account`
    gives): its own mode, strategy and limits, for the commands that only read. ``flags`` (a command's
    options) are checked as settings and win over the account's table."""
    from llmtrader.config.accounts import settings_for_account

    settings = _settings({**(flags or {}), "account": account}, read_only=True)
    name = _chosen_account(settings)
    return settings_for_account(settings, name, flags=flags) if settings.accounts else settings


def _interactive() -> bool:
    """True when a person can answer a question: stdin is a terminal and this is not CI."""
    return sys.stdin.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def _run_with_services(fn: Callable[[Any], Any], *, overrides: dict[str, Any] | None = None, live: bool = False) -> Any:
    """Build services (no model client), run one async core function with them, and always close them."""
    import asyncio

    from llmtrader.cycle.compose import build_services, close_services

    services = build_services(_account_settings(overrides or {}, live=live), need_model=False)

    async def go() -> Any:
        try:
            return await fn(services)
        finally:
            await close_services(services)

    return asyncio.run(go())


def _with_store(settings: Any, fn: Callable[[Any], T]) -> T:
    """Open the store (migrating it), run ``fn`` with it, and always close it."""
    from llmtrader.storage.store import Store

    store = Store(settings.db)
    try:
        return fn(store)
    finally:
        store.close()


_RELATIVE_UNITS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def _parse_since(value: str | None, flag: str = "--since") -> str | None:
    """A date, an ISO date-time (UTC unless it says), or a time ago: 30m, 12h, 1d, 2w."""
    if value is None:
        return None
    import re
    import time

    from llmtrader.core.times import iso_utc

    text = value.strip()
    ago = re.fullmatch(r"(\d+)\s*([mhdw])", text.lower())
    if ago is not None:
        seconds = int(ago.group(1)) * _RELATIVE_UNITS[ago.group(2)]
        return iso_utc(int((time.time() - seconds) * 1000))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{flag} {value!r} is not a date: use YYYY-MM-DD, an ISO date-time, or a time ago like 30m, 12h, 1d, 2w"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso_utc(int(parsed.timestamp() * 1000))


@app.command()
def decide(
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Comma list of symbols (default: ASSETS)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model id, or 'baseline' (default: LLM_MODEL)."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Strategy for this call only (default: the account's, see `strategy use`)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Never execute; only decide and record."),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Live mode: execute without asking (needed without a terminal)."
    ),
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    live: bool = typer.Option(False, "--live", help=LIVE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Ask for one portfolio decision now, validate it, execute it (paper by default), and record it all."""

    def body() -> None:
        import asyncio

        from llmtrader.cli import render
        from llmtrader.cycle.compose import build_services, close_services
        from llmtrader.cycle.decide import decide as run_decide
        from llmtrader.cycle.scheduler import RunLock
        from llmtrader.cycle.snapshot import require_one_way
        from llmtrader.errors import ModelError, VenueError

        settings = _account_settings({"assets": symbols, "llm_model": model, "account": account}, live=live)
        trades_live = settings.trading_mode == "live" and not dry_run
        if trades_live and not yes and not _interactive():
            raise ConfigError(
                "live mode: decide would send real orders; run it on a terminal to confirm, pass --yes, "
                "or use --dry-run"
            )
        services = build_services(settings, model_explicit=model is not None, strategy_override=strategy)
        for note in services.notes:  # on stderr, so --json output stays clean
            render.warning(note)

        def confirm(record: Any, report: Any) -> bool:
            # With --json, stdout holds only the final document: the question goes to the terminal (stderr).
            shown = render.err_console if as_json else render.console
            render.decision_table(record, target=shown)
            render.live_confirmation(record, report, target=shown)  # last: only validated values before the question
            return typer.confirm("Execute this decision on AsterDEX with REAL money?", default=False, err=as_json)

        lock = RunLock(settings.db, settings.account)
        venue_lock = RunLock.for_venue(settings)

        async def go() -> Any:
            try:
                if not dry_run:  # one trader per account: refused beside a running agent (before any read)
                    lock.acquire(command="decide")
                    if venue_lock is not None:  # and beside one on the same venue account, whatever its database
                        venue_lock.acquire(command="decide")
                    await require_one_way(services)
                return await run_decide(
                    services, settings.assets, dry_run=dry_run, confirm=confirm if trades_live and not yes else None
                )
            finally:
                lock.release()
                if venue_lock is not None:
                    venue_lock.release()
                await close_services(services)

        try:
            asking = services.client.model if not (trades_live and not yes) else None  # a question needs the screen
            with _spinner(f"{asking} is deciding" if asking else None):
                result = asyncio.run(go())
        except (ModelError, VenueError) as exc:
            if as_json:
                typer.echo(json.dumps(render.failure_json(exc)))
            raise
        if as_json:
            typer.echo(json.dumps(render.decision_json(result.record, result.execution), default=str))
        else:
            render.decision_table(result.record, result.execution)
        if result.execution is not None and result.execution.summary == "emergency":
            raise typer.Exit(3)

    guarded(body)


@app.command()
def history(
    symbol: str | None = typer.Option(None, "--symbol", help="Only decisions on this symbol."),
    action: str | None = typer.Option(None, "--action", help="Only asset decisions with this action."),
    since: str | None = typer.Option(
        None, "--since", help="Only decisions at or after this time: a date (UTC), or a time ago like 1d, 12h."
    ),
    until: str | None = typer.Option(None, "--until", help="Only decisions before this time (same forms)."),
    account: str | None = typer.Option(None, "--account", "-a", help="Only this account's decisions."),
    run_id: str | None = typer.Option(None, "--run", help="Only the decisions of this backtest run."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=100_000, help="At most this many decisions."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List recorded decisions, newest first, with their mode, execution and account."""

    def body() -> None:
        from llmtrader.config.file import resolve_db_path
        from llmtrader.storage.reader import history as read_history
        from llmtrader.storage.store import open_reader

        sym = None
        if symbol is not None:
            from llmtrader.config.file import normalize_symbol

            try:
                sym = normalize_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"--symbol: {exc}") from None
        actions = ("buy", "sell", "hold", "adjust_position", "close_position", "adjust_orders")
        if action is not None and action not in actions:
            from llmtrader.core.textfmt import suggestion

            raise ConfigError(
                f"--action {action!r} is not an action{suggestion(action, actions)}; accepted: {', '.join(actions)}"
            )
        if account is not None:
            _settings_of_account(account)  # an account the config does not define is an error
        since_iso = _parse_since(since)
        until_iso = _parse_since(until, "--until")
        if run_id is not None:
            rows = _backtest_history(run_id, sym, action, since_iso, until_iso, limit)
        else:
            conn = open_reader(resolve_db_path(_state["config"], os.environ))
            rows = (
                []
                if conn is None
                else read_history(
                    conn, symbol=sym, action=action, since=since_iso, limit=limit, account=account, until=until_iso
                )
            )
        if as_json:
            from llmtrader.cli.render import stored_decision_json

            sys.stdout.write(json.dumps([stored_decision_json(r) for r in rows], default=str) + "\n")
            return
        from llmtrader.cli import render

        filtered = any(x is not None for x in (symbol, action, since, until, account, run_id))
        render.history_table(rows, filtered=filtered)

    guarded(body)


def _backtest_history(
    run_id: str, symbol: str | None, action: str | None, since: str | None, until: str | None, limit: int
) -> list[dict[str, Any]]:
    """The decisions of one backtest run (its own database), as ``history`` lists them."""
    from llmtrader.backtest.spec import backtest_db_path, open_backtests
    from llmtrader.storage import backtests as runs
    from llmtrader.storage.reader import history as read_history
    from llmtrader.storage.store import open_reader

    settings = _settings(read_only=True)
    store = open_backtests(settings)
    try:
        run = runs.get_run(store, run_id)  # NotFoundError naming the newest runs
    finally:
        store.close()
    conn = open_reader(backtest_db_path(settings))
    if conn is None:
        return []
    try:
        return read_history(conn, symbol=symbol, action=action, since=since, limit=limit, account=run.id, until=until)
    finally:
        conn.close()


@app.command()
def show(
    decision_id: str = typer.Argument(..., metavar="ID", help="A decision id (a unique prefix is enough)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole record as JSON."),
) -> None:
    """Show one whole audit record: prompt, raw answer, validation, model calls."""

    def body() -> None:
        from llmtrader.config.file import resolve_db_path
        from llmtrader.errors import NotFoundError
        from llmtrader.storage.reader import show as read_show
        from llmtrader.storage.store import open_reader

        conn = open_reader(resolve_db_path(_state["config"], os.environ))
        if conn is None:
            raise NotFoundError(f"no decision with id {decision_id!r} (no database yet)")
        record = read_show(conn, decision_id)
        if as_json:
            from llmtrader.cli.render import stored_decision_json

            sys.stdout.write(json.dumps(stored_decision_json(record), default=str) + "\n")
            return
        from llmtrader.cli import render

        if sys.stdout.isatty() and _interactive():  # a long record: through the pager (PAGER, else less)
            with render.console.pager(styles=True):
                render.record_view(record)
        else:
            render.record_view(record)

    guarded(body)


@app.command()
def stats(
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    since: str | None = typer.Option(
        None, "--since", help="Only trades closed and decisions made from this date (UTC)."
    ),
    by: str | None = typer.Option(None, "--by", help="Also per group: asset, strategy, model or arm."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    plot: bool = typer.Option(False, "--plot", help="Draw the equity curve in the terminal."),
    csv_file: Path | None = typer.Option(
        None, "--csv", dir_okay=False, help="Write the equity curve (time, equity, drawdown) to this CSV file."
    ),
) -> None:
    """Performance from the recorded fills (PnL after fees and funding, Sharpe, drawdown, exposure) and the
    quality of the decisions (validation, errors, latency, cost, confidence calibration)."""

    def body() -> None:
        import time

        from llmtrader.cli import render
        from llmtrader.core.stats import GROUP_BY
        from llmtrader.core.times import ms_of_iso
        from llmtrader.cycle.stats import account_stats

        if by is not None and by not in GROUP_BY:
            raise ConfigError(f"--by {by!r} is not a grouping; accepted: {', '.join(GROUP_BY)}")
        settings = _settings_of_account(account)  # the account's own mode; an unknown account is an error
        since_iso = _parse_since(since)
        result = _with_store(
            settings,
            lambda store: account_stats(
                store,
                account=settings.account,
                mode=settings.trading_mode,
                now_ms=int(time.time() * 1000),
                since_ms=ms_of_iso(since_iso) if since_iso is not None else None,
                by=by,  # checked against GROUP_BY above
            ),
        )
        if settings.trading_mode == "live":
            typer.echo(
                "note: live figures come from the venue fills synced so far; the starting balance is not known, "
                "so there is no Sharpe ratio and no drawdown in %",
                err=True,
            )
        if csv_file is not None:
            try:
                render.write_equity_csv(csv_file, result.trading.curve)
            except OSError as exc:
                raise ConfigError(f"--csv {csv_file}: {exc.strerror or exc}") from None
        if as_json:
            typer.echo(json.dumps(render.stats_json(result)))
        else:
            render.stats_view(result)
        if plot:
            render.equity_plot(result, to_stderr=as_json)

    guarded(body)


@app.command()
def download(
    symbols: str = typer.Option(..., "--symbols", "-s", help="Comma list of symbols, like BTCUSDT,ETHUSDT."),
    interval: str = typer.Option(..., "--interval", "-i", help="Candle interval: 1m 3m 5m 15m 30m 1h 2h 4h ... 1d."),
    since: str = typer.Option(..., "--since", help="First candle open time: YYYY-MM-DD or ISO date-time (UTC)."),
    until: str | None = typer.Option(None, "--until", help="End of the window, excluded (default: now)."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Directory of the CSV files."),
    no_funding: bool = typer.Option(False, "--no-funding", help="Candles only, no funding-rate file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, one entry per file."),
) -> None:
    """Download closed candles and funding rates from AsterDEX's public endpoints into CSV files
    ({SYMBOL}-{interval}.csv, {SYMBOL}-funding.csv). No keys needed; an existing file is checked and
    continued after its last row, so an interrupted download resumes where it stopped."""

    def body() -> None:
        import asyncio

        from llmtrader.backtest.download import (
            ProgressBars,
            check_request,
            download_history,
            parse_time_ms,
            progress_wanted,
            result_json,
            result_rows,
        )
        from llmtrader.config.settings import parse_symbols
        from llmtrader.exchange.asterdex_market import AsterMarketData

        try:
            wanted = parse_symbols(symbols)
        except ValueError as exc:
            raise ConfigError(f"--symbols: {exc}") from None
        since_ms = parse_time_ms(since, "--since")
        until_ms = parse_time_ms(until, "--until") if until is not None else None
        check_request(interval, since_ms, until_ms)
        settings = _settings(read_only=True)

        async def go(bars: ProgressBars) -> Any:
            async with AsterMarketData(settings.asterdex_base_url, timeout_s=settings.http_timeout_s) as market:
                return await download_history(
                    market, wanted, interval, since_ms, until_ms, out, funding=not no_funding, progress=bars
                )

        with ProgressBars(enabled=progress_wanted()) as bars:
            result = asyncio.run(go(bars))
        if as_json:
            typer.echo(json.dumps(result_json(result)))
            return
        from llmtrader.cli import render

        title, headers, rows = result_rows(result)  # a table when it fits, else one block per file
        render.show_rows(title, headers, rows, lead=2, right=("added", "rows"))

    guarded(body)


@app.command()
def positions(
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    live: bool = typer.Option(False, "--live", help=LIVE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Show open positions with their stop-loss and take-profit (paper account or live venue)."""

    def body() -> None:
        from llmtrader.cycle.manual import position_rows

        mode, rows = _run_with_services(position_rows, overrides={"account": account}, live=live)
        from llmtrader.cli import render

        if as_json:
            typer.echo(json.dumps(render.positions_json(rows)))
            return

        render.positions_table(rows, mode)
        if any(r["sl_price"] is None for r in rows):
            render.warning("a position has no stop-loss on the venue: close it or let the next cycle re-arm it")

    guarded(body)


@app.command()
def close(
    symbol: str | None = typer.Argument(None, help="The symbol whose position to close."),
    close_all: bool = typer.Option(False, "--all", help="Close every open position."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed without a terminal)."),
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    live: bool = typer.Option(False, "--live", help=LIVE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Close positions reduce-only and cancel their orders; recorded like a decision."""

    def body() -> None:
        from llmtrader.cli import render
        from llmtrader.config.file import normalize_symbol
        from llmtrader.cycle.manual import close_positions
        from llmtrader.cycle.scheduler import RunLock
        from llmtrader.cycle.snapshot import require_one_way

        if (symbol is None) == (not close_all):
            raise ConfigError("give one SYMBOL or --all")
        symbols = None
        if symbol is not None:
            try:
                symbols = [normalize_symbol(symbol)]
            except ValueError as exc:
                raise ConfigError(f"SYMBOL: {exc}") from None
        if not yes and not _interactive():
            raise ConfigError("close sends orders: run it on a terminal to confirm, or pass --yes")

        held: dict[str, Any] = {}  # the positions as they were just before closing: the question, the PnL
        rules: dict[str, Any] = {}  # their symbols' tick and step: the exit price and size shown at them
        where: list[str] = []

        def confirm(targets: list[str]) -> bool:
            from llmtrader.core.formatting import safe_text

            parts = []
            for symbol in targets:
                p = held.get(symbol)
                if p is None:
                    parts.append(symbol)
                    continue
                notional = p.size * p.mark_price
                parts.append(f"{symbol} ({p.side} {p.size.normalize():f}, notional {notional:,.2f} USD)")
            shown = safe_text(", ".join(parts), multiline=False)  # the venue's symbols, right in the question
            question = f"Close {shown} at market and cancel their orders, {where[0]}?"
            return typer.confirm(question, default=False, err=as_json)

        async def closing(services: Any) -> Any:
            import contextlib

            lock = RunLock(services.settings.db, services.settings.account)
            venue_lock = RunLock.for_venue(services.settings)
            lock.acquire(command="close")  # one trader per account: refused beside a running agent
            try:
                if venue_lock is not None:  # and beside one on the same venue account, whatever its database
                    venue_lock.acquire(command="close")
                await require_one_way(services)
                live_money = services.settings.trading_mode == "live"
                where.append("with REAL money on AsterDEX" if live_money else "on the paper account")
                held.update({p.symbol: p for p in await services.exchange.positions()})
                closing_done = await close_positions(services, symbols, confirm=None if yes else confirm)
                if held:
                    # Only to show the exit at the tick, after the close: never a reason for it to fail.
                    with contextlib.suppress(LLMTraderError):
                        rules.update(await services.exchange.rules())
                return closing_done
            finally:
                if venue_lock is not None:
                    venue_lock.release()
                lock.release()

        result = _run_with_services(closing, overrides={"account": account}, live=live)
        closed = _closed_pnl(result.execution, held, rules)
        if as_json:
            data = render.decision_json(result.record, result.execution)
            data["closed"] = closed
            typer.echo(json.dumps(data, default=str))
            return
        if not result.record.symbols:
            render.console.print("No open positions: nothing to close.")
            return
        if result.execution is not None:
            render.execution_table(result.execution)
        from llmtrader.core.textfmt import readable

        for c in closed:
            rule = rules.get(c["symbol"])
            exit_at = readable(c["exit_price"], rule.tick_size if rule is not None else None)
            size = readable(c["size"], rule.step_size if rule is not None else None)
            render.console.print(
                f"{c['symbol']}: closed {size} at {exit_at}, realised PnL {c['realized_pnl_usd']:+,.2f} USD before fees"
            )
        render.console.print(f"Recorded as {result.record.id}; execution {result.record.execution}.")
        if result.record.execution not in ("executed", "declined"):
            raise typer.Exit(1)

    guarded(body)


def _closed_pnl(execution: Any, held: dict[str, Any], rules: dict[str, Any]) -> list[dict[str, Any]]:
    """Per closed position: the size filled, the average exit and the realised PnL before fees, from the
    position's entry (as it was just before closing) and the close's fills. The averaged exit is rounded
    to the symbol's tick (8 decimals when its rules are unknown), the size shown at its lot step."""
    from decimal import Decimal

    from llmtrader.core.json_views import usd
    from llmtrader.core.textfmt import at_precision, json_price

    out: list[dict[str, Any]] = []
    if execution is None:
        return out
    for a in execution.assets:
        position = held.get(a.symbol)
        filled = [leg.state for leg in a.legs if leg.state is not None and leg.state.executed_qty > 0]
        if position is None or not filled:
            continue
        qty = sum((f.executed_qty for f in filled), Decimal(0))
        exit_price = sum((f.executed_qty * f.avg_price for f in filled), Decimal(0)) / qty
        sign = 1 if position.side == "long" else -1
        pnl = (exit_price - position.entry_price) * qty * sign
        rule = rules.get(a.symbol)
        out.append(
            {
                "symbol": a.symbol,
                "size": float(at_precision(qty, rule.step_size) if rule is not None else qty),
                "exit_price": json_price(exit_price, rule.tick_size if rule is not None else None),
                "realized_pnl_usd": usd(pnl),
            }
        )
    return out


@app.command()
def doctor(
    live: bool = typer.Option(False, "--live", help="Check as `run --live` would start (as TRADING_MODE=live)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checklist as JSON."),
) -> None:
    """Check config, database, venue clock, and for every account its mode, credentials (one signed read)
    and model endpoint; report environment variables that are set but ignored."""

    def body() -> None:
        import asyncio

        from llmtrader.cycle.doctor import run_checks

        checks = asyncio.run(run_checks(_state["config"], live=live))
        if as_json:
            typer.echo(json.dumps([c.__dict__ for c in checks]))
        else:
            from llmtrader.cli import render

            render.checklist(checks)
        if any(c.status == "fail" for c in checks):
            raise typer.Exit(1)

    guarded(body)


@paper_app.command("reset")
def paper_reset(
    balance: float | None = typer.Option(
        None, "--balance", help="Starting balance in USD (default PAPER_BALANCE_USD)."
    ),
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed without a terminal to drop positions)."),
) -> None:
    """Start the paper account afresh: the balance, no positions, no orders (history is kept). Asks first on
    a terminal, naming the open positions it drops."""

    def body() -> None:
        from decimal import Decimal

        from llmtrader.exchange.paper import PaperExchange

        overrides: dict[str, Any] = {"account": account}
        if balance is not None:
            overrides["paper_balance_usd"] = balance
        settings = _account_settings(overrides)
        if settings.trading_mode == "live":
            raise ConfigError("paper reset: TRADING_MODE is live; the paper account is not in use")

        async def reset(services: Any) -> bool:
            assert isinstance(services.exchange, PaperExchange)
            open_now = await services.exchange.positions()
            dropped = ", ".join(f"{p.symbol} ({p.side} {p.size.normalize():f})" for p in open_now)
            if not yes:
                if _interactive():
                    drops = f", dropping its open positions {dropped}" if dropped else ""
                    question = (
                        f"Reset paper account {settings.account!r} to {settings.paper_balance_usd:,.2f} USD{drops}?"
                    )
                    if not typer.confirm(question, default=False):
                        return False
                elif dropped:
                    raise ConfigError(
                        f"paper reset would drop the open positions {dropped}: run it on a terminal to confirm, "
                        "or pass --yes"
                    )
            await services.exchange.reset(Decimal(str(settings.paper_balance_usd)))
            return True

        if not _run_with_services(reset, overrides=overrides):
            typer.echo("not confirmed: the paper account is unchanged")
            raise typer.Exit(1)
        typer.echo(f"paper account {settings.account!r} reset to {settings.paper_balance_usd:,.2f} USD")

    guarded(body)


@strategy_app.command("list")
def strategy_list(
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Every available strategy (built-in and yours), its key limits, and the one in force for the account."""

    def body() -> None:
        from llmtrader.cli import render
        from llmtrader.cycle.strategies import strategy_catalog

        settings = _settings_of_account(account)
        entries, in_force, source = _with_store(settings, lambda store: strategy_catalog(store, settings))
        if as_json:
            typer.echo(json.dumps(render.catalog_json(entries)))
            return
        render.strategies_table(entries, settings.account, in_force, source, leverage_cap=settings.leverage)

    guarded(body)


@strategy_app.command("show")
def strategy_show(
    name: str | None = typer.Argument(None, help="A strategy name (default: the one in force)."),
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Comma list of symbols (default: ASSETS)."),
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """A strategy's limits and its prompt rendered on current data. No model call; nothing is recorded."""

    def body() -> None:
        from llmtrader.cli import render
        from llmtrader.cycle.snapshot import preview_strategy

        async def preview(services: Any) -> tuple[Any, Any]:
            return await preview_strategy(services, name, services.settings.assets), services.settings

        prepared, settings = _run_with_services(preview, overrides={"assets": symbols, "account": account})
        if as_json:
            typer.echo(json.dumps(render.preview_json(prepared, settings), default=str))
            return
        render.strategy_view(prepared, settings)

    guarded(body)


@strategy_app.command("validate")
def strategy_validate(file: Path = typer.Argument(..., help="A strategy TOML file.")) -> None:
    """Load and validate one strategy file: exit 0 when it is sound, 2 with the key and the reason when not."""

    def body() -> None:
        from llmtrader.config.strategies import load_strategy_file

        strategy = load_strategy_file(file)
        frames = ", ".join(strategy.timeframes)
        typer.echo(f"{file}: ok (name {strategy.name}, interval {strategy.interval}, timeframes {frames})")
        if file.stem != strategy.name:
            typer.echo(f"note: it is found by name only as {strategy.name}.toml in a strategies directory", err=True)

    guarded(body)


@strategy_app.command("use")
def strategy_use(
    name: str = typer.Argument(..., help="The strategy to use from the next decision on."),
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
) -> None:
    """Choose the account's strategy: checked, persisted, audited; it takes effect from the next decision."""

    def body() -> None:
        from llmtrader.core.times import SystemClock
        from llmtrader.cycle.strategies import choose_strategy

        settings = _settings_of_account(account)
        choice = _with_store(
            settings,
            lambda store: choose_strategy(store, settings, name, via="cli", now_ms=SystemClock().now_ms()),
        )
        typer.echo(
            f"account {choice.account}: {choice.previous} -> {choice.strategy} (takes effect from the next decision)"
        )

    guarded(body)


@strategy_app.command("ab")
def strategy_ab(
    since: str | None = typer.Option(None, "--since", help="Only decisions at or after this date (UTC)."),
    account: str | None = typer.Option(None, "--account", "-a", help="The account (default: the configured one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Compare the A/B arms over the same period: decisions, validation, errors, execution, latency, cost."""

    def body() -> None:
        from llmtrader.core.times import SystemClock, iso_utc
        from llmtrader.storage.reader import compare_arms
        from llmtrader.storage.store import open_reader

        settings = _settings_of_account(account)
        since_iso = _parse_since(since)
        arms = [a.name for a in settings.ab.arms] if settings.ab is not None else None
        until = iso_utc(SystemClock().now_ms())
        conn = open_reader(settings.db)
        result = compare_arms(conn, account=settings.account, arms=arms, since=since_iso, until=until)
        from llmtrader.cli import render

        if as_json:
            typer.echo(json.dumps(render.money_rounded(result)))
            return
        render.ab_table(result)

    guarded(body)


@app.command()
def run(
    account: list[str] | None = typer.Option(
        None, "--account", "-a", help="Run this account (repeat for several; default: every configured one)."
    ),
    once: bool = typer.Option(False, "--once", help="One cycle per account now, then exit (cron, timers)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and record every cycle; never execute."),
    live: bool = typer.Option(False, "--live", help=LIVE_HELP),
) -> None:
    """The agent: a cycle per account at every candle close of its interval (plus a few seconds), until
    SIGINT or SIGTERM, which let the cycle in progress finish. Logs go to stderr (and --log-file).

    Exit 0 after a clean stop, or with --once when every account's cycle was recorded (whatever it
    decided); 3 with --once when a position may be open without a stop-loss; 1 when a cycle had to be
    abandoned, or with --once when a cycle could not reach the venue or the model; 2 when an account cannot
    start (a live account without its credentials, a bad setting, an account another `llmtrader run` is
    running)."""

    def body() -> int:
        import asyncio

        from llmtrader.cli import cycleline, render
        from llmtrader.core.redact import secrets_of
        from llmtrader.cycle.scheduler import run_agent, select_accounts
        from llmtrader.logs import configure_logging

        settings = _settings({"trading_mode": "live" if live else None})
        selection = select_accounts(settings, account)
        secrets = [s for a in (settings, *selection.accounts.values()) for s in secrets_of(a)]
        configure_logging(
            json=_state["log_json"], log_file=_state["log_file"], level=_state["log_level"], secrets=secrets
        )
        # On a terminal, one readable line per cycle on stdout (the log lines go to stderr either way).
        on_cycle = cycleline.terminal_reporter() if sys.stdout.isatty() else None
        code: int = asyncio.run(
            run_agent(selection, once=once, dry_run=dry_run, warn=render.warning, on_cycle=on_cycle)
        )
        return code

    code = guarded(body)
    if code:
        raise typer.Exit(code)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per account.")) -> None:
    """Per account: mode, strategy, model, last and next cycle, equity, open positions, kill switches and
    circuit breaker. Reads the database only (no venue or model call), so it is fast and safe while `run` runs."""

    def body() -> None:
        import time

        from llmtrader.cycle.scheduler import agent_status
        from llmtrader.storage.store import open_reader

        settings = _settings(read_only=True)
        conn = open_reader(settings.db)
        try:  # the wall clock without importing the engine (core.times.SystemClock): status stays fast
            rows = agent_status(settings, conn, now_ms=int(time.time() * 1000))
        finally:
            if conn is not None:
                conn.close()
        if as_json:
            from llmtrader.core.json_views import money_rounded

            typer.echo(json.dumps(money_rounded(rows)))
            return
        from llmtrader.cli import render

        render.status_view(rows)

    guarded(body)


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (not loopback: needs LLMTRADER_SERVE_TOKEN)."
    ),
    port: int = typer.Option(8787, "--port", min=1, max=65535, help="Port to listen on."),
    account: list[str] | None = typer.Option(
        None, "--account", "-a", help="Serve this account (repeat for several; default: every configured one)."
    ),
    allow_control: bool = typer.Option(
        False, "--allow-control", help="Allow pause, resume and close-all from the page and API (with the token)."
    ),
) -> None:
    """The dashboard, JSON API (/api/v1), live stream and /metrics: a reader of the database, beside `run`.
    Needs no venue or model credentials. Binds to 127.0.0.1 unless told otherwise."""

    def body() -> None:
        from llmtrader.web.server import run_server

        settings = _settings(read_only=True)
        run_server(
            settings,
            host=host,
            port=port,
            accounts=account,
            allow_control=allow_control,
            log_level="debug" if _state["log_level"] == "debug" else "warning",
        )

    guarded(body)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings, every secret redacted."""

    def body() -> None:
        settings = _settings(read_only=True)
        data = settings.redacted()
        if as_json:
            typer.echo(json.dumps(data, default=str))
            return
        from llmtrader.cli import render
        from llmtrader.config.load import setting_sources

        path, sources = setting_sources(_state["config"])
        render.console.print(render.untrusted(f"config file: {path}" if path else "config file: none (defaults)"))
        render.settings_table(data, sources)

    guarded(body)


@app.command()
def resume(
    account: str = typer.Argument(..., metavar="ACCOUNT", help="The account stopped by the drawdown switch."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Re-enable an account stopped by the maximum-drawdown switch; its equity peak restarts at the next cycle.

    Exit 1 when the account was not stopped (nothing changes), 2 for an unknown account.
    """

    def body() -> bool:
        from llmtrader.config.accounts import require_account
        from llmtrader.core.formatting import fmt
        from llmtrader.core.json_views import usd
        from llmtrader.core.times import SystemClock, iso_utc
        from llmtrader.cycle.manual import resume_account

        settings = _settings(read_only=True)
        require_account(settings, account)
        result = _with_store(settings, lambda store: resume_account(store, account, now_ms=SystemClock().now_ms()))
        stopped_at = iso_utc(result.stopped_at_ms) if result.stopped_at_ms is not None else None
        if as_json:
            data = {
                "account": account,
                "resumed": result.resumed,
                "stopped_at": stopped_at,
                "reason": result.reason,
                "previous_peak_equity_usd": usd(result.previous_peak),
                "new_peak_equity_usd": usd(result.new_peak),
            }
            typer.echo(json.dumps(data))
        elif not result.resumed:
            _err(f"account {account!r} is not stopped by the drawdown switch: nothing to resume")
        else:
            typer.echo(f"account {account!r} resumed: the drawdown stop of {stopped_at} is lifted")
            typer.echo(f"  it was: {result.reason}")
            typer.echo(
                f"  equity peak: {fmt(result.previous_peak)} USD -> reset; the next cycle's equity is the new peak"
            )
            typer.echo("  positions may be opened again from the next cycle (the daily switches still apply)")
        return result.resumed

    if not guarded(body):
        raise typer.Exit(1)


@backtest_app.callback(invoke_without_command=True)
def backtest(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", "-d", file_okay=False, help="Directory of CSV data files."),
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Comma list of symbols (default: ASSETS)."),
    interval: str | None = typer.Option(None, "--interval", "-i", help="Decision interval (default: the strategy's)."),
    start: str | None = typer.Option(None, "--from", help="First decision time, UTC (default: the data's start)."),
    end: str | None = typer.Option(None, "--to", help="Last decision time, UTC (default: the data's end)."),
    strategy: str | None = typer.Option(None, "--strategy", help="Strategy (default: LLMTRADER_STRATEGY)."),
    timeframes: str | None = typer.Option(None, "--timeframes", help="Comma list shown instead of the strategy's."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model id, or 'baseline' (default: LLM_MODEL)."),
    balance: float | None = typer.Option(None, "--balance", help="Starting balance, USD (default: PAPER_BALANCE_USD)."),
    leverage: int | None = typer.Option(None, "--leverage", help="Maximum leverage (default: LEVERAGE)."),
    max_position: float | None = typer.Option(None, "--max-position-usd", help="Maximum notional of one position."),
    fill_interval: str | None = typer.Option(
        None, "--fill-interval", help="Shorter candles that trigger stops and targets (default: the interval)."
    ),
    replay: str | None = typer.Option(
        None, "--replay", help="Re-run a recorded run with its model answers, without calling the model."
    ),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Stop once the model cost reaches this, USD."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Call a paid model without asking (needed with no terminal)."),
    account: str | None = typer.Option(
        None, "--account", "-a", help="Start from this account's settings (strategy, limits, model)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Step through history with the same cycle as `run`: context (only candles closed by then), decision,
    validation, execution on a paper account (stops and targets inside candles, fees, funding), recording.
    Every model answer is recorded by the hash of its request, so `--replay RUN` re-runs a period for free."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        import asyncio
        import signal

        from llmtrader.backtest.clients import RecordingClient, ReplayClient
        from llmtrader.backtest.data import load_history
        from llmtrader.backtest.download import parse_time_ms
        from llmtrader.backtest.isolated import private_store, run_isolated
        from llmtrader.backtest.replay import baseline_reference, run_backtest
        from llmtrader.backtest.spec import Request, budget_stop, build_spec, new_run_id, open_backtests
        from llmtrader.cli import render
        from llmtrader.config.settings import parse_symbols
        from llmtrader.cycle.compose import build_client

        try:
            wanted = tuple(parse_symbols(symbols)) if symbols else None
        except ValueError as exc:
            raise ConfigError(f"--symbols: {exc}") from None
        frames = tuple(t.strip() for t in timeframes.split(",") if t.strip()) if timeframes else None
        request = Request(
            data=str(data) if data is not None else None,
            symbols=wanted,
            interval=interval,
            start_ms=parse_time_ms(start, "--from") if start else None,
            end_ms=parse_time_ms(end, "--to") if end else None,
            strategy=strategy,
            timeframes=frames,
            model=model,
            balance_usd=balance,
            leverage=leverage,
            max_position_usd=max_position,
            fill_interval=fill_interval,
            replay=replay,
            max_cost_usd=max_cost,
        )
        # The run's limits get the checks of the settings they stand for (--leverage 0, 500, --balance 0).
        limits = {"leverage": leverage, "paper_balance_usd": balance, "max_position_size_usd": max_position}
        settings = _settings_of_account(account, {k: v for k, v in limits.items() if v is not None})
        if max_cost is not None and max_cost <= 0:
            raise ConfigError(f"--max-cost {max_cost:g} is not a budget: give a positive amount of USD")
        store = open_backtests(settings)
        try:
            spec, chosen = build_spec(settings, request, store)
            history = load_history(spec, chosen)
            run_id = new_run_id()
            notes: list[str] = []
            client: Any
            if spec.replay_of is not None:
                client = ReplayClient(store, spec.replay_of, run_id)
            else:
                inner, note = build_client(
                    settings.model_copy(update={"llm_model": spec.model, "trading_mode": "paper"}),
                    model_explicit=model is not None,
                )
                if note:
                    render.warning(note)
                    notes.append(note)
                client = RecordingClient(inner, store, run_id)
                paid = inner.model != "baseline"
                if paid and not yes:
                    question = (
                        f"This backtest asks {inner.model} up to {len(history.steps)} times"
                        + (f" (it stops at --max-cost {max_cost:g} USD)" if max_cost else " (no --max-cost)")
                        + "; each call is billed."
                    )
                    if not _interactive():
                        raise ConfigError(f"{question} Pass --yes to go ahead without a terminal.")
                    if not typer.confirm(f"{question} Go ahead?", default=False, err=as_json):
                        raise typer.Exit(1)
            interrupted: list[str] = []
            budget = budget_stop(client, spec.max_cost_usd)

            def should_stop() -> str | None:
                return "interrupted" if interrupted else budget()

            async def go() -> Any:
                loop = asyncio.get_running_loop()
                # Ctrl-C ends the run after the step in progress: what ran is stored with its figures.
                loop.add_signal_handler(signal.SIGINT, lambda: interrupted.append("interrupted"))
                try:
                    # The baseline under the same strategy, the reference a model's figures sit beside.
                    refs = None
                    if spec.model != "baseline":
                        with private_store(store) as mine:
                            refs = await baseline_reference(settings, spec, history, mine)
                    with _progress_bar(len(history.steps), spec.model) as advance:
                        # A run with its answers at hand writes a database of its own, then joins backtests.db:
                        # another backtest writing there meanwhile never finds it locked for long.
                        if isinstance(client, ReplayClient) or client.model == "baseline":
                            return await run_isolated(
                                settings, spec, history, store, run_id=run_id, notes=notes,
                                progress=advance, should_stop=should_stop, references=refs,
                            )  # fmt: skip
                        return await run_backtest(
                            settings, spec, history, store, client, run_id=run_id, notes=notes,
                            progress=advance, should_stop=should_stop, references=refs,
                        )  # fmt: skip
                finally:
                    loop.remove_signal_handler(signal.SIGINT)
                    aclose = getattr(client, "aclose", None)
                    if aclose is not None:
                        await aclose()

            asyncio.run(go())
            _show_run(store, run_id, as_json)
        finally:
            store.close()

    guarded(body)


def _spinner(label: str | None) -> Any:
    """A spinner with the elapsed time on stderr while the model thinks, for a person only (a terminal, not
    CI); nothing with ``label`` None."""
    import contextlib

    from llmtrader.backtest.download import progress_wanted

    @contextlib.contextmanager
    def spin() -> Any:
        if label is None or not progress_wanted():
            yield
            return
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from llmtrader.core.formatting import safe_text

        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            progress.add_task(escape(safe_text(label, multiline=False)), total=None)
            yield

    return spin()


def _progress_bar(total: int, model: str) -> Any:
    """A progress bar on stderr for a person (not in CI, not without a terminal), with a spinner, the model
    and the elapsed time, so a slow model call shows it is still thinking; yields the step callback."""
    import contextlib

    from llmtrader.backtest.download import progress_wanted

    @contextlib.contextmanager
    def bar() -> Any:
        if not progress_wanted():
            yield None
            return
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from llmtrader.core.formatting import safe_text

        label = escape(safe_text(f"backtest {model}", multiline=False))
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
        ) as progress:  # fmt: skip
            task = progress.add_task(label, total=total)
            done = [0]

            def advance(step: int, of: int) -> None:
                # Redrawn every 1% of the run: a redraw per step would cost more than the step.
                if step - done[0] >= max(1, of // 100) or step == of:
                    progress.update(task, completed=step)
                    done[0] = step

            yield advance

    return bar()


def _show_run(store: Any, run_id: str, as_json: bool) -> None:
    from llmtrader.cli import render
    from llmtrader.storage import backtests as runs
    from llmtrader.storage.backtests import verdict_changes

    run = runs.get_run(store, run_id)
    equity = runs.equity_of(store, run.id)
    changes = verdict_changes(store, run.id, run.replay_of) if run.replay_of else []
    if as_json:
        typer.echo(json.dumps(render.backtest_json(run, equity, changes)))
    else:
        render.backtest_view(run, equity, changes)


@backtest_app.command("list")
def backtest_list(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The stored backtest runs, newest first, with their main figures."""

    def body() -> None:
        from llmtrader.backtest.spec import open_backtests
        from llmtrader.cli import render
        from llmtrader.storage import backtests as runs

        store = open_backtests(_settings(read_only=True))
        try:
            rows = runs.list_runs(store, limit)
        finally:
            store.close()
        if as_json:
            typer.echo(json.dumps([render.backtest_row_json(r) for r in rows]))
        else:
            render.backtest_runs_table(rows)

    guarded(body)


@backtest_app.command("show")
def backtest_show(
    run: str = typer.Argument(..., help="A run id from `backtest list`, or 'latest'."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (with every equity sample)."),
) -> None:
    """One run: what ran, its figures against buy-and-hold, the equity curve, its notes, and for a replay
    the asset decisions the validator judged differently under the new limits."""

    def body() -> None:
        from llmtrader.backtest.spec import open_backtests

        store = open_backtests(_settings(read_only=True))
        try:
            _show_run(store, run, as_json)
        finally:
            store.close()

    guarded(body)


@arena_app.callback(invoke_without_command=True)
def arena(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", "-d", file_okay=False, help="Directory of CSV data files."),
    models: str | None = typer.Option(None, "--models", "-m", help="Comma list of model ids (baseline joins)."),
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Comma list of symbols (default: ASSETS)."),
    start: str | None = typer.Option(None, "--from", help="First decision time, UTC (default: the data's start)."),
    end: str | None = typer.Option(None, "--to", help="Last decision time, UTC (default: the data's end)."),
    interval: str | None = typer.Option(None, "--interval", "-i", help="Decision interval (default: the strategy's)."),
    strategy: str | None = typer.Option(None, "--strategy", help="Strategy (default: LLMTRADER_STRATEGY)."),
    timeframes: str | None = typer.Option(None, "--timeframes", help="Comma list shown instead of the strategy's."),
    balance: float | None = typer.Option(None, "--balance", help="Starting balance, USD (default: PAPER_BALANCE_USD)."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Stop a model once its cost reaches this, USD."),
    concurrency: int = typer.Option(
        2,
        "--concurrency",
        min=1,
        max=32,
        help="Model calls in flight per endpoint; replay workers (at most one per core).",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Call paid models without asking (needed with no terminal)."),
    live: bool = typer.Option(False, "--live", help="The leaderboard of the configured paper accounts instead."),
    since: str | None = typer.Option(None, "--since", help="With --live: from this date (UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
) -> None:
    """Every model steps through exactly the same candles with the same strategy, limits, fees and balance;
    recorded answers are replayed for free, so only new models are called. Shows the leaderboard."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        import asyncio

        from llmtrader.arena import board, figures
        from llmtrader.arena.run import estimates, market_key, plan, run_arena
        from llmtrader.backtest.data import load_history
        from llmtrader.backtest.download import parse_time_ms
        from llmtrader.backtest.spec import Request, build_spec, open_backtests
        from llmtrader.cli import render
        from llmtrader.config.settings import parse_symbols
        from llmtrader.cycle.compose import build_client

        if live:
            import time

            from llmtrader.arena import live as live_arena
            from llmtrader.config.accounts import all_account_settings
            from llmtrader.core.times import ms_of_iso

            if data is not None or models:
                raise ConfigError("arena --live reads the configured paper accounts: drop --data and --models")
            configured = _settings(read_only=True)
            since_iso = _parse_since(since)
            doc = _with_store(
                configured,
                lambda store: live_arena.leaderboard(
                    store,
                    all_account_settings(configured),
                    now_ms=int(time.time() * 1000),
                    since_ms=ms_of_iso(since_iso) if since_iso is not None else None,
                ),
            )
            if as_json:
                typer.echo(json.dumps(render.money_rounded(doc)))
            else:
                figures.view(doc)
            return
        if since is not None:
            raise ConfigError("--since goes with --live (a backtest arena takes --from and --to)")
        if data is None or not models:
            raise ConfigError("arena needs --data DIR and --models A,B (model ids; baseline always takes part)")
        wanted = [m.strip() for m in models.split(",") if m.strip()]
        try:
            chosen_symbols = tuple(parse_symbols(symbols)) if symbols else None
        except ValueError as exc:
            raise ConfigError(f"--symbols: {exc}") from None
        frames = tuple(t.strip() for t in timeframes.split(",") if t.strip()) if timeframes else None
        request = Request(
            data=str(data), symbols=chosen_symbols, interval=interval, strategy=strategy, timeframes=frames,
            start_ms=parse_time_ms(start, "--from") if start else None,
            end_ms=parse_time_ms(end, "--to") if end else None, model="baseline", balance_usd=balance,
        )  # fmt: skip
        settings = _settings(read_only=True)
        store = open_backtests(settings)
        try:
            spec, loaded = build_spec(settings, request, store)
            history = load_history(spec, loaded)
            key = market_key(spec, history)
            entries = plan(store, key, wanted)
            costs = estimates(settings, entries, len(history.steps), loaded, spec, history.timeframes)
            if costs:
                lines = [
                    f"{c.model}: {c.calls} calls x ~{c.prompt_tokens} prompt tokens = "
                    + (f"~{c.cost_usd:.2f} USD" if c.cost_usd is not None else "price unknown")
                    for c in costs
                ]
                question = (
                    "This arena calls " + "; ".join(lines)
                    + (f" (each stops at --max-cost {max_cost:g} USD)." if max_cost else " (no --max-cost).")
                )  # fmt: skip
                if not yes:
                    if not _interactive():
                        raise ConfigError(f"{question} Pass --yes to go ahead without a terminal.")
                    if not typer.confirm(f"{question} Go ahead?", default=False):
                        raise typer.Exit(1)
                elif not as_json:
                    render.warning(question)

            def make_client(model: str) -> Any:
                client, _ = build_client(
                    settings.model_copy(update={"llm_model": model, "trading_mode": "paper"}), model_explicit=True
                )
                return client

            arena_id, _ = asyncio.run(
                run_arena(
                    settings,
                    spec,
                    history,
                    store,
                    entries,
                    make_client,
                    key=key,
                    concurrency=concurrency,
                    max_cost_usd=max_cost,
                )
            )
            doc = board.leaderboard(store, arena_id)
            if as_json:
                typer.echo(json.dumps(render.money_rounded(doc)))
            else:
                figures.view(doc)
        finally:
            store.close()

    guarded(body)


@arena_app.command("list")
def arena_list(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many arenas, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The stored arenas, newest first, with their contestants."""

    def body() -> None:
        from rich.text import Text

        from llmtrader.backtest.spec import open_backtests
        from llmtrader.core.formatting import safe_text
        from llmtrader.storage import arena as arenas

        store = open_backtests(_settings(read_only=True))
        try:
            rows = arenas.list_arenas(store, limit)
        finally:
            store.close()
        if as_json:
            typer.echo(json.dumps(rows))
            return
        from rich.console import Console

        out = Console(width=80)
        if not rows:
            out.print("No arena yet: run `llmtrader arena --data DIR --models A,B`.")
        for r in rows:
            out.print(Text(safe_text(f"{r['arena']}  {r['created_at'][:16]}  {', '.join(r['models'])}")))

    guarded(body)


@arena_app.command("show")
def arena_show(
    arena_id: str = typer.Argument(..., metavar="ID", help="An arena id from `arena list`, or 'latest'."),
    html_file: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report to FILE."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """One arena's leaderboard, chart and references; --html writes the report to a file."""

    def body() -> None:
        from llmtrader.arena import board, figures
        from llmtrader.backtest.spec import open_backtests
        from llmtrader.cli import render

        store = open_backtests(_settings(read_only=True))
        try:
            doc = board.leaderboard(store, arena_id)
            if html_file is not None:
                html_file.write_text(figures.html_report(doc, figures.trade_lists(store, doc)), encoding="utf-8")
        finally:
            store.close()
        if as_json:
            typer.echo(json.dumps(render.money_rounded(doc)))
        else:
            figures.view(doc)
            if html_file is not None:
                typer.echo(f"wrote {html_file}")

    guarded(body)


def _plain_metavars(command: Any) -> None:
    """Name every option's value after the option (--since SINCE) rather than its Python type (<str>), and
    every argument by its name alone (SYMBOL, not 'symbol <str>'); a number's range in words ('1 to 32', not
    '1<=x<=32')."""
    for param in command.params:
        kind = getattr(param, "param_type_name", "")
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        if low is not None or high is not None:
            words = f"{low} to {high}" if low is not None and high is not None else None
            words = words or (f"at least {low}" if low is not None else f"at most {high}")
            param._get_number_range_help_str = lambda words=words: words  # typer's 'x>=1': a Python expression
        if kind == "option" and not getattr(param, "is_flag", False) and param.metavar is None:
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.upper().replace("-", "_")
        elif kind == "argument":
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = lambda ctx: None  # typer's '<str>' after the name: a Python type
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def main() -> None:
    """Console-script entry point."""
    import typer.main

    command = typer.main.get_command(app)
    _plain_metavars(command)
    command(prog_name="llmtrader")


# ---- notify (llmtrader.notify) ----------------------------------------------------------------------------


@notify_app.command("test")
def notify_test(
    url: list[str] = typer.Option(None, "--url", help="An Apprise URL to test instead of NOTIFY_URLS (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Send a test message to each notification URL and report each result (exit 1 when one failed)."""

    def body() -> None:
        import textwrap

        from llmtrader.core.formatting import safe_text
        from llmtrader.notify.probe import test_results

        results = test_results(url or None, _state["config"])
        if as_json:
            typer.echo(json.dumps({"results": results, "ok": all(r["ok"] for r in results)}))
        else:
            for r in results:
                line = f"{r['target']}: " + ("sent" if r["ok"] else f"FAILED: {r['error']}")
                typer.echo(textwrap.fill(safe_text(line, multiline=False), width=80, subsequent_indent="    "))
        if not all(r["ok"] for r in results):
            raise typer.Exit(1)

    guarded(body)
