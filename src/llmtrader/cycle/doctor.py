"""``llmtrader doctor``: a checklist of everything a run depends on, each with a clear verdict.

Checks: the configuration and strategy load; the database is writable; the venue answers and our
clock agrees with it; the venue credentials work (one signed read, never an order); the model endpoint
accepts the key and lists the model. With [accounts.NAME] tables, every account is checked (its mode,
strategy, symbols, credentials with one signed read, model), each check named with the account. Environment
variables that are set but ignored are reported. Nothing here changes state on the venue.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llmtrader.config.accounts import VENUE_KEYS, all_account_settings, credential_problems, settings_for_account
from llmtrader.config.file import env_names, env_value
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.core.market import check_symbols
from llmtrader.cycle.strategies import resolve_strategy, strategy_in_force
from llmtrader.errors import ConfigError, LLMTraderError, VenueError
from llmtrader.exchange.asterdex import AsterDexExchange
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.llm.probe import probe_models
from llmtrader.notify.checks import delivery_check, url_checks
from llmtrader.storage.store import Store, open_reader

if TYPE_CHECKING:
    from llmtrader.exchange.credentials import Credentials

CLOCK_WARN_MS = 1000
CLOCK_FAIL_MS = 5000


@dataclass
class Check:
    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


def _database(settings: Settings) -> Check:
    try:
        store = Store(settings.db)
        try:
            store.check_writable()
        finally:
            store.close()
    except (LLMTraderError, OSError) as exc:
        return Check("database", "fail", f"{settings.db} is not writable: {exc}")
    return Check("database", "ok", f"{settings.db} is writable")


def _strategy(settings: Settings) -> Check:
    """The strategy in force for the account (chosen with `strategy use`, else configured) loads."""
    store = Store(settings.db)
    try:
        _, source = strategy_in_force(store, settings)
        strategy = resolve_strategy(store, settings)
    except ConfigError as exc:
        return Check("strategy", "fail", str(exc))
    finally:
        store.close()
    return Check("strategy", "ok", f"{strategy.name} ({source} for account {settings.account}) loads")


async def _venue(settings: Settings, market: AsterMarketData) -> list[Check]:
    out = []
    try:
        before = time.time() * 1000
        server = await market.server_time_ms()
        after = time.time() * 1000
    except VenueError as exc:
        return [Check("venue", "fail", f"{settings.asterdex_base_url}: {exc}")]
    offset = server - (before + after) / 2
    rtt = after - before
    status: Literal["ok", "warn", "fail"] = "ok"
    if abs(offset) > CLOCK_FAIL_MS:
        status = "fail"
    elif abs(offset) > CLOCK_WARN_MS:
        status = "warn"
    out.append(Check("venue", "ok", f"{settings.asterdex_base_url} answers (round trip {rtt:.0f} ms)"))
    out.append(
        Check(
            "clock",
            status,
            f"our clock is {offset:+.0f} ms off the venue's"
            + ("" if status == "ok" else "; synchronise it (chrony/ntp): signed requests depend on it"),
        )
    )
    try:
        check_symbols(settings.assets, await market.exchange_info())
    except (VenueError, ConfigError) as exc:
        out.append(Check("symbols", "fail", str(exc)))
    else:
        out.append(Check("symbols", "ok", f"{', '.join(settings.assets)} are listed and trading"))
    return out


async def _credentials(settings: Settings, market: AsterMarketData) -> Check:
    try:
        credentials = settings.venue_credentials()
    except ConfigError as exc:
        return Check("credentials", "fail", str(exc))
    if credentials is None:
        if settings.trading_mode == "live":
            return Check("credentials", "fail", "live mode needs venue credentials; none are set")
        return Check("credentials", "ok", "paper mode: no venue credentials needed (none set)")
    exchange = _signed_client(settings, market, credentials)
    try:
        balance = await exchange.balance()
    except VenueError as exc:
        return Check("credentials", "fail", f"the signed read ({exchange.scheme.upper()}) failed: {exc}")
    finally:
        await exchange.aclose()
    return Check(
        "credentials",
        "ok",
        f"signed read works ({exchange.scheme.upper()}): wallet {balance.wallet:f} USDT, "
        f"available {balance.available:f} USDT",
    )


def _signed_client(settings: Settings, market: AsterMarketData, credentials: Credentials) -> AsterDexExchange:
    """An AsterDEX client for doctor's signed reads (a balance, the position mode): it never orders, so it
    needs no exchange rules."""

    async def no_rules() -> dict[str, object]:
        return {}

    return AsterDexExchange(
        market,
        credentials,
        rules=no_rules,  # type: ignore[arg-type]
        timeout_s=settings.http_timeout_s,
        chain_id=settings.asterdex_chain_id,
        recv_window_ms=settings.asterdex_recv_window_ms,
    )


async def _position_mode(settings: Settings, market: AsterMarketData) -> Check | None:
    """The account's position mode: llmtrader trades one-way mode only (in hedge mode the venue refuses its
    orders and stops with -4061). None without venue credentials (nothing to ask)."""
    try:
        credentials = settings.venue_credentials()
    except ConfigError:
        return None  # the credentials check says why
    if credentials is None:
        return None
    exchange = _signed_client(settings, market, credentials)
    try:
        hedge = await exchange.hedge_mode()
    except VenueError as exc:
        return Check("position mode", "fail", f"the position mode could not be read: {exc}")
    finally:
        await exchange.aclose()
    if hedge:
        return Check(
            "position mode",
            "fail",
            f"account {settings.account!r} is in hedge (dual-side) mode: llmtrader refuses to trade it; switch "
            "it to one-way mode (positionSide/dual dualSidePosition=false) with no position open",
        )
    return Check("position mode", "ok", "one-way (llmtrader's orders and stops fit it)")


async def _model(settings: Settings) -> Check:
    if settings.is_baseline:
        return Check("model", "ok", "baseline: the built-in rules, no endpoint")
    if settings.llm_api_key is None:
        if settings.trading_mode == "live":
            return Check("model", "fail", f"{settings.llm_model} needs OPENROUTER_API_KEY (or LLM_API_KEY)")
        return Check("model", "warn", "no model key: paper mode falls back to the baseline rules")
    key = settings.llm_api_key.get_secret_value()
    url = f"{settings.llm_base_url}/models"
    probe = await probe_models(settings.llm_base_url, key, settings.http_timeout_s)
    if probe.error is not None:
        return Check("model", "fail", f"{url}: cannot reach the endpoint ({probe.error})")
    if probe.status in (401, 403):
        return Check("model", "fail", f"{url}: the endpoint refused the key (HTTP {probe.status})")
    if probe.status != 200:
        return Check("model", "fail", f"{url}: HTTP {probe.status}")
    ids = probe.ids
    if ids is None:
        return Check("model", "warn", f"{url}: the model list is not JSON; the model could not be checked")
    if settings.llm_model not in ids:
        return Check("model", "warn", f"{settings.llm_model} is not in the endpoint's model list ({len(ids)} models)")
    return Check("model", "ok", f"{settings.llm_model} is available at {settings.llm_base_url}")


# Variables llmtrader reads besides the settings' own (configfile.env_names), and names people use by
# mistake for a documented one (the README once said STRATEGY).
_OTHER_VARIABLES = frozenset({"LLMTRADER_CONFIG", "LLMTRADER_DEBUG", "LLMTRADER_SHARED_DATA"})
_MISNAMED = {"STRATEGY": "LLMTRADER_STRATEGY", "STRATEGIES_DIR": "LLMTRADER_STRATEGIES_DIR"}


def ignored_variables(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Environment variables that are set but that llmtrader ignores, each with the reason: an unknown
    ``LLMTRADER_*`` name, a misnamed documented one, a model key shadowed by another, or top-level venue
    credentials where [accounts.NAME] tables name their own. Names only: values are never shown."""
    known = {name for field in Settings.model_fields for name in env_names(field)} | _OTHER_VARIABLES
    out = []
    for name in sorted(environ):
        if not environ[name].strip():
            continue
        if name.startswith("LLMTRADER_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            out.append(
                f"{name} is set but is no llmtrader variable" + (f" (did you mean {close[0]}?)" if close else "")
            )
        elif name in _MISNAMED:
            out.append(f"{name} is set but ignored: the variable is {_MISNAMED[name]}")
    key = env_value("llm_api_key", environ)
    if key is not None and key[0] == "OPENROUTER_API_KEY" and environ.get("LLM_API_KEY", "").strip():
        out.append("LLM_API_KEY is set but ignored: OPENROUTER_API_KEY is set too, and wins")
    if settings.accounts:
        venue = [name for k in VENUE_KEYS for name in env_names(k) if environ.get(name, "").strip()]
        if venue:
            out.append(
                f"{', '.join(venue)} {'is' if len(venue) == 1 else 'are'} set but ignored: with [accounts.NAME] "
                "tables each account names its own venue credentials (env.*)"
            )
    return out


