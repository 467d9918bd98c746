"""Settings: defaults, TOML < environment < flags, and errors that name the setting, value and source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtrader.config.file import default_db_path, resolve_db_path
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.errors import ConfigError

SECRET = "sk-or-v1-config-test-3c9d1f0a7e"


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no config.toml, so the project's own never leaks in."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write_toml(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    return str(info.value)


# Defaults and precedence ---------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings(None, None, environ={})
    assert settings.trading_mode == "paper"
    assert settings.interval == "1h"
    assert settings.leverage == 2
    assert settings.max_position_size_usd == 10_000
    assert settings.paper_balance_usd == 10_000
    assert settings.llm_model == "x-ai/grok-4"
    assert settings.llm_base_url == "https://openrouter.ai/api/v1"
    assert settings.asterdex_base_url == "https://fapi.asterdex.com"
    assert settings.assets == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert settings.llm_api_key is None
    assert settings.db == default_db_path()
    assert not settings.is_baseline


def test_precedence_toml_then_environment_then_flags(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'interval = "4h"\nleverage = 3\nllm_model = "toml/model"\nassets = ["DOGEUSDT"]\n')
    environ = {"INTERVAL": "15m", "LEVERAGE": "5"}
    flags = {"interval": "5m", "assets": "xrpusdt", "llm_model": None}

    from_file = load_settings(path, None, environ={})
    assert (from_file.interval, from_file.leverage, from_file.llm_model) == ("4h", 3, "toml/model")
    assert from_file.assets == ["DOGEUSDT"]

    from_env = load_settings(path, None, environ=environ)
    assert (from_env.interval, from_env.leverage, from_env.llm_model) == ("15m", 5, "toml/model")

    from_flags = load_settings(path, flags, environ=environ)
    assert (from_flags.interval, from_flags.leverage) == ("5m", 5)
    assert from_flags.assets == ["XRPUSDT"]
    assert from_flags.llm_model == "toml/model"  # a flag left unset (None) overrides nothing


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'interval = "4h"\n')
    assert load_settings(path, None, environ={"INTERVAL": "  "}).interval == "4h"


def test_assets_comma_list_is_upper_cased_and_deduplicated() -> None:
    settings = load_settings(None, None, environ={"ASSETS": " btcusdt,EthUsdt,BTCUSDT, ,solusdt,ethusdt "})
    assert settings.assets == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert load_settings(None, {"assets": "sol1000usdt,SOL1000USDT"}, environ={}).assets == ["SOL1000USDT"]


def test_environment_names_of_renamed_settings(tmp_path: Path) -> None:
    environ = {
        "LLMTRADER_DB": str(tmp_path / "x.db"),
        "LLMTRADER_STRATEGY": "scalper",
        "LLMTRADER_ACCOUNT": "acct_2",
        "TRADING_MODE": "live",
        "LLM_BASE_URL": "http://127.0.0.1:9/v1/",
    }
    settings = load_settings(None, None, environ=environ)
    assert settings.db == tmp_path / "x.db"
    assert settings.strategy == "scalper"
    assert settings.account == "acct_2"
    assert settings.trading_mode == "live"
    assert settings.llm_base_url == "http://127.0.0.1:9/v1"


# Bad values ----------------------------------------------------------------------------------------


def test_unknown_interval_from_the_environment() -> None:
    message = config_error(None, None, environ={"INTERVAL": "7m"})
    assert "interval" in message
    assert "'7m'" in message
    assert "environment variable INTERVAL" in message


def test_unknown_interval_from_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'interval = "2w"\n')
    message = config_error(path, None, environ={})
    assert "interval" in message and "'2w'" in message
    assert f"key 'interval' in {path}" in message


def test_negative_leverage_from_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "leverage = -3\n")
    message = config_error(path, None, environ={})
    assert "leverage" in message and "-3" in message
    assert f"key 'leverage' in {path}" in message


def test_negative_leverage_from_a_flag() -> None:
    message = config_error(None, {"leverage": -1}, environ={"LEVERAGE": "4"})
    assert "leverage" in message and "-1" in message and "--leverage" in message
    assert "environment" not in message


@pytest.mark.parametrize("value", ["", ",", " , ,"])
def test_empty_asset_list_from_the_flag(value: str) -> None:
    message = config_error(None, {"assets": value}, environ={})
    assert "assets" in message and repr(value) in message and "--symbols" in message
    assert "empty" in message


def test_empty_asset_list_from_the_environment_and_file(tmp_path: Path) -> None:
    message = config_error(None, None, environ={"ASSETS": " , "})
    assert "assets" in message and "environment variable ASSETS" in message and "empty" in message
    path = write_toml(tmp_path, "assets = []\n")
    message = config_error(path, None, environ={})
    assert f"key 'assets' in {path}" in message and "empty" in message


def test_malformed_symbol() -> None:
    message = config_error(None, {"assets": "BTCUSDT,BTC-USDT"}, environ={})
    assert "assets" in message and "BTC-USDT" in message and "--symbols" in message
    message = config_error(None, None, environ={"ASSETS": "BTC/USDT"})
    assert "BTC/USDT" in message and "environment variable ASSETS" in message


def test_unknown_trading_mode() -> None:
    message = config_error(None, None, environ={"TRADING_MODE": "yolo"})
    assert "trading_mode" in message and "'yolo'" in message and "environment variable TRADING_MODE" in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'interval = "1h\nleverage = \n')
    message = config_error(path, None, environ={})
    assert str(path) in message and "not valid TOML" in message


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "a-directory.toml"
    path.mkdir()
    message = config_error(path, None, environ={})
    assert str(path) in message and "unreadable" in message


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = config_error(path, None, environ={})
    assert str(path) in message and "does not exist" in message
    message = config_error(None, None, environ={"LLMTRADER_CONFIG": str(path)})
    assert str(path) in message and "does not exist" in message


def test_unknown_toml_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'intervall = "1h"\n')
    message = config_error(path, None, environ={})
    assert "intervall" in message and f"key 'intervall' in {path}" in message
    assert "interval" in message.split("known settings:")[1]


def test_unknown_toml_key_is_blamed_on_the_file_even_if_a_like_named_variable_exists(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'home = "/srv/trader"\n')
    message = config_error(path, None, environ={"HOME": "/root"})
    assert f"key 'home' in {path}" in message


# Secrets -------------------------------------------------------------------------------------------


def test_a_secret_in_the_file_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, f'llm_api_key = "{SECRET}"\n')
    message = config_error(path, None, environ={})
    assert "llm_api_key" in message and str(path) in message and "OPENROUTER_API_KEY" in message
    assert SECRET not in message


def test_both_key_variables_work_openrouter_first() -> None:
    def key(environ: dict[str, str]) -> str | None:
        value = load_settings(None, None, environ=environ).llm_api_key
        return None if value is None else value.get_secret_value()

    assert key({"OPENROUTER_API_KEY": "k-openrouter"}) == "k-openrouter"
    assert key({"LLM_API_KEY": "k-generic"}) == "k-generic"
    assert key({"OPENROUTER_API_KEY": "k-openrouter", "LLM_API_KEY": "k-generic"}) == "k-openrouter"
    assert key({"OPENROUTER_API_KEY": "", "LLM_API_KEY": "k-generic"}) == "k-generic"
    assert key({}) is None


def test_redacted_never_shows_the_key() -> None:
    settings = load_settings(None, None, environ={"OPENROUTER_API_KEY": SECRET})
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == SECRET
    redacted = settings.redacted()
    assert redacted["llm_api_key"] == "**********"
    assert SECRET not in json.dumps(redacted, default=str)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert redacted["interval"] == "1h" and redacted["assets"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert load_settings(None, None, environ={}).redacted()["llm_api_key"] is None


# The database path ---------------------------------------------------------------------------------


def test_resolve_db_path_from_the_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, f'db = "{tmp_path / "file.db"}"\n')
    environ = {"LLMTRADER_DB": str(tmp_path / "env.db")}
    assert resolve_db_path(path, environ) == tmp_path / "env.db"
    assert load_settings(path, None, environ=environ).db == resolve_db_path(path, environ)


def test_resolve_db_path_from_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, f'db = "{tmp_path / "file.db"}"\n')
    assert resolve_db_path(path, {}) == tmp_path / "file.db"
    assert load_settings(path, None, environ={}).db == resolve_db_path(path, {})
    # Found through LLMTRADER_CONFIG as well.
    environ = {"LLMTRADER_CONFIG": str(path)}
    assert resolve_db_path(None, environ) == tmp_path / "file.db" == load_settings(None, None, environ=environ).db


def test_resolve_db_path_with_a_home_relative_path(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'db = "~/trader/file.db"\n')
    resolved = resolve_db_path(path, {})
    assert "~" not in str(resolved)
    assert load_settings(path, None, environ={}).db == resolved


def test_resolve_db_path_default(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'interval = "4h"\n')
    assert resolve_db_path(path, {}) == default_db_path()
    assert load_settings(path, None, environ={}).db == resolve_db_path(path, {})
    assert resolve_db_path(None, {}) == load_settings(None, None, environ={}).db == default_db_path()


def test_resolve_db_path_agrees_for_an_empty_db_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'db = ""\n')
    try:
        loaded = load_settings(path, None, environ={}).db
    except ConfigError:
        return  # refusing the empty value is fine too
    assert loaded == resolve_db_path(path, {})


# Finding the config file ---------------------------------------------------------------------------


def test_llmtrader_config_selects_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'interval = "4h"\n', name="elsewhere.toml")
    assert load_settings(None, None, environ={"LLMTRADER_CONFIG": str(path)}).interval == "4h"
    other = write_toml(tmp_path, 'interval = "12h"\n', name="explicit.toml")
    assert load_settings(other, None, environ={"LLMTRADER_CONFIG": str(path)}).interval == "12h"


def test_settings_model_rejects_unknown_keyword() -> None:
    message = config_error(None, {"no_such_setting": 1}, environ={})
    assert "no_such_setting" in message and "--no-such-setting" in message
    assert "interval" in Settings.model_fields
