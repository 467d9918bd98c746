"""Multi-account configuration: [accounts.NAME] tables over the top-level settings, credentials from the
environment variables each account names, errors naming accounts.NAME.key, and the single-account default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.accounts import (
    account_names,
    all_account_settings,
    credential_problems,
    require_account,
    settings_for_account,
)
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.core.guards import GuardSettings
from llmtrader.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
MAIN_KEY = "sk-or-v1-main-account-5d1e0c"
SIDE_KEY = "sk-or-v1-side-account-8a2f44"
TOP_KEY = "sk-or-v1-top-level-key-19bd7e"
V1_SECRET = "v1-secret-of-main-0c7a1b"
WALLET = "0x" + "ab" * 20

TWO_ACCOUNTS = """
assets = ["BTCUSDT"]
leverage = 3
llm_model = "x-ai/grok-4"
max_drawdown_pct = 25

[accounts.main]
assets = ["ETHUSDT", "solusdt"]
trading_mode = "live"
llm_model = "openai/gpt-4o"
llm_base_url = "https://api.openai.com/v1/"
leverage = 5
max_position_size_usd = 2500
daily_model_budget_usd = 3
env.llm_api_key = "MAIN_OPENROUTER_KEY"
env.asterdex_api_key = "MAIN_ASTER_KEY"
env.asterdex_api_secret = "MAIN_ASTER_SECRET"

