"""Where settings come from: the config file's path, its parsed contents, and environment names.

Kept free of pydantic so that read-only commands (``history``, ``show``) can find the database
quickly; :mod:`llmtrader.config.settings` builds and validates the full settings from the same pieces.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmtrader.errors import ConfigError

# Environment variable names, where they are not simply the upper-cased setting name.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "llm_api_key": ("OPENROUTER_API_KEY", "LLM_API_KEY"),
    "db": ("LLMTRADER_DB",),
    "strategy": ("LLMTRADER_STRATEGY",),
    "strategies_dir": ("LLMTRADER_STRATEGIES_DIR",),
    "account": ("LLMTRADER_ACCOUNT",),
    "ab": (),  # a table of arms: the config file only
    "accounts": (),  # [accounts.NAME] tables: the config file only
    "notify": (),  # [notify]: the config file only (the URLs, which hold tokens, are NOTIFY_URLS)
}
# Settings that may only come from the environment: secrets never live in a config file.
ENV_ONLY = frozenset(
    {
        "llm_api_key",
        "asterdex_signer_private_key",
        "asterdex_api_key",
        "asterdex_api_secret",
        "notify_urls",
        "telegram_bot_token",
    }
)


SYMBOL_RE = re.compile(r"^[A-Z0-9]{5,24}$")


def normalize_symbol(raw: str) -> str:
    """Upper-case and check one symbol; raise ValueError naming what is accepted."""
    symbol = raw.strip().upper()
    if not SYMBOL_RE.match(symbol):
        # A bare base asset (btc) is the usual near miss: its USDT perpetual is what was meant.
        guess = f"{symbol}USDT" if symbol.isalnum() and SYMBOL_RE.match(f"{symbol}USDT") else None
        hint = f" (did you mean {guess}?)" if guess else ""
        raise ValueError(f"malformed symbol {raw!r}{hint}: accepted are 5 to 24 letters and digits, like BTCUSDT")
    return symbol


def env_names(setting: str) -> tuple[str, ...]:
    """The environment variables that set ``setting``, in order of precedence."""
    return ENV_NAMES.get(setting, (setting.upper(),))


def env_value(setting: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable name, value) of the first non-empty environment variable for ``setting``."""
    for name in env_names(setting):
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return name, value
    return None


def default_db_path() -> Path:
    """The SQLite file under the user's data directory (XDG on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("llmtrader", appauthor=False)) / "llmtrader.db"


def user_config_path() -> Path:
    """config.toml under the user's config directory (XDG on Linux: ~/.config/llmtrader/config.toml)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("llmtrader", appauthor=False)) / "config.toml"


def resolve_config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else LLMTRADER_CONFIG, else the user's config file when present.

    Never ./config.toml: a file in the working directory (a cloned repository, a "strategy pack") could
    otherwise point the model endpoint elsewhere and name any environment variable as the key to send it.
    """
    if explicit is not None:
        return explicit
    from_env = environ.get("LLMTRADER_CONFIG", "").strip()
    if from_env:
        return Path(from_env).expanduser()
    user = user_config_path()
    return user if user.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """The parsed TOML file; ConfigError names the file and the problem."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} is unreadable: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for key in data:
        if key in ENV_ONLY:
            names = " or ".join(env_names(key))
            raise ConfigError(
                f"config file {path}: key {key!r} holds a secret; secrets are read from the "
                f"environment only ({names}), never from the config file"
            )
    accounts = data.get("accounts")
    if isinstance(accounts, dict):
        for name, table in accounts.items():
            for key in table if isinstance(table, dict) else ():
                if key in ENV_ONLY or key in ("asterdex_user", "asterdex_signer"):
                    # The value is never echoed: it may be a key pasted by mistake.
                    hint = f"{name}_{key}".upper().replace("-", "_")
                    raise ConfigError(
                        f"config file {path}: key 'accounts.{name}.{key}' holds a credential; an account names "
                        f'the environment variable that holds it instead, e.g. env.{key} = "{hint}"'
                    )
    return data


def resolve_db_path(explicit_config: Path | None, environ: Mapping[str, str]) -> Path:
    """The database path with the same precedence as the full settings: env, file, default."""
    found = env_value("db", environ)
    if found is not None:
        return Path(found[1]).expanduser()
    path = resolve_config_path(explicit_config, environ)
    if path is not None:
        value = read_config_file(path).get("db")
        if isinstance(value, str) and value.strip():
            return Path(value).expanduser()
    return default_db_path()
