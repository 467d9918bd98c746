"""Settings: one TOML file, overridden by environment variables, overridden by command-line flags.

Secrets come from the environment only (never the TOML file) and are ``SecretStr`` everywhere, so
they print as ``**********``. A bad value raises :class:`ConfigError` naming the setting, where the
value came from, the value, and what is accepted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmtrader.config.file import (
    ENV_ONLY,
    default_db_path,
    env_value,
    normalize_symbol,
)
from llmtrader.core.prices import ModelPrice
from llmtrader.core.times import Interval
from llmtrader.errors import CredentialsError
from llmtrader.exchange.credentials import V1Credentials, V3Credentials

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
ASTERDEX_BASE_URL = "https://fapi.asterdex.com"
# Settings whose bad value is never repeated in an error: an address field may hold a private key pasted
# into the wrong variable. (Secrets, ENV_ONLY, are never shown either.)
ADDRESS_SETTINGS = frozenset({"asterdex_user", "asterdex_signer"})
HIDDEN = "(not shown)"


def is_loopback_host(host: str | None) -> bool:
    """True for this machine: localhost, 127.0.0.0/8, ::1."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_url_credentials(value: Any) -> bool:
    """True when ``value`` is a URL with a ``user[:password]@`` part, or with a query string or fragment
    (where a key such as ``?api_key=...`` would travel)."""
    if not isinstance(value, str) or "://" not in value:
        return False
    rest = value.split("://", 1)[1]
    return "@" in rest.split("/", 1)[0] or "?" in rest or "#" in rest


def shown_value(name: str, value: Any) -> str:
    """How a bad value of setting ``name`` appears in an error message: never a secret, never an address
    field's value (a key pasted there by mistake), never a URL with credentials."""
    if name in ENV_ONLY:
        return "(secret)"
    if name in ADDRESS_SETTINGS or has_url_credentials(value):
        return HIDDEN
    return repr(value)


def parse_symbols(raw: str | list[str]) -> list[str]:
    """A comma list (or list) of symbols, normalized, de-duplicated, order kept; never empty."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"symbol {item!r} is not text")
        if not item.strip():
            continue
        symbol = normalize_symbol(item)
        if symbol not in out:
            out.append(symbol)
    if not out:
        raise ValueError("the asset list is empty: give at least one symbol, like BTCUSDT,ETHUSDT")
    return out


def arm_fraction(decision_id: str) -> float:
    """Where a decision falls in [0, 1) for an A/B split: the first 8 bytes of the SHA-256 of its id,
    read as a big-endian integer, over 2**64. Depends on the id alone, so any record's arm can be re-derived."""
    return int.from_bytes(hashlib.sha256(decision_id.encode()).digest()[:8], "big") / 2**64


class ABArm(BaseModel):
    """One arm of an A/B test: a model, a strategy, or both (what it leaves out is the account's usual one)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    model: str | None = Field(None, min_length=1, description="Model id, or 'baseline'.")
    strategy: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,40}$", description="Strategy name.")

    @model_validator(mode="after")
    def _names_something(self) -> ABArm:
        if self.model is None and self.strategy is None:
            raise ValueError(f"arm {self.name!r} names neither a model nor a strategy: give it one or both")
        return self


class ABTest(BaseModel):
    """Two arms and the share of decisions that go to the first one."""

    model_config = ConfigDict(extra="forbid")
    split: float = Field(0.5, gt=0, lt=1, description="Share of decisions that go to the first arm.")
    arms: list[ABArm] = Field(description="Exactly two arms.")

    @field_validator("arms")
    @classmethod
    def _two_distinct(cls, arms: list[ABArm]) -> list[ABArm]:
        if len(arms) != 2:
            raise ValueError(f"an A/B test needs exactly two [[ab.arms]], found {len(arms)}")
        if arms[0].name == arms[1].name:
            raise ValueError(f"the two arms are both named {arms[0].name!r}: give them distinct names")
        return arms

    def arm_index(self, decision_id: str) -> int:
        """0 (the first arm) when the decision's fraction is below ``split``, else 1."""
        return 0 if arm_fraction(decision_id) < self.split else 1


# ---- [notify]: which events go to which notification URL (the URLs themselves: NOTIFY_URLS, env only) ----
NotifyEvent = Literal[
    "trade_opened", "trade_closed", "emergency", "kill_switch", "circuit", "failed_cycles", "venue_ban",
    "agent", "daily_summary", "test",
]  # fmt: skip
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
NotifyLevel = Literal["info", "warning", "critical"]