[accounts.side-2]
paper_balance_usd = 1500
strategy = "conservative"
circuit_failures = 5
decision_cache_ttl_s = 0
env.llm_api_key = "SIDE_KEY"
"""

ENVIRON = {
    "MAIN_OPENROUTER_KEY": MAIN_KEY,
    "MAIN_ASTER_KEY": "v1-key-of-main",
    "MAIN_ASTER_SECRET": V1_SECRET,
    "SIDE_KEY": SIDE_KEY,
    "OPENROUTER_API_KEY": TOP_KEY,
    "ASTERDEX_USER": WALLET,  # top-level venue credentials: never inherited by an account
    "TRADING_MODE": "live",  # the process's opt-in: the file alone never makes 'main' live
}


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no config.toml, so the project's own never leaks in."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, None, environ=environ or {})
    assert info.value.exit_code == 2
    return str(info.value)


def test_without_an_accounts_table_there_is_one_account_as_today() -> None:
    settings = load_settings(None, None, environ={"LLMTRADER_ACCOUNT": "solo", "OPENROUTER_API_KEY": TOP_KEY})
    assert settings.accounts == {}
    assert account_names(settings) == ["solo"]
    assert settings_for_account(settings, "solo", environ={}) is settings
    assert all_account_settings(settings) == {"solo": settings}
    assert credential_problems(settings, "solo", environ={}) == []
    with pytest.raises(ConfigError, match="unknown account 'main': the only account is 'solo'"):
        settings_for_account(settings, "main")


def test_two_accounts_with_their_own_assets_modes_and_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_ACCOUNTS)
    settings = load_settings(path, None, environ=ENVIRON)
    assert account_names(settings) == ["main", "side-2"]
    accounts = all_account_settings(settings, ENVIRON)
    main, side = accounts["main"], accounts["side-2"]
    assert isinstance(main, Settings) and isinstance(side, Settings)

    assert main.account == "main" and side.account == "side-2"
    assert main.assets == ["ETHUSDT", "SOLUSDT"] and side.assets == ["BTCUSDT"]  # side inherits the top level
    assert (main.trading_mode, side.trading_mode) == ("live", "paper")
    assert (main.leverage, side.leverage) == (5, 3)
    assert main.max_position_size_usd == 2500 and side.max_position_size_usd == 10_000
    assert main.llm_model == "openai/gpt-4o" and side.llm_model == "x-ai/grok-4"
    assert main.llm_base_url == "https://api.openai.com/v1"  # validated like a top-level value
    assert side.paper_balance_usd == 1500 and side.strategy == "conservative"
    assert main.db == side.db == settings.db  # one database for all accounts

    assert main.llm_api_key is not None and main.llm_api_key.get_secret_value() == MAIN_KEY
    assert side.llm_api_key is not None and side.llm_api_key.get_secret_value() == SIDE_KEY
    assert main.asterdex_api_key is not None and main.asterdex_api_key.get_secret_value() == "v1-key-of-main"
    assert main.asterdex_api_secret is not None and main.asterdex_api_secret.get_secret_value() == V1_SECRET
    # Venue credentials are never inherited from the top level (ASTERDEX_USER is set there).
    assert settings.asterdex_user == WALLET
    assert main.asterdex_user is None and side.asterdex_user is None and side.asterdex_api_key is None
    assert credential_problems(settings, "main", ENVIRON) == []

    # Guard settings: the top level's, each account's overrides on top.
    main_gs, side_gs = GuardSettings.from_settings(main), GuardSettings.from_settings(side)
    assert main_gs.max_drawdown_pct == side_gs.max_drawdown_pct == 25
    assert main_gs.daily_model_budget_usd == 3 and side_gs.daily_model_budget_usd is None
    assert (main_gs.circuit_failures, side_gs.circuit_failures) == (3, 5)
    assert (main_gs.decision_cache_ttl_ms, side_gs.decision_cache_ttl_ms) == (3_600_000, 0)

    for s in (main, side):  # secrets stay SecretStr and redacted
        text = json.dumps(s.redacted(), default=str) + repr(s)
        assert MAIN_KEY not in text and SIDE_KEY not in text and V1_SECRET not in text


def test_the_model_key_falls_back_to_the_top_level_one(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.a]\nassets = ["BTCUSDT"]\n[accounts.b]\nenv.llm_api_key = "B_KEY"\n')
    settings = load_settings(path, None, environ={"OPENROUTER_API_KEY": TOP_KEY})
    a = settings_for_account(settings, "a", environ={"OPENROUTER_API_KEY": TOP_KEY})
    assert a.llm_api_key is not None and a.llm_api_key.get_secret_value() == TOP_KEY
    b = settings_for_account(settings, "b", environ={})  # named but unset: absent, and reported
    assert b.llm_api_key is None
    assert credential_problems(settings, "b", environ={}) == [
        "accounts.b.env.llm_api_key names B_KEY, which is not set in the environment"
    ]


def test_account_overrides_win_over_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.a]\nleverage = 4\n[accounts.b]\nassets = ["XRPUSDT"]\n')
    settings = load_settings(path, None, environ={"LEVERAGE": "7", "ASSETS": "DOGEUSDT"})
    a = settings_for_account(settings, "a", environ={})
    b = settings_for_account(settings, "b", environ={})
    assert (a.leverage, a.assets) == (4, ["DOGEUSDT"])
    assert (b.leverage, b.assets) == (7, ["XRPUSDT"])


def test_unknown_account_lists_the_configured_ones(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_ACCOUNTS)
    settings = load_settings(path, None, environ={"TRADING_MODE": "live"})
    for call in (
        lambda: settings_for_account(settings, "X"),
        lambda: require_account(settings, "X"),
        lambda: credential_problems(settings, "X"),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.exit_code == 2
        assert str(info.value) == f"unknown account 'X'; configured accounts: main, side-2 (in {path})"


def test_bad_values_name_the_account_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.main]\nleverage = 0\nassets = "BTC-USDT"\n[accounts.ok]\n')
    message = config_error(path)
    assert f"setting accounts.main.leverage = 0 (in {path}) is invalid" in message
    assert f"setting accounts.main.assets = 'BTC-USDT' (in {path}) is invalid: malformed symbol" in message

    path = write(tmp_path, '[accounts.main]\ntrading_mode = "yolo"\n')
    assert f"setting accounts.main.trading_mode = 'yolo' (in {path}) is invalid" in config_error(path)

    path = write(tmp_path, "[accounts.main]\nmax_drawdown_pct = 120\n")
    assert f"setting accounts.main.max_drawdown_pct = 120 (in {path}) is invalid" in config_error(path)


def test_unknown_keys_and_bad_names(tmp_path: Path) -> None:
    path = write(tmp_path, "[accounts.main]\nlevrage = 3\n")
    message = config_error(path)
    assert (
        f"[accounts.main] in {path}: unknown key 'levrage' (did you mean 'leverage'?); an account may set: assets"
        in message
    )
    path = write(tmp_path, "[accounts.main]\ndb = 'x.db'\n")
    assert "unknown key 'db'" in config_error(path)
    path = write(tmp_path, '[accounts.main]\nenv.llm_key = "X"\n')
    assert f"unknown key 'accounts.main.env.llm_key' in {path}" in config_error(path)
    path = write(tmp_path, '[accounts."two words"]\nleverage = 2\n')
    assert f"account name 'two words' in {path} is invalid" in config_error(path)


def test_credentials_never_come_from_the_file_and_are_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, f'[accounts.main]\nllm_api_key = "{MAIN_KEY}"\n')
    message = config_error(path)
    assert "key 'accounts.main.llm_api_key' holds a credential" in message
    assert 'env.llm_api_key = "MAIN_LLM_API_KEY"' in message and MAIN_KEY not in message
    # A secret pasted where the variable's NAME belongs is refused, and not shown either.
    path = write(tmp_path, f'[accounts.main]\nenv.asterdex_api_secret = "{MAIN_KEY}"\n')
    message = config_error(path)
    assert "accounts.main.env.asterdex_api_secret" in message and "NAME of an environment variable" in message
    assert MAIN_KEY not in message


def test_a_bad_credential_value_names_the_account_and_its_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.main]\nenv.asterdex_user = "MAIN_USER"\n')
    settings = load_settings(path, None, environ={})
    with pytest.raises(ConfigError) as info:
        settings_for_account(settings, "main", environ={"MAIN_USER": "0x12"})
    assert f"setting accounts.main.env.asterdex_user (in {path}): environment variable MAIN_USER is invalid" in str(
        info.value
    )
    assert "0x12" not in str(info.value)  # a variable's value is never repeated


def test_live_credential_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[accounts.none]
trading_mode = "live"
[accounts.partial]
trading_mode = "live"
env.asterdex_user = "P_USER"
env.asterdex_signer = "P_SIGNER"
[accounts.both]
trading_mode = "live"
env.asterdex_api_key = "B_KEY"
env.asterdex_api_secret = "B_SECRET"
env.asterdex_user = "B_USER"
env.asterdex_signer = "B_SIGNER"
env.asterdex_signer_private_key = "B_PK"
[accounts.paper]
""",
    )
    settings = load_settings(path, None, environ={"TRADING_MODE": "live"})
    environ = {"P_USER": WALLET, "P_SIGNER": WALLET, "B_KEY": "k", "B_SECRET": "s", "B_USER": WALLET}
    assert "names no venue credentials" in credential_problems(settings, "none", environ)[0]
    assert credential_problems(settings, "partial", environ) == [
        "accounts.partial names an incomplete venue credential set: env.asterdex_signer_private_key missing"
    ]
    both = credential_problems(settings, "both", environ)
    assert "accounts.both.env.asterdex_signer names B_SIGNER, which is not set in the environment" in both
    assert "accounts.both names both venue credential sets (V3 and V1): keep one of them" in both
    assert credential_problems(settings, "paper", environ) == []


