"""Indicators against the ``ta`` library and against hand-written textbook loops, on real candles."""

from __future__ import annotations

import csv
import math
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ta

from llmtrader.core.indicators import compute, compute_many, latest
from llmtrader.core.market import NAMES, Candles

RTOL = 1e-9
ROWS = 400


def read_rows(perp_dir: Path, name: str, start: int = 0, count: int = ROWS) -> list[list[float]]:
    """``count`` CSV rows from row ``start`` (header skipped), as floats."""
    with (perp_dir / f"{name}.csv").open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return [[float(x) for x in row] for row in islice(reader, start, start + count)]


def candles_of(rows: list[list[float]], symbol: str = "BTCUSDT", interval: str = "1h") -> Candles:
    return Candles.from_rows(symbol, interval, rows)


@pytest.fixture(scope="module")
def btc(perp_dir: Path) -> Candles:
    return candles_of(read_rows(perp_dir, "BTCUSDT-1h"), "BTCUSDT", "1h")


@pytest.fixture(scope="module")
def sol(perp_dir: Path) -> Candles:
    # A chunk from the middle of the file, not its first rows.
    return candles_of(read_rows(perp_dir, "SOLUSDT-15m", start=1000), "SOLUSDT", "15m")


@pytest.fixture(params=["btc", "sol"])
def real(request: pytest.FixtureRequest) -> Candles:
    candles = request.getfixturevalue(request.param)
    assert len(candles) == ROWS
    return candles


def assert_close(ours: np.ndarray, ref: np.ndarray, start: int = 0, label: str = "") -> None:
    """Same NaN pattern from ``start`` on, and a relative difference of at most RTOL where defined."""
    ours = np.asarray(ours, dtype=float)[start:]
    ref = np.asarray(ref, dtype=float)[start:]
    assert ours.shape == ref.shape, label
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{label}: NaN pattern differs")
    defined = ~np.isnan(ref)
    assert defined.sum() > 0, f"{label}: nothing defined to compare"
    np.testing.assert_allclose(ours[defined], ref[defined], rtol=RTOL, atol=0, err_msg=label)


# (a) against the ta library ------------------------------------------------------------------------


def test_every_indicator_matches_ta(real: Candles) -> None:
    ours = compute(real)
    assert set(ours) == set(NAMES)
    close, high, low = pd.Series(real.close), pd.Series(real.high), pd.Series(real.low)
    macd = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    bb = ta.volatility.BollingerBands(close, window=20, window_dev=2)
    reference = {
        "ema20": ta.trend.EMAIndicator(close, window=20).ema_indicator(),
        "ema50": ta.trend.EMAIndicator(close, window=50).ema_indicator(),
        "rsi14": ta.momentum.RSIIndicator(close, window=14).rsi(),
        "macd": macd.macd(),
        "macd_signal": macd.macd_signal(),
        "macd_hist": macd.macd_diff(),
        "bb_upper": bb.bollinger_hband(),
        "bb_middle": bb.bollinger_mavg(),
        "bb_lower": bb.bollinger_lband(),
    }
    for name, ref in reference.items():
        assert_close(ours[name], ref.to_numpy(), label=name)
    atr = ta.volatility.AverageTrueRange(high, low, close, window=14).average_true_range().to_numpy()
    # ta fills the warm-up with 0, ours leaves it undefined.
    assert np.isnan(ours["atr14"][:13]).all()
    assert_close(ours["atr14"], atr, start=13, label="atr14")


def test_warm_up_lengths(btc: Candles) -> None:
    ours = compute(btc)
    first_defined = {name: int(np.argmax(~np.isnan(values))) for name, values in ours.items()}
    # Undefined exactly during the warm-up, defined everywhere after it.
    assert first_defined == {
        "ema20": 19,
        "ema50": 49,
        "rsi14": 13,
        "macd": 25,
        "macd_signal": 33,
        "macd_hist": 33,
        "atr14": 13,
        "bb_upper": 19,
        "bb_middle": 19,
        "bb_lower": 19,
        "volume_ratio": 19,
    }
    for values in ours.values():
        assert len(values) == len(btc)
        assert not np.isnan(values[int(np.argmax(~np.isnan(values))) :]).any()


# (b) against hand-written textbook definitions ------------------------------------------------------

NAN = float("nan")


def hand_ema(values: list[float], n: int) -> list[float]:
    """alpha = 2/(n+1), seeded with the first defined value, undefined until n values were seen."""
    alpha = 2 / (n + 1)
    out: list[float] = []
    ema: float | None = None
    seen = 0
    for v in values:
        if math.isnan(v):
            out.append(NAN)
            continue
        ema = v if ema is None else alpha * v + (1 - alpha) * ema
        seen += 1
        out.append(ema if seen >= n else NAN)
    return out


