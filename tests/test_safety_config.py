"""Where settings come from and what they may do with a credential: no implicit ./config.toml, no key over
plain http except to this machine, no credentials in a URL, no value echoed from a variable that was given
the wrong thing, one documented name for the strategy variable, and `doctor` naming what is set but ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.accounts import settings_for_account
from llmtrader.config.load import load_settings
from llmtrader.core.redact import redact
from llmtrader.errors import ConfigError
from tests.conftest import ROOT, SIGNER, SIGNER_KEY, TEST_KEY, USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM

GITHUB_TOKEN = "ghp_0123456789abcdefABCDEF0123456789abcd"
PASSWORD = "hunter2-url-password-77"


def config_error(path: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, None, environ=environ)
    assert info.value.exit_code == 2
    return str(info.value)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- where the config file comes from ---------------------------------------------------------------


def test_a_config_toml_in_the_working_directory_is_never_read(
    clean_env: Path,
    fake_aster: FakeAster,
    fake_llm: FakeLLM,
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cloned "strategy pack" cannot point the model endpoint at its host and name GITHUB_TOKEN as the key."""
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    monkeypatch.setenv("ASSETS", "BTCUSDT")
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    write(
        tmp_path,  # the working directory of clean_env
        f'llm_model = "fake/model"\nllm_base_url = "{fake_llm.base_url}"\n'
        '[accounts.default]\nenv.llm_api_key = "GITHUB_TOKEN"\n',
    )
    result = runner.invoke(app, ["decide", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "baseline"  # no key of ours: the built-in rules
    assert fake_llm.requests == [] and fake_llm.headers == []  # the pack's endpoint never heard from us
    assert GITHUB_TOKEN not in result.output


def test_the_config_file_comes_from_the_flag_the_variable_or_the_user_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, 'interval = "30m"\n')  # ./config.toml: ignored
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_settings(None, None, environ={}).interval == "1h"
    user = tmp_path / "xdg" / "llmtrader"
    user.mkdir(parents=True)
    write(user, 'interval = "4h"\n')
    assert load_settings(None, None, environ={}).interval == "4h"
    other = write(tmp_path, 'interval = "2h"\n', name="other.toml")
    assert load_settings(None, None, environ={"LLMTRADER_CONFIG": str(other)}).interval == "2h"
    assert load_settings(write(tmp_path, 'interval = "12h"\n', name="x.toml"), None, environ={}).interval == "12h"


# ---- URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["LLM_BASE_URL", "ASTERDEX_BASE_URL"])
def test_a_url_with_credentials_is_refused_and_never_shown(name: str, tmp_path: Path) -> None:
    url = f"https://bob:{PASSWORD}@api.example.com/v1"
    message = config_error(None, {name: url})
    assert name in message and "user:password@" in message
    assert PASSWORD not in message and "bob" not in message
    # In an account's table, too.
    key = name.lower()
    path = write(tmp_path, f'[accounts.main]\n{key} = "{url}"\n')
    message = config_error(path, {})
    assert f"accounts.main.{key}" in message and PASSWORD not in message and "bob" not in message
    # and a log line that carries one anyway is masked
    assert PASSWORD not in redact(f"GET {url}/models") and "api.example.com/v1/models" in redact(f"GET {url}/models")


@pytest.mark.parametrize("name", ["LLM_BASE_URL", "ASTERDEX_BASE_URL"])
@pytest.mark.parametrize("tail", [f"?api_key={PASSWORD}", f"?x=1&token={PASSWORD}", f"#{PASSWORD}"])
def test_a_url_with_a_query_string_or_fragment_is_refused_and_never_shown(name: str, tail: str) -> None:
    message = config_error(None, {name: f"https://api.example.com/v1{tail}"})
    assert name in message and "query string" in message and "https://host/v1" in message
    assert PASSWORD not in message and "\n" not in message.strip()


def test_config_show_with_a_credential_url_prints_no_password(clean_env: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["config", "show"], env={"LLM_BASE_URL": f"https://u:{PASSWORD}@h.example/v1"})
    assert result.exit_code == 2 and PASSWORD not in result.output


def test_a_model_key_goes_over_http_only_to_this_machine(tmp_path: Path) -> None:
    message = config_error(None, {"LLM_BASE_URL": "http://llm.example.com/v1", "OPENROUTER_API_KEY": TEST_KEY})
    assert "llm_base_url" in message and "https://" in message and TEST_KEY not in message
    for url in ("http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1"):
        assert load_settings(None, None, environ={"LLM_BASE_URL": url, "OPENROUTER_API_KEY": TEST_KEY})
    # Without a key nothing secret travels: a plain-http endpoint is accepted.
    assert load_settings(None, None, environ={"LLM_BASE_URL": "http://llm.example.com/v1"})
    # An account's endpoint, with the key it names or the top-level one.
    path = write(tmp_path, '[accounts.main]\nllm_base_url = "http://llm.example.com/v1"\n')
    assert "accounts.main.llm_base_url" in config_error(path, {"OPENROUTER_API_KEY": TEST_KEY})
    path = write(tmp_path, '[accounts.main]\nllm_base_url = "http://llm.example.com/v1"\nenv.llm_api_key = "K"\n')
    settings = load_settings(path, None, environ={})
    with pytest.raises(ConfigError, match=r"accounts\.main\.llm_base_url .* https://"):
        settings_for_account(settings, "main", environ={"K": TEST_KEY})


def test_venue_credentials_go_over_http_only_to_this_machine(tmp_path: Path) -> None:
    v1 = {"ASTERDEX_API_KEY": "k" * 16, "ASTERDEX_API_SECRET": "s" * 32}
    message = config_error(None, {"ASTERDEX_BASE_URL": "http://fapi.example.com", **v1})
    assert "asterdex_base_url" in message and "venue credentials" in message and "s" * 32 not in message
    assert load_settings(None, None, environ={"ASTERDEX_BASE_URL": "http://127.0.0.1:9", **v1})
    assert load_settings(None, None, environ={"ASTERDEX_BASE_URL": "http://fapi.example.com"})  # market data only
    path = write(
        tmp_path,
        '[accounts.main]\nasterdex_base_url = "http://fapi.example.com"\n'
        'env.asterdex_api_key = "MK"\nenv.asterdex_api_secret = "MS"\n',
    )
    settings = load_settings(path, None, environ={})
    with pytest.raises(ConfigError, match=r"accounts\.main\.asterdex_base_url"):
        settings_for_account(settings, "main", environ={"MK": "k" * 16, "MS": "s" * 32})


# ---- a value in the wrong variable is never echoed ---------------------------------------------------


@pytest.mark.parametrize("variable", ["ASTERDEX_SIGNER", "ASTERDEX_USER"])
@pytest.mark.parametrize("pasted", [SIGNER_KEY, SIGNER_KEY.removeprefix("0x"), "not-an-address-but-private"])
def test_a_private_key_in_an_address_variable_is_not_echoed(variable: str, pasted: str) -> None:
    environ = {"ASTERDEX_USER": USER, "ASTERDEX_SIGNER": SIGNER, variable: pasted}
    message = config_error(None, environ)
    assert variable in message and "40-hex-digit wallet address" in message
    assert pasted not in message and pasted.removeprefix("0x")[:16] not in message


def test_an_accounts_variable_with_a_pasted_key_is_not_echoed(
    clean_env: Path, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[accounts.main]\nenv.asterdex_signer = "MAIN_SIGNER"\n', name="acc.toml")
    settings = load_settings(path, None, environ={})
    with pytest.raises(ConfigError) as info:
        settings_for_account(settings, "main", environ={"MAIN_SIGNER": SIGNER_KEY})
    message = str(info.value)
    assert "accounts.main.env.asterdex_signer" in message and "MAIN_SIGNER" in message
    assert "wallet address" in message and SIGNER_KEY.removeprefix("0x")[:16] not in message
    # Through the CLI too.
    monkeypatch.setenv("MAIN_SIGNER", SIGNER_KEY)
    result = runner.invoke(app, ["--config", str(path), "run", "--once"])
    assert result.exit_code == 2 and "MAIN_SIGNER" in result.stderr
    assert SIGNER_KEY.removeprefix("0x")[:16] not in result.output


# ---- one name for the strategy variable, and doctor on what is ignored --------------------------------


def test_the_strategy_variable_has_one_documented_name(runner: CliRunner) -> None:
    assert load_settings(None, None, environ={"LLMTRADER_STRATEGY": "aggressive"}).strategy == "aggressive"
    assert load_settings(None, None, environ={"STRATEGY": "aggressive"}).strategy == "default"
    result = runner.invoke(app, ["backtest", "--help"], env={"COLUMNS": "200"})
    assert "LLMTRADER_STRATEGY" in result.stdout and "default: STRATEGY)" not in result.stdout
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in docs)
    assert "`STRATEGY`" not in text and "`LLMTRADER_STRATEGY`" in (ROOT / "docs" / "configuration.md").read_text()


def test_doctor_reports_variables_that_are_set_but_ignored(
    paper: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATEGY", "aggressive")
    monkeypatch.setenv("LLMTRADER_STRATEG", "conservative")
    monkeypatch.setenv("LLM_API_KEY", "sk-shadowed-key-0000000000000000")
    result = runner.invoke(app, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    detail = checks["environment"]["detail"]
    assert checks["environment"]["status"] == "warn"
    assert "STRATEGY is set but ignored: the variable is LLMTRADER_STRATEGY" in detail
    assert "LLMTRADER_STRATEG is set but is no llmtrader variable (did you mean LLMTRADER_STRATEGY?)" in detail
    assert "LLM_API_KEY is set but ignored" in detail
    assert "aggressive" not in detail and "sk-shadowed" not in result.stdout  # names, never values