def test_guard_settings_at_the_top_level_and_off_with_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "daily_loss_kill_pct = 0\nmodel_calls_per_minute = 10\n[accounts.a]\nmax_drawdown_pct = 0\n")
    settings = load_settings(path, None, environ={"DAILY_MODEL_BUDGET_USD": "2.5"})
    gs = GuardSettings.from_settings(settings_for_account(settings, "a", environ={}))
    assert gs.daily_loss_kill_pct is None and gs.max_drawdown_pct is None
    assert gs.model_calls_per_minute == 10 and gs.daily_model_budget_usd == 2.5


def test_the_example_accounts_block_loads(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [accounts.main]")
    block = "\n".join(line.removeprefix("# ") for line in lines[start:])
    settings = load_settings(write(tmp_path, block), None, environ={"TRADING_MODE": "live"})
    assert account_names(settings) == ["main", "experiments"]
    environ = {
        "MAIN_OPENROUTER_KEY": MAIN_KEY,
        "MAIN_ASTER_USER": WALLET,
        "MAIN_ASTER_SIGNER": WALLET,
        "MAIN_ASTER_SIGNER_KEY": "0x" + "11" * 32,
    }
    main = settings_for_account(settings, "main", environ)
    assert main.trading_mode == "live" and main.asterdex_user == WALLET and main.max_drawdown_pct == 20
    assert credential_problems(settings, "main", environ) == []
    experiments = settings_for_account(settings, "experiments", environ)
    assert experiments.strategy == "aggressive" and experiments.trading_mode == "paper"


def test_config_show_lists_the_accounts_without_secrets(
    clean_env: Path, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, TWO_ACCOUNTS)
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["--config", str(path), "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["accounts"]["main"]["env"]["llm_api_key"] == "MAIN_OPENROUTER_KEY"
    assert data["accounts"]["main"]["leverage"] == 5
    assert MAIN_KEY not in result.stdout and V1_SECRET not in result.stdout and SIDE_KEY not in result.stdout