def hand_rsi(close: list[float], n: int = 14) -> list[float]:
    """Wilder smoothing alpha = 1/n seeded at the first diff, which counts as 0."""
    alpha = 1 / n
    out: list[float] = []
    avg_up = avg_down = 0.0
    for i in range(len(close)):
        diff = 0.0 if i == 0 else close[i] - close[i - 1]
        up, down = max(diff, 0.0), max(-diff, 0.0)
        if i == 0:
            avg_up, avg_down = up, down
        else:
            avg_up = (1 - alpha) * avg_up + alpha * up
            avg_down = (1 - alpha) * avg_down + alpha * down
        if i < n - 1:
            out.append(NAN)
        elif avg_down == 0:
            out.append(100.0)
        else:
            out.append(100 - 100 / (1 + avg_up / avg_down))
    return out


def hand_atr(high: list[float], low: list[float], close: list[float], n: int = 14) -> list[float]:
    """Seeded with the mean of the first n true ranges (the first is high-low), then (prev*(n-1)+tr)/n."""
    tr = [high[0] - low[0]]
    for i in range(1, len(close)):
        tr.append(max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
    out = [NAN] * len(close)
    atr = sum(tr[:n]) / n
    out[n - 1] = atr
    for i in range(n, len(close)):
        atr = (atr * (n - 1) + tr[i]) / n
        out[i] = atr
    return out


def hand_mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def hand_bollinger(close: list[float], n: int = 20, k: float = 2.0) -> tuple[list[float], ...]:
    upper, middle, lower = [NAN] * len(close), [NAN] * len(close), [NAN] * len(close)
    for i in range(n - 1, len(close)):
        window = close[i - n + 1 : i + 1]
        mean = hand_mean(window)
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in window) / n)  # population std
        upper[i], middle[i], lower[i] = mean + k * std, mean, mean - k * std
    return upper, middle, lower


def hand_volume_ratio(volume: list[float], n: int = 20) -> list[float]:
    out = [NAN] * len(volume)
    for i in range(n - 1, len(volume)):
        out[i] = volume[i] / hand_mean(volume[i - n + 1 : i + 1])  # current candle included
    return out


def hand_all(candles: Candles) -> dict[str, list[float]]:
    close, high, low = candles.close.tolist(), candles.high.tolist(), candles.low.tolist()
    ema12, ema26 = hand_ema(close, 12), hand_ema(close, 26)
    macd = [a - b for a, b in zip(ema12, ema26, strict=True)]
    signal = hand_ema(macd, 9)
    upper, middle, lower = hand_bollinger(close)
    return {
        "ema20": hand_ema(close, 20),
        "ema50": hand_ema(close, 50),
        "rsi14": hand_rsi(close),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": [a - b for a, b in zip(macd, signal, strict=True)],
        "atr14": hand_atr(high, low, close),
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "volume_ratio": hand_volume_ratio(candles.volume.tolist()),
    }


def test_hand_loops_are_the_textbook_definitions() -> None:
    """The reference loops themselves, on numbers small enough to check by eye."""
    ema = hand_ema([1.0, 2.0, 3.0], 3)  # alpha 0.5: 1 -> 1.5 -> 2.25
    assert math.isnan(ema[0]) and math.isnan(ema[1]) and ema[2] == 2.25
    assert hand_rsi([1.0, 2.0, 3.0], 2)[1:] == [100.0, 100.0]
    rsi = hand_rsi([3.0, 2.0, 4.0], 2)  # alpha 0.5: up 0,0,2 -> 0,0,1; down 0,1,0 -> 0,0.5,0.25
    assert rsi[1] == 0.0 and rsi[2] == 80.0  # RS = 1 / 0.25 = 4
    atr = hand_atr([3.0, 5.0, 6.0], [1.0, 2.0, 5.0], [2.0, 4.0, 5.5], 2)  # tr 2, 3, 2 -> 2.5, 2.25
    assert math.isnan(atr[0]) and atr[1:] == [2.5, 2.25]
    upper, middle, lower = hand_bollinger([1.0, 3.0], 2)  # mean 2, population std 1
    assert (upper[1], middle[1], lower[1]) == (4.0, 2.0, 0.0)
    assert hand_volume_ratio([1.0, 3.0], 2)[1] == 1.5


@pytest.mark.parametrize("name", NAMES)
def test_matches_hand_computed_values(real: Candles, name: str) -> None:
    ours = compute(real)[name]
    ref = np.array(hand_all(real)[name])
    middle = len(real) // 2
    for index in (middle, len(real) - 1):
        a, b = float(ours[index]), float(ref[index])
        assert not math.isnan(a) and not math.isnan(b)
        assert abs(a - b) <= RTOL * max(abs(a), abs(b)), f"{name}[{index}]: ours {a!r}, by hand {b!r}"
    # And every other index too, with the same undefined warm-up.
    assert_close(ours, ref, label=name)


# (c) many series at once ----------------------------------------------------------------------------