async def _account_checks(settings: Settings, name: str, environ: Mapping[str, str]) -> list[Check]:
    """One account of an [accounts.NAME] config: mode, strategy, symbols, credentials (one signed read),
    model; every check named with the account."""
    try:
        account = settings_for_account(settings, name, environ)
    except ConfigError as exc:
        return [Check(f"account {name}", "fail", str(exc))]
    checks = [Check(f"account {name}", "ok", f"mode {account.trading_mode}, assets {', '.join(account.assets)}")]
    checks.append(_strategy(account))
    problems = credential_problems(settings, name, environ)
    async with AsterMarketData(account.asterdex_base_url, timeout_s=account.http_timeout_s) as market:
        try:
            check_symbols(account.assets, await market.exchange_info())
        except (VenueError, ConfigError) as exc:
            checks.append(Check("symbols", "fail", str(exc)))
        else:
            checks.append(Check("symbols", "ok", f"{', '.join(account.assets)} are listed and trading"))
        if problems:
            status: Literal["warn", "fail"] = "fail" if account.trading_mode == "live" else "warn"
            checks.append(Check("credentials", status, "; ".join(problems)))
        else:
            checks.append(await _credentials(account, market))
            if checks[-1].status == "ok" and (mode := await _position_mode(account, market)) is not None:
                checks.append(mode)
    checks.append(await _model(account))
    return [c if c.name.startswith("account ") else replace(c, name=f"{c.name} ({name})") for c in checks]