class NotifyTarget(BaseModel):
    """``[notify.urls.N]``: what the N-th URL of NOTIFY_URLS (counting from 1) receives."""

    model_config = ConfigDict(extra="forbid")
    events: list[NotifyEvent] | None = Field(None, description="Events sent (none: [notify].events).")
    min_level: NotifyLevel | None = Field(None, description="Lowest level sent (none: [notify].min_level).")


class NotifyConfig(BaseModel):
    """The ``[notify]`` table (config file only): events, minimum level, per-URL choices, retries."""

    model_config = ConfigDict(extra="forbid")
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS))  # type: ignore[arg-type]
    min_level: NotifyLevel = Field("info", description="Lowest level sent: info, warning or critical.")
    urls: dict[Annotated[str, Field(pattern=r"^[1-9][0-9]{0,2}$")], NotifyTarget] = Field(default_factory=dict)
    failed_cycles: int = Field(3, ge=1, le=1000, description="Failed cycles in a row that are told, once a streak.")
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts per message and URL before it counts failed.")
    retry_max_wait_s: float = Field(300, ge=1, le=86_400, description="Longest wait between two attempts.")
    timeout_s: float = Field(10, gt=0, le=120, description="Timeout of one send.")
    telegram_chat_ids: list[int] = Field(default_factory=list, description="Chats the Telegram commands answer.")
    telegram_control: bool = Field(False, description="Allow /pause, /resume and /closeall (with a confirmation).")
    telegram_base_url: str = Field("https://api.telegram.org/bot", description="The Bot API base URL.")

    @field_validator("telegram_base_url")
    @classmethod
    def _bot_api_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as https://api.telegram.org/bot")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("the bot token travels over http:// only to this machine: use https://")
        return value


ACCOUNT_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# An environment variable's name: what an account's env.* keys hold (never a value).
ENV_VAR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Settings an [accounts.NAME] table may override; everything else is shared by all accounts (the database,
# the strategies directory, the A/B test) or is the account's credentials (named in its env table).
ACCOUNT_KEYS = (
    "assets",
    "interval",
    "leverage",
    "max_position_size_usd",
    "llm_model",
    "llm_base_url",
    "llm_timeout_s",
    "llm_max_retries",
    "llm_retry_max_wait_s",
    "llm_max_reasks",
    "trading_mode",
    "paper_balance_usd",
    "strategy",
    "margin_type",
    "stop_loss_attempts",
    "paper_taker_fee",
    "paper_slippage_bps",
    "asterdex_base_url",
    "asterdex_chain_id",
    "daily_loss_kill_pct",
    "max_drawdown_pct",
    "daily_model_budget_usd",
    "model_calls_per_minute",
    "model_calls_per_hour",
    "circuit_failures",
    "circuit_cooldown_minutes",
    "decision_cache_ttl_s",
)


class AccountEnv(BaseModel):
    """The NAMES of the environment variables holding one account's credentials, never their values."""

    model_config = ConfigDict(extra="forbid")
    llm_api_key: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)
    asterdex_user: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)
    asterdex_signer: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)
    asterdex_signer_private_key: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)
    asterdex_api_key: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)
    asterdex_api_secret: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)
    notify_urls: str | None = Field(None, pattern=ENV_VAR_NAME_PATTERN)

    def named(self) -> dict[str, str]:
        """Setting name -> environment variable name, for the credentials this account names."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AccountConfig(BaseModel):
    """One ``[accounts.NAME]`` table: overrides of the top-level settings (raw, validated by
    :func:`llmtrader.config.accounts.settings_for_account`) and the names of its credentials' variables."""

    model_config = ConfigDict(extra="allow")
    env: AccountEnv = Field(default_factory=AccountEnv)
    _source: Path | None = PrivateAttr(None)  # the config file it came from, for error messages

    @property
    def source(self) -> Path | None:
        """The config file this table was read from (None when built in code)."""
        return self._source

    @model_validator(mode="after")
    def _known_keys(self) -> AccountConfig:
        unknown = sorted(set(self.model_extra or {}) - set(ACCOUNT_KEYS))
        if unknown:
            import difflib

            close = [m for k in unknown for m in difflib.get_close_matches(k, ACCOUNT_KEYS, n=1, cutoff=0.75)]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown key {', '.join(repr(k) for k in unknown)}{hint}; an account may set: "
                f"{', '.join(ACCOUNT_KEYS)}, and env.* (the names of its credentials' environment variables)"
            )
        return self

    @property
    def overrides(self) -> dict[str, Any]:
        """The top-level settings this account overrides, as written in the file."""
        return dict(self.model_extra or {})