def test_compute_many_equals_compute_on_each(perp_dir: Path) -> None:
    series = [
        candles_of(read_rows(perp_dir, "BTCUSDT-1h", count=300), "BTCUSDT", "1h"),
        candles_of(read_rows(perp_dir, "SOLUSDT-15m", start=100, count=120), "SOLUSDT", "15m"),
        candles_of(read_rows(perp_dir, "ETHUSDT-1h", count=300), "ETHUSDT", "1h"),  # same length as BTC
        candles_of(read_rows(perp_dir, "XRPUSDT-4h", count=10), "XRPUSDT", "4h"),  # shorter than every window
        candles_of(read_rows(perp_dir, "DOGEUSDT-1h", count=57), "DOGEUSDT", "1h"),
        candles_of([], "BNBUSDT", "1h"),
    ]
    many = compute_many(series)
    assert len(many) == len(series)
    for candles, got in zip(series, many, strict=True):
        alone = compute(candles)
        assert set(got) == set(NAMES)
        for name in NAMES:
            assert got[name].shape == (len(candles),), (candles.symbol, name)
            np.testing.assert_array_equal(got[name], alone[name], err_msg=f"{candles.symbol} {name}")
    # The short series is all warm-up; the equal-length series were not mixed up.
    assert all(np.isnan(values).all() for values in many[3].values())
    assert not np.array_equal(many[0]["ema20"], many[2]["ema20"], equal_nan=True)
    assert compute_many([]) == []


# (d) causality --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 13, 14, 20, 34, 51, 199, ROWS - 1])
def test_prefix_gives_the_same_values_no_look_ahead(perp_dir: Path, btc: Candles, k: int) -> None:
    rows = read_rows(perp_dir, "BTCUSDT-1h")
    full = compute(btc)
    prefix = compute(candles_of(rows[:k]))
    for name in NAMES:
        assert prefix[name].shape == (k,)
        np.testing.assert_array_equal(prefix[name], full[name][:k], err_msg=f"{name} at k={k}")


def test_changing_a_later_candle_leaves_earlier_values_unchanged(perp_dir: Path, btc: Candles) -> None:
    rows = read_rows(perp_dir, "BTCUSDT-1h")
    rows[300] = [rows[300][0], rows[300][1], rows[300][2] * 1.5, rows[300][3] * 0.5, rows[300][4] * 1.2, 1e9]
    changed = compute(candles_of(rows))
    full = compute(btc)
    for name in NAMES:
        np.testing.assert_array_equal(changed[name][:300], full[name][:300], err_msg=name)
        assert changed[name][300] != full[name][300], name


# (e) latest() ---------------------------------------------------------------------------------------


def test_latest_turns_nan_into_none(btc: Candles, perp_dir: Path) -> None:
    full = compute(btc)
    newest = latest(full)
    assert set(newest) == set(NAMES)
    for name in NAMES:
        assert isinstance(newest[name], float)
        assert newest[name] == float(full[name][-1])
    early = latest(full, 15)  # RSI and ATR are defined, the EMAs, MACD and Bollinger are not
    assert early["rsi14"] == float(full["rsi14"][15])
    assert early["atr14"] == float(full["atr14"][15])
    for name in ("ema20", "ema50", "macd", "macd_signal", "bb_middle", "volume_ratio"):
        assert early[name] is None, name

    short = latest(compute(candles_of(read_rows(perp_dir, "BTCUSDT-1h", count=5))))
    assert short == dict.fromkeys(NAMES)
    assert latest(compute(candles_of([]))) == dict.fromkeys(NAMES)


def test_slices_of_precomputed_indicators_read_the_same_values_as_slicing_each_series() -> None:
    """A backtest's candles carry indicators computed once and seen through windows: any chain of slices
    reads the same series, and latest() the same values (NaN as None), as slicing every array would."""
    rng = np.random.default_rng(7)
    n = 60
    rows = [[i * 3_600_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 10.0] for i in range(n)]
    series = {name: rng.normal(size=n) for name in ("a", "b")}
    series["a"][rng.integers(0, n, 10)] = np.nan
    whole = Candles.from_rows("BTCUSDT", "1h", rows)
    whole = Candles(**{**whole.__dict__, "indicators": series})
    for _ in range(300):
        candles, expected = whole, dict(series)
        for _ in range(int(rng.integers(1, 4))):
            start = int(rng.integers(-n, n)) if rng.random() < 0.8 else None
            stop = int(rng.integers(-n, n + 5)) if rng.random() < 0.8 else None
            candles = candles._slice(start, stop)
            expected = {k: v[start:stop] for k, v in expected.items()}
        assert candles.indicators is not None and list(candles.indicators) == ["a", "b"]
        for name, values in expected.items():
            np.testing.assert_array_equal(candles.indicators[name], values)
            assert len(candles.close) == len(values)
        for index in (-1, 0, -2, 3):
            want = {
                k: (None if not -len(v) <= index < len(v) or math.isnan(v[index]) else float(v[index]))
                for k, v in expected.items()
            }
            assert latest(candles.indicators, index) == want