async def run_checks(
    config_path: Path | None, *, live: bool = False, environ: Mapping[str, str] | None = None
) -> list[Check]:
    """Every check, in order; a failed configuration stops the rest (they all depend on it).

    ``live`` checks as ``--live`` would start (the process's opt-in into live trading).
    """
    env = os.environ if environ is None else environ
    try:
        settings = load_settings(config_path, {"trading_mode": "live" if live else None}, environ=env)
    except ConfigError as exc:
        return [Check("config", "fail", str(exc))]
    ignored = ignored_variables(settings, env)
    tail = [Check("environment", "warn", "; ".join(ignored))] if ignored else []
    if settings.accounts:
        modes = ", ".join(
            f"{name} ({cfg.overrides.get('trading_mode', settings.trading_mode)})"
            for name, cfg in settings.accounts.items()
        )
        checks = [Check("config", "ok", f"{len(settings.accounts)} accounts: {modes}")]
        database = _database(settings)
        checks.append(database)
        async with AsterMarketData(settings.asterdex_base_url, timeout_s=settings.http_timeout_s) as market:
            checks += [c for c in await _venue(settings, market) if c.name != "symbols"]
        if database.status != "ok":
            return checks + tail
        for name in settings.accounts:
            checks += await _account_checks(settings, name, env)
        return checks + _notify_checks(settings, env) + tail
    checks = [Check("config", "ok", f"mode {settings.trading_mode}, assets {', '.join(settings.assets)}")]
    database = _database(settings)
    checks.append(_strategy(settings) if database.status == "ok" else Check("strategy", "fail", "no database"))
    checks.append(database)
    async with AsterMarketData(settings.asterdex_base_url, timeout_s=settings.http_timeout_s) as market:
        checks += await _venue(settings, market)
        checks.append(await _credentials(settings, market))
        if checks[-1].status == "ok" and (mode := await _position_mode(settings, market)) is not None:
            checks.append(mode)
    checks.append(await _model(settings))
    return checks + _notify_checks(settings, env) + tail


def _notify_checks(settings: Settings, environ: Mapping[str, str]) -> list[Check]:
    """The notification URLs parse (each account's), and no delivery failed (llmtrader.notify)."""
    try:
        found = url_checks(all_account_settings(settings, environ))
    except ConfigError as exc:
        return [Check("notify", "fail", str(exc))]
    conn = open_reader(settings.db)
    try:
        delivery = delivery_check(conn)
    finally:
        if conn is not None:
            conn.close()
    return [Check(n, s, d) for n, s, d in [*found, *([delivery] if delivery else [])]]  # type: ignore[arg-type]
