"""Accounts: one per ``[accounts.NAME]`` table of the config file, or the single top-level account.

Without an ``accounts`` table there is exactly one account, named by the ``account`` setting, whose
settings are the top-level ones: today's behaviour, unchanged. With a table, the accounts are exactly its
names, and the effective settings of one are built by :func:`settings_for_account`:

1. the top-level effective settings (defaults < file < environment < flags) are the defaults;
2. the keys of the account's table (any of :data:`~llmtrader.config.settings.ACCOUNT_KEYS`) override them, whatever
   the source of the top-level value (the account's own table is the more specific statement);
3. ``account`` is the table's name;
4. credentials: the model key is the one named by ``env.llm_api_key``, else the top-level one
   (OPENROUTER_API_KEY / LLM_API_KEY: one model key may serve every account). Venue credentials are NEVER
   inherited: an account trades live only with the variables its own ``env`` table names, so two accounts
   cannot end up on one wallet by accident. A named variable that is unset or empty counts as absent
   (:func:`credential_problems` reports it; a live start must refuse on any problem).

Every value is validated as a top-level one would be; an error names ``accounts.NAME.key`` and the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmtrader.config.settings import AccountConfig, Settings, insecure_transport, settings_from_values, shown_value
from llmtrader.errors import ConfigError

V3_KEYS = ("asterdex_user", "asterdex_signer", "asterdex_signer_private_key")
V1_KEYS = ("asterdex_api_key", "asterdex_api_secret")
VENUE_KEYS = V3_KEYS + V1_KEYS


def account_names(settings: Settings) -> list[str]:
    """The configured accounts, in file order: the ``[accounts.NAME]`` tables, else the one ``account``."""
    return list(settings.accounts) or [settings.account]


def _where(cfg: AccountConfig | None) -> str:
    return f" (in {cfg.source})" if cfg is not None and cfg.source is not None else ""


def _unknown(settings: Settings, name: str) -> ConfigError:
    names = account_names(settings)
    if not settings.accounts:
        return ConfigError(
            f"unknown account {name!r}: the only account is {names[0]!r} (no [accounts.NAME] table in the config)"
        )
    first = next(iter(settings.accounts.values()))
    return ConfigError(f"unknown account {name!r}; configured accounts: {', '.join(names)}{_where(first)}")


def require_account(settings: Settings, name: str) -> None:
    """ConfigError (exit 2) listing the configured accounts unless ``name`` is one; reads no credential."""
    if name not in account_names(settings):
        raise _unknown(settings, name)


def _credentials(cfg: AccountConfig, environ: Mapping[str, str]) -> dict[str, str | None]:
    """Values of the credentials the account names (None when the variable is unset or blank)."""
    out: dict[str, str | None] = {}
    for key, var in cfg.env.named().items():
        value = environ.get(var)
        out[key] = value.strip() if value is not None and value.strip() else None
    return out


def _account_error(exc: ValidationError, name: str, cfg: AccountConfig) -> ConfigError:
    where = _where(cfg)
    named = cfg.env.named()
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc") or ("?",)]
        key = loc[0]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if key in cfg.overrides:
            shown = shown_value(key, err.get("input"))
            parts.append(f"setting accounts.{name}.{'.'.join(loc)} = {shown}{where} is invalid: {message}")
        elif key in named:
            # The variable's value is never repeated: a key may have been put in the wrong variable.
            parts.append(
                f"setting accounts.{name}.env.{key}{where}: environment variable {named[key]} is invalid: {message}"
            )
        else:
            parts.append(f"account {name!r}: setting {'.'.join(loc)} is invalid: {message}")
    return ConfigError("; ".join(parts))


def settings_for_account(
    settings: Settings,
    name: str,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """The effective settings of account ``name`` (see the module docstring for the rules).

    Without an ``accounts`` table, ``name`` must be the ``account`` setting, and ``settings`` is returned
    as it is. An unknown name, or a bad value, is a ConfigError (exit code 2). ``flags`` (a command's
    options, like ``--symbols``, already validated at the top level) win over the account's table.
    """
    require_account(settings, name)
    if not settings.accounts:
        return settings
    cfg = settings.accounts[name]
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {field: getattr(settings, field) for field in Settings.model_fields}
    values.update(cfg.overrides)
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    values["account"] = name
    values.update(dict.fromkeys(VENUE_KEYS))  # never inherited from the top level
    values.update(_credentials(cfg, env))
    try:
        account = settings_from_values(values)
    except ValidationError as exc:
        raise _account_error(exc, name, cfg) from None
    problems = insecure_transport(account, f"accounts.{name}.")
    if problems:
        raise ConfigError(f"{'; '.join(problems)}{_where(cfg)}")
    # Every value was passed on, so every field reads as given: a setting that nobody gave (the file, the
    # environment, the account's table, a flag) must still read as not given, or the account's interval would
    # be the default 1h instead of its strategy's (``cycle_interval``).
    given = set(settings.model_fields_set) | set(cfg.overrides) | {k for k, v in (flags or {}).items() if v is not None}
    account.__pydantic_fields_set__.intersection_update(given | {"account", *VENUE_KEYS})
    return account


def all_account_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Settings]:
    """Every account's effective settings, by name, in file order."""
    return {name: settings_for_account(settings, name, environ) for name in account_names(settings)}


def check_accounts(settings: Settings, path: Path | None) -> None:
    """Validate every account's overrides at load time (credentials are read later, per account).

    Records ``path`` on each table so that later errors name the file.
    """
    for cfg in settings.accounts.values():
        cfg._source = path
    for name in settings.accounts:
        settings_for_account(settings, name, environ={})


def credential_problems(settings: Settings, name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the credentials account ``name`` names, each naming ``accounts.NAME.env.key``.

    Reported for every mode: a named variable that is unset or blank. For a live account also: no venue
    credential set named, a partial set, or both sets. Empty without an ``accounts`` table (the top-level
    credentials are checked where the exchange is built). A live start must refuse on any problem; a paper
    account may start with a warning.
    """
    require_account(settings, name)
    if not settings.accounts:
        return []
    cfg = settings.accounts[name]
    env = os.environ if environ is None else environ
    named = cfg.env.named()
    values = _credentials(cfg, env)
    problems = [
        f"accounts.{name}.env.{key} names {var}, which is not set in the environment"
        for key, var in named.items()
        if values.get(key) is None
    ]
    mode = cfg.overrides.get("trading_mode", settings.trading_mode)
    if mode != "live":
        return problems
    v3 = [k for k in V3_KEYS if k in named]
    v1 = [k for k in V1_KEYS if k in named]
    if not v3 and not v1:
        problems.append(
            f"accounts.{name} trades live but names no venue credentials: set env.asterdex_user, "
            "env.asterdex_signer and env.asterdex_signer_private_key (V3 API wallet), or env.asterdex_api_key "
            "and env.asterdex_api_secret (V1), to the names of environment variables"
        )
    elif v3 and v1:
        problems.append(f"accounts.{name} names both venue credential sets (V3 and V1): keep one of them")
    else:
        wanted = V3_KEYS if v3 else V1_KEYS
        missing = [f"env.{k}" for k in wanted if k not in named]
        if missing:
            problems.append(f"accounts.{name} names an incomplete venue credential set: {', '.join(missing)} missing")
    return problems
