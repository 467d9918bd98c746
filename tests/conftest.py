"""Fixtures: the fake venue and the fake model on loopback, an isolated environment, the CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM

ROOT = Path(__file__).resolve().parents[1]
TEST_KEY = "sk-or-v1-test-secret-7f3a9c1e5b2d"
# A V3 API wallet for live tests: the reference's test-vector key, its address, and a main wallet.
SIGNER_KEY = "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"
SIGNER = "0xb67f9a782d3678a0bac50c22eacbb4924fe9d4cf"
USER = "0x63dd5acc6b1aa0f563956c0e534dd30b6dcf7c4e"  # the main wallet the agent trades for


# Real Binance USD-M candles and funding, an excerpt of ../shared/data committed with the suite (see
# tests/data/SOURCES.md): every test runs on a fresh clone. ../shared/data is read by bench/ only.
DATA_DIR = Path(__file__).resolve().parent / "data"


def require_data(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it under CI (where a skip would hide it)."""
    if not path.exists():
        message = f"test data not found: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: missing data is a failure, not a skip)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def perp_dir() -> Path:
    """The folder of real candles (``{SYMBOL}-{tf}.csv``) and funding (``{SYMBOL}-funding.csv``)."""
    return require_data(DATA_DIR / "binance-usdm-perp" / "BTCUSDT-1h.csv").parent


@pytest.fixture
def fake_aster(perp_dir: Path) -> Iterator[FakeAster]:
    fake = FakeAster(perp_dir).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM().start()
    yield fake
    fake.stop()


# Settings read from the environment: cleared so the developer's own never leak into a test.
_ENV = (
    "ASSETS", "INTERVAL", "LEVERAGE", "MAX_POSITION_SIZE_USD", "LLM_MODEL", "OPENROUTER_API_KEY", "LLM_API_KEY",
    "LLM_BASE_URL", "ASTERDEX_BASE_URL", "TRADING_MODE", "LLMTRADER_DB", "LLMTRADER_CONFIG", "PAPER_BALANCE_USD",
    "LLMTRADER_STRATEGY", "LLMTRADER_STRATEGIES_DIR", "LLMTRADER_ACCOUNT", "LLM_TIMEOUT_S", "LLM_MAX_RETRIES",
    "LLM_RETRY_MAX_WAIT_S", "LLM_MAX_REASKS", "HTTP_TIMEOUT_S", "EXCHANGE_INFO_TTL_S", "MARGIN_TYPE",
    "STOP_LOSS_ATTEMPTS", "ORDER_LOOKUP_GRACE_S", "PAPER_TAKER_FEE", "PAPER_SLIPPAGE_BPS", "PAPER_CANDLE_INTERVAL",
    "ASTERDEX_CHAIN_ID", "ASTERDEX_RECV_WINDOW_MS", "ASTERDEX_USER", "ASTERDEX_SIGNER", "ASTERDEX_SIGNER_PRIVATE_KEY",
    "ASTERDEX_API_KEY", "ASTERDEX_API_SECRET", "DAILY_LOSS_KILL_PCT", "MAX_DRAWDOWN_PCT", "DAILY_MODEL_BUDGET_USD",
    "MODEL_CALLS_PER_MINUTE", "MODEL_CALLS_PER_HOUR", "CIRCUIT_FAILURES", "CIRCUIT_COOLDOWN_MINUTES",
    "DECISION_CACHE_TTL_S",
)  # fmt: skip


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No llmtrader setting in the environment, a temporary working directory and database."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))  # never the developer's config.toml
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))  # the venue-account locks
    db = tmp_path / "llmtrader.db"
    monkeypatch.setenv("LLMTRADER_DB", str(db))
    return db


@pytest.fixture
def env(clean_env: Path, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pointed at both fakes, with a model key and fast retries. Returns the database path."""
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    monkeypatch.setenv("LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("LLM_MODEL", "fake/model")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("ASSETS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("LLM_RETRY_MAX_WAIT_S", "0.05")
    monkeypatch.setenv("LLM_TIMEOUT_S", "5")
    return clean_env


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def paper(env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Paper mode on the fake venue, replaying 15m candles (the data has no 1m candles)."""
    monkeypatch.setenv("PAPER_CANDLE_INTERVAL", "15m")
    return env


@pytest.fixture
def live(env: Path, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Live mode with V3 credentials registered at the fake venue."""
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("ASTERDEX_USER", USER)
    monkeypatch.setenv("ASTERDEX_SIGNER", SIGNER)
    monkeypatch.setenv("ASTERDEX_SIGNER_PRIVATE_KEY", SIGNER_KEY)
    fake_aster.add_v3_account(USER, SIGNER)
    return env