@dataclass
class _LoadContext:
    toml: dict[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)


_load_context: ContextVar[_LoadContext | None] = ContextVar("llmtrader_load_context", default=None)


class _MappedEnvSource(PydanticBaseSettingsSource):
    """Reads exactly the documented environment variable of each setting, nothing else."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        ctx = _load_context.get() or _LoadContext(environ=os.environ)
        found = env_value(field_name, ctx.environ)
        return (found[1], found[0], False) if found else (None, field_name, False)

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(info, name)
            if value is not None:
                out[name] = value
        return out


class _TomlDictSource(PydanticBaseSettingsSource):
    """The already-parsed TOML file (parsed by :func:`load_settings` so errors name the file)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        ctx = _load_context.get()
        return (ctx.toml.get(field_name) if ctx else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        ctx = _load_context.get()
        return dict(ctx.toml) if ctx else {}


class Settings(BaseSettings):
    """The effective configuration of one llmtrader process."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    assets: list[str] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        description="Symbols to trade (comma list in ASSETS).",
    )
    interval: Interval = Field("1h", description="Decision interval.")
    leverage: int = Field(2, ge=1, le=125, description="Maximum leverage any decision may use.")
    max_position_size_usd: float = Field(10_000, gt=0, description="Maximum notional of one position.")
    llm_model: str = Field("x-ai/grok-4", min_length=1, description="Model id, or 'baseline'.")
    llm_api_key: SecretStr | None = Field(None, description="OPENROUTER_API_KEY or LLM_API_KEY.")
    llm_base_url: str = Field(OPENROUTER_BASE_URL, description="Any OpenAI-compatible endpoint.")
    llm_timeout_s: float = Field(180, ge=1, le=3600, description="Per-call timeout; reasoning models are slow.")
    llm_max_retries: int = Field(3, ge=0, le=10, description="Retries on 429, 5xx and timeouts.")
    llm_retry_max_wait_s: float = Field(60, ge=0, le=600, description="Longest wait between retries.")
    llm_max_reasks: int = Field(2, ge=0, le=2, description="Re-asks with the validation errors.")
    llm_prices: dict[str, ModelPrice] = Field(default_factory=dict, description="USD per 1M tokens.")
    asterdex_base_url: str = Field(ASTERDEX_BASE_URL, description="AsterDEX futures REST base URL.")
    http_timeout_s: float = Field(10, gt=0, le=120, description="Timeout of one venue request.")
    exchange_info_ttl_s: int = Field(3600, ge=0, description="How long exchangeInfo is cached.")
    trading_mode: Literal["paper", "live"] = Field("paper", description="paper (default) or live.")
    db: Path = Field(default_factory=default_db_path, description="The SQLite file (LLMTRADER_DB).")
    paper_balance_usd: float = Field(10_000, gt=0, description="Starting balance of the paper account.")
    strategy: str = Field("default", min_length=1, description="Strategy name.")
    strategies_dir: Path | None = Field(None, description="Directory of the user's own strategies.")
    account: str = Field("default", pattern=ACCOUNT_NAME_PATTERN, description="Account name.")
    ab: ABTest | None = Field(None, description="An A/B test of models and/or strategies (config file only).")
    margin_type: Literal["ISOLATED", "CROSSED"] = Field("ISOLATED", description="Margin type of new positions.")
    stop_loss_attempts: int = Field(3, ge=1, le=10, description="Tries to place a stop before flattening.")
    order_lookup_grace_s: float = Field(1.0, ge=0, le=30, description="Wait before looking up an unknown order.")
    paper_taker_fee: float = Field(0.00035, ge=0, le=0.01, description="Paper taker fee, a fraction of notional.")
    paper_slippage_bps: float = Field(2, ge=0, le=500, description="Paper slippage against the trader, in bps.")
    paper_candle_interval: Interval = Field("1m", description="Candles the paper account replays for triggers.")
    asterdex_chain_id: int = Field(1666, description="EIP-712 chainId: 1666 mainnet, 714 testnet.")
    asterdex_recv_window_ms: int = Field(5000, ge=1, le=60000, description="V1 recvWindow.")
    asterdex_user: str | None = Field(None, description="V3: the main wallet address (ASTERDEX_USER).")
    asterdex_signer: str | None = Field(None, description="V3: the API (agent) wallet address.")
    asterdex_signer_private_key: SecretStr | None = Field(None, description="V3: the agent wallet's key.")
    asterdex_api_key: SecretStr | None = Field(None, description="V1 legacy API key.")
    asterdex_api_secret: SecretStr | None = Field(None, description="V1 legacy API secret.")
    notify_urls: SecretStr | None = Field(None, description="Apprise URLs of the notifications (NOTIFY_URLS).")
    telegram_bot_token: SecretStr | None = Field(None, description="The Telegram bot answering commands.")
    notify: NotifyConfig = Field(default_factory=NotifyConfig, description="[notify] (config file only).")
    accounts: dict[Annotated[str, Field(pattern=ACCOUNT_NAME_PATTERN)], AccountConfig] = Field(
        default_factory=dict, description="[accounts.NAME] tables (config file only); none: one account."
    )
    daily_loss_kill_pct: float | None = Field(
        15, ge=0, le=100, description="Loss since 00:00 UTC, % of the day's start equity, that latches (0: off)."
    )
    max_drawdown_pct: float | None = Field(
        30, ge=0, le=100, description="Drop from the equity peak, in %, that closes all until resume (0: off)."
    )
    daily_model_budget_usd: float | None = Field(
        None, ge=0, description="Model spend per UTC day, USD, after which the account holds (0 or none: off)."
    )
    model_calls_per_minute: int = Field(60, ge=1, le=100_000, description="Model calls per account per minute.")
    model_calls_per_hour: int = Field(600, ge=1, le=1_000_000, description="Model calls per account per hour.")
    circuit_failures: int = Field(3, ge=1, le=100, description="Consecutive model failures that open the circuit.")
    circuit_cooldown_minutes: float = Field(15, gt=0, le=1440, description="How long an open circuit waits.")
    decision_cache_ttl_s: int | None = Field(
        None, ge=0, le=604_800, description="Reuse of a decision on an identical context (none: one interval; 0: off)."
    )

    @field_validator("assets", mode="before")
    @classmethod
    def _split_assets(cls, value: Any) -> list[str]:
        if isinstance(value, (str, list)):
            return parse_symbols(value)
        raise ValueError("expected a comma list or a list of symbols")

    @field_validator("daily_loss_kill_pct", "max_drawdown_pct", "daily_model_budget_usd")
    @classmethod
    def _zero_is_off(cls, value: float | None) -> float | None:
        # TOML has no null: 0 is how the file (or the environment) turns a switch off.
        return None if value == 0 else value

    @field_validator("db", mode="before")
    @classmethod
    def _blank_db_is_default(cls, value: Any) -> Any:
        return default_db_path() if isinstance(value, str) and not value.strip() else value

    @field_validator("db", "strategies_dir")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("llm_base_url", "asterdex_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an http(s) URL, like https://host/path")
        if has_url_credentials(value):
            # The URL would be printed, stored with every decision and logged: credentials never go in it.
            if "@" in value.split("://", 1)[1].split("/", 1)[0]:
                raise ValueError(
                    "a URL with credentials (user:password@) is refused; give the key in the environment instead"
                )
            raise ValueError(
                "a URL with a query string or fragment (?... or #...) is refused: a key there would be logged "
                "and stored; give the base URL only, like https://host/v1, and the key in the environment"
            )
        try:
            _ = urlsplit(value).port  # a bad port or IPv6 address fails here, not at the first request
        except ValueError:
            raise ValueError("expected an http(s) URL with a valid host and port") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: command-line flags (init) > environment > TOML file > defaults.
        return (init_settings, _MappedEnvSource(settings_cls), _TomlDictSource(settings_cls))

    @field_validator("asterdex_user", "asterdex_signer")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            hint = ""
            if re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", value):
                hint = "; the value has the shape of a private key, which belongs in ASTERDEX_SIGNER_PRIVATE_KEY only"
            raise ValueError(f"expected a 0x-prefixed 40-hex-digit wallet address (the value is not shown){hint}")
        return value

    @field_validator("asterdex_chain_id")
    @classmethod
    def _check_chain(cls, value: int) -> int:
        if value not in (1666, 714):
            raise ValueError("AsterDEX signs with chainId 1666 (mainnet) or 714 (testnet)")
        return value

    def venue_credentials(self) -> Any:
        """The venue credentials present: V3 (agent wallet), V1 (legacy HMAC key), or None.

        Both sets, or a partial set, is a CredentialsError naming the variables; secrets are never shown.
        """
        v3 = {
            "ASTERDEX_USER": self.asterdex_user,
            "ASTERDEX_SIGNER": self.asterdex_signer,
            "ASTERDEX_SIGNER_PRIVATE_KEY": self.asterdex_signer_private_key,
        }
        v1 = {"ASTERDEX_API_KEY": self.asterdex_api_key, "ASTERDEX_API_SECRET": self.asterdex_api_secret}
        has_v3 = any(v is not None for v in v3.values())
        has_v1 = any(v is not None for v in v1.values())
        if has_v3 and has_v1:
            raise CredentialsError(
                "both venue credential sets are present: V3 (ASTERDEX_USER, ASTERDEX_SIGNER, "
                "ASTERDEX_SIGNER_PRIVATE_KEY) and V1 (ASTERDEX_API_KEY, ASTERDEX_API_SECRET); keep one of them"
            )
        for present, names in ((has_v3, v3), (has_v1, v1)):
            missing = [name for name, value in names.items() if value is None]
            if present and missing:
                raise CredentialsError(f"incomplete venue credentials: {', '.join(missing)} not set")
        if has_v1:
            assert self.asterdex_api_key is not None and self.asterdex_api_secret is not None
            return V1Credentials(
                self.asterdex_api_key.get_secret_value().strip(), self.asterdex_api_secret.get_secret_value().strip()
            )
        if not has_v3:
            return None
        from llmtrader.exchange.signing import signer_address

        assert self.asterdex_user and self.asterdex_signer and self.asterdex_signer_private_key
        key = self.asterdex_signer_private_key.get_secret_value().strip()
        try:
            derived = signer_address(key)
        except ValueError:
            raise CredentialsError("ASTERDEX_SIGNER_PRIVATE_KEY is not a valid private key") from None
        if derived.lower() != self.asterdex_signer.lower():
            raise CredentialsError(
                f"ASTERDEX_SIGNER {self.asterdex_signer} is not the address of ASTERDEX_SIGNER_PRIVATE_KEY "
                f"(that key signs as {derived})"
            )
        return V3Credentials(self.asterdex_user, self.asterdex_signer, key)

    @property
    def is_baseline(self) -> bool:
        """True when decisions come from the built-in rule-based client."""
        return self.llm_model == "baseline"

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by a marker."""
        data = self.model_dump(mode="json")
        for name, info in type(self).model_fields.items():
            if info.annotation is not None and "SecretStr" in str(info.annotation):
                data[name] = "**********" if getattr(self, name) is not None else None
        return data


def settings_from_values(values: Mapping[str, Any]) -> Settings:
    """Settings from exactly ``values`` and the defaults: no file and no environment variable is read.

    Raises pydantic's ValidationError; :func:`llmtrader.config.accounts.settings_for_account` names the keys.
    """
    token = _load_context.set(_LoadContext())
    try:
        return Settings(**values)
    finally:
        _load_context.reset(token)


def insecure_transport(settings: Settings, label: str = "") -> list[str]:
    """Why ``settings`` would send a credential in clear text: a model key, or venue credentials, over
    ``http://`` to a host that is not this machine. ``label`` prefixes the setting names (``accounts.NAME.``)."""
    problems = []
    venue_keys = (
        settings.asterdex_user,
        settings.asterdex_signer_private_key,
        settings.asterdex_api_key,
        settings.asterdex_api_secret,
    )
    for name, url, holds_key in (
        ("llm_base_url", settings.llm_base_url, settings.llm_api_key is not None),
        ("asterdex_base_url", settings.asterdex_base_url, any(v is not None for v in venue_keys)),
    ):
        parts = urlsplit(url)
        if holds_key and parts.scheme == "http" and not is_loopback_host(parts.hostname):
            what = "the model key" if name == "llm_base_url" else "venue credentials"
            problems.append(
                f"setting {label}{name} = {url!r} would send {what} unencrypted over the network: use https:// "
                "(http:// is accepted only for this machine: localhost, 127.0.0.1, ::1)"
            )
    return problems
