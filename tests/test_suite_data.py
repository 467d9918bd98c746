"""The suite carries its own data: tests/data is whole and small, and no test needs ../shared/data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR, ROOT, require_data

PERP = DATA_DIR / "binance-usdm-perp"
STEP_MS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000}
CANDLE_HEADER = "open_time_ms,open,high,low,close,volume"
FUNDING_HEADER = "funding_time_ms,funding_rate"
PLAIN = re.compile(r"-?[0-9]+(\.[0-9]*[1-9])?")  # plain decimal notation: no exponent, no trailing zero


def test_the_excerpt_is_small_and_every_file_is_listed_in_its_sources() -> None:
    files = sorted(PERP.glob("*.csv"))
    assert len(files) >= 20
    assert sum(f.stat().st_size for f in files) < 1_500_000  # well under 2 MB
    sources = (DATA_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for f in files:
        assert f"`{f.name}`" in sources, f"{f.name} is not described in tests/data/SOURCES.md"


@pytest.mark.parametrize("path", sorted(PERP.glob("*.csv")), ids=lambda p: p.name)
def test_every_file_has_the_download_format_sorted_unique_rows_on_the_grid(path: Path) -> None:
    symbol, kind = path.stem.rsplit("-", 1)
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    assert rows, path.name
    times = [int(r.split(",", 1)[0]) for r in rows]
    assert times == sorted(set(times)), f"{path.name}: rows not ascending or repeated"
    if kind == "funding":
        assert header == FUNDING_HEADER
        assert all(len(r.split(",")) == 2 and PLAIN.fullmatch(r.split(",")[1]) for r in rows)
        assert all(t % 60_000 == 0 for t in times)
        return
    assert header == CANDLE_HEADER and symbol.endswith("USDT")
    assert all(t % STEP_MS[kind] == 0 for t in times), f"{path.name}: an open time off the {kind} grid"
    for r in rows:
        fields = r.split(",")
        assert len(fields) == 6 and all(PLAIN.fullmatch(x) for x in fields), r
        o, h, low, c, v = (float(x) for x in fields[1:])
        assert low <= min(o, c) <= max(o, c) <= h and v >= 0, r


def test_missing_data_skips_a_test_but_fails_it_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "BTCUSDT-1h.csv"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="test data not found"):
        require_data(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing data is a failure"):
        require_data(missing)
    assert require_data(PERP / "BTCUSDT-1h.csv") == PERP / "BTCUSDT-1h.csv"


def test_tests_on_real_candles_run_without_shared_data(tmp_path: Path) -> None:
    """A clone without ../shared/data (and CI=true, as .ci/run sets it): the real-candle tests pass, none skips."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(CI="true", LLMTRADER_SHARED_DATA=str(tmp_path / "absent"))
    tests = [
        "tests/test_trades.py::test_a_paper_liquidation_on_real_candles_matches_the_wallet",
        "tests/test_market.py::test_klines_drop_the_open_candle",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "skipped" not in result.stdout, result.stdout
