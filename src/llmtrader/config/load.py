"""Loading the settings: flags over environment over the TOML file, the live opt-in of this process, the
accounts checked, and one clear error naming the setting and where its value came from."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmtrader.config.accounts import check_accounts
from llmtrader.config.file import env_value, read_config_file, resolve_config_path
from llmtrader.config.settings import Settings, _load_context, _LoadContext, insecure_transport, shown_value
from llmtrader.errors import ConfigError

# Command-line flags whose name differs from the setting they override.
FLAG_NAMES = {
    "assets": "--symbols",
    "llm_model": "--model",
    "paper_balance_usd": "--balance",
    "max_position_size_usd": "--max-position-usd",
}


def _describe_source(
    name: str,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    toml_path: Path | None,
    toml: Mapping[str, Any],
) -> str:
    if name in overrides:
        return FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
    found = env_value(name, environ) if name in Settings.model_fields else None
    if found is not None:
        return f"environment variable {found[0]}"
    if toml_path is not None and name in toml:
        return f"key {name!r} in {toml_path}"
    return "default"


def _format_validation_error(
    exc: ValidationError,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    toml_path: Path | None,
    toml: Mapping[str, Any],
) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ("?",)
        name = str(loc[0])
        if name == "accounts" and toml_path is not None:
            parts.append(_account_table_error(err, toml_path))
            continue
        where = _describe_source(name, overrides, environ, toml_path, toml)
        path = ".".join(str(p) for p in loc)
        if err.get("type") == "extra_forbidden" and len(loc) > 1:
            parts.append(f"unknown key {path!r} ({where})")
            continue
        if err.get("type") == "extra_forbidden":
            close = difflib.get_close_matches(name.lower(), list(Settings.model_fields), n=1, cutoff=0.75)
            hint = f" did you mean {close[0]!r}?" if close else ""  # a near miss (intervall) named first
            known = ", ".join(sorted(Settings.model_fields))
            parts.append(f"unknown setting {name!r} ({where});{hint} known settings: {known}")
            continue
        shown = shown_value(name, err.get("input"))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"setting {path} = {shown} ({where}) is invalid: {message}")
    return "; ".join(parts)


def _account_table_error(err: Any, toml_path: Path) -> str:
    """An error in the [accounts] tables, named ``accounts.NAME.key``; env.* values are never shown."""
    loc = [str(p) for p in err.get("loc", ())]
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if len(loc) >= 3 and loc[2] == "[key]":
        return f"account name {loc[1]!r} in {toml_path} is invalid: use 1 to 32 letters, digits, _ and -"
    path = ".".join(loc)
    if err.get("type") == "extra_forbidden":
        return f"unknown key {path!r} in {toml_path}"
    if len(loc) <= 2:
        return f"[{path}] in {toml_path}: {message}"
    shown = "" if "env" in loc[2:] else f" = {shown_value(loc[2], err.get('input'))}"
    if "env" in loc[2:] and err.get("type") == "string_pattern_mismatch":
        message = "expected the NAME of an environment variable (letters, digits and _), not a value"
    return f"setting {path}{shown} (in {toml_path}) is invalid: {message}"


# The environment variable that opts a process into live trading (live) or keeps it on paper (paper).
_MODE_VARIABLE = "TRADING_MODE"


def _apply_live_opt_in(
    toml: dict[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str], path: Path | None, *, check: bool
) -> dict[str, Any]:
    """Live trading is opted into per process: TRADING_MODE=live in its environment, or --live (the flag
    ``trading_mode="live"``). The config file alone never makes an account live:

    - TRADING_MODE=paper forces every account to paper, whatever the file says (``make run``);
    - with [accounts.NAME] tables, an account's mode is its table's ``trading_mode``, else the file's
      top-level one, else paper: the opt-in lets the accounts the file sets live trade live, it never
      turns another account live;
    - without an opt-in (and with ``check``), a file that sets an account live is an error naming the
      file and the accounts.

    Returns the TOML data to use, with every account table's mode written out.
    """
    found = env_value("trading_mode", environ)
    env_mode = found[1] if found is not None else None
    flag_mode = flags.get("trading_mode")
    if flag_mode == "live" and env_mode == "paper":
        raise ConfigError(
            f"--live contradicts {_MODE_VARIABLE}=paper in the environment: unset {_MODE_VARIABLE} (or set it to "
            "live) to trade live, or drop --live to stay on paper"
        )
    accounts = toml.get("accounts")
    tables = accounts if isinstance(accounts, dict) else {}
    top = toml.get("trading_mode", "paper")
    if tables:
        default = "paper" if env_mode == "paper" else top
        modes = {
            name: {**table, "trading_mode": "paper" if env_mode == "paper" else table.get("trading_mode", default)}
            if isinstance(table, dict)
            else table
            for name, table in tables.items()
        }
        toml = {**toml, "accounts": modes}
    if env_mode is not None or flag_mode == "live" or not check:
        return toml  # opted in or out (or a bad TRADING_MODE, which validation names)
    if tables:
        live = [str(n) for n, t in toml["accounts"].items() if isinstance(t, dict) and t.get("trading_mode") == "live"]
    else:
        found_account = env_value("account", environ)
        single = found_account[1] if found_account is not None else str(toml.get("account") or "default")
        live = [single] if top == "live" else []
    if not live:
        return toml
    which = ", ".join(repr(name) for name in live)
    raise ConfigError(
        f'config file {path} sets trading_mode = "live" for account{"s" if len(live) > 1 else ""} {which}, but '
        f"this process was not started for live trading: set {_MODE_VARIABLE}=live in its environment or pass "
        f"--live ({_MODE_VARIABLE}=paper runs every account on paper)"
    )


def setting_sources(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, dict[str, str]]:
    """The config file read (None: none) and where each setting's value comes from: ``file``,
    ``env NAME`` or ``default`` (for ``config show``)."""
    env = os.environ if environ is None else environ
    path = resolve_config_path(config_path, env)
    toml = read_config_file(path) if path is not None else {}
    sources: dict[str, str] = {}
    for name in Settings.model_fields:
        found = env_value(name, env)
        if found is not None:
            sources[name] = f"env {found[0]}"
        elif name in toml:
            sources[name] = "file"
        else:
            sources[name] = "default"
    return path, sources


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_only: bool = False,
) -> Settings:
    """Build the effective settings; raise ConfigError with one readable message on bad input.

    Live trading needs the process's own opt-in (see :func:`_apply_live_opt_in`): pass the flag
    ``trading_mode="live"`` for ``--live``. ``read_only`` (commands that never trade nor read the venue
    account: status, stats, config show...) takes the file's modes without the opt-in check (TRADING_MODE=paper
    still forces paper).
    """
    env = os.environ if environ is None else environ
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = resolve_config_path(config_path, env)
    toml = read_config_file(path) if path is not None else {}
    toml = _apply_live_opt_in(toml, flags, env, path, check=not read_only)
    token = _load_context.set(_LoadContext(toml=toml, environ=env))
    try:
        settings = Settings(**flags)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, flags, env, path, toml)) from None
    finally:
        _load_context.reset(token)
    problems = insecure_transport(settings)
    if problems:
        raise ConfigError("; ".join(problems))
    if settings.accounts:
        check_accounts(settings, path)
    return settings
