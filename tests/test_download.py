"""``llmtrader download`` against the fake venue: exact venue strings, closed candles, paging, resume,
interruption, refusals, and the summary. The fake's clock is frozen mid-hour, so every download in a test
sees the same candles and the one in progress is known."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.backtest import download as download_module
from llmtrader.backtest.datafiles import plain_number
from llmtrader.backtest.download import FileProgress, download_history
from llmtrader.cli.app import app
from llmtrader.exchange.asterdex_market import AsterMarketData
from tests.fakes.aster import FakeAster
from tests.helpers import WIDTHS, at_width, lines_of

HOUR = 3_600_000
DAY = 86_400_000
SYMBOLS = "BTCUSDT,ETHUSDT"
CANDLE_HEADER = "open_time_ms,open,high,low,close,volume"
FUNDING_HEADER = "funding_time_ms,funding_rate"


def freeze(fake: FakeAster) -> int:
    """Stop the fake's clock half-way through the current hour; return that time."""
    frozen = int(time.time() * 1000) // HOUR * HOUR + 30 * 60_000
    fake.clock = lambda: frozen
    return frozen


@pytest.fixture
def venue(fake_aster: FakeAster, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAster:
    """The fake venue with a frozen clock, and ASTERDEX_BASE_URL pointing at it."""
    freeze(fake_aster)
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    return fake_aster


def days_ago(fake: FakeAster, days: int) -> int:
    """Midnight UTC ``days`` days before the fake's now, in ms (funding events fall on 00:00, 08:00, 16:00)."""
    return (fake.clock() // DAY - days) * DAY


def date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def run_download(runner: CliRunner, out: Path, *args: str) -> Any:
    return runner.invoke(app, ["download", "--out", str(out), *args], env={"COLUMNS": "200"})


def full(runner: CliRunner, fake: FakeAster, out: Path, *extra: str) -> Any:
    """BTC and ETH 1h from 120 days ago to now (about 2,880 candles: two klines pages each)."""
    return run_download(
        runner, out, "--symbols", SYMBOLS, "--interval", "1h", "--since", date(days_ago(fake, 120)), *extra
    )


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def shared_lines(perp_dir: Path, name: str, offset_ms: int, start_ms: int, end_ms: int) -> list[str]:
    """The rows of a test data file as written there, shifted to the fake's time, in [start_ms, end_ms)."""
    out = []
    for line in lines(perp_dir / name)[1:]:
        when, rest = line.split(",", 1)
        shifted = int(when) + offset_ms
        if start_ms <= shifted < end_ms:
            out.append(f"{shifted},{rest}")
    return out


def served_candle_lines(fake: FakeAster, symbol: str, start_ms: int) -> list[str]:
    """The closed candles the fake serves from ``start_ms``, as the venue's strings in plain notation."""
    rows = [r for r in fake.closed_candles(symbol, "1h") if r[0] >= start_ms]
    return [",".join([str(int(r[0])), *(plain_number(f"{x}") for x in r[1:6])]) for r in rows]


def served_funding_lines(fake: FakeAster, symbol: str, start_ms: int, end_ms: int) -> list[str]:
    """The funding events as the fake's fundingRate endpoint answers them, in plain notation."""
    params = {"symbol": symbol, "startTime": str(start_ms), "endTime": str(end_ms - 1), "limit": "1000"}
    status, events = fake.handle("/fapi/v3/fundingRate", params)
    assert status == 200 and len(events) < 1000
    return [f"{e['fundingTime']},{plain_number(e['fundingRate'])}" for e in events]


def requests(fake: FakeAster, path: str) -> list[dict[str, str]]:
    return [params for _, p, params in fake.requests if p == path]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.csv"))}


# ---- a whole download ---------------------------------------------------------------------------------------


def test_two_symbols_over_two_pages_are_the_venue_candles_exactly(
    venue: FakeAster, runner: CliRunner, perp_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    since = days_ago(venue, 120)
    result = full(runner, venue, out)
    assert result.exit_code == 0, result.output
    now = venue.clock()
    open_candle = int(venue.open_candle("BTCUSDT", "1h")[0])
    assert open_candle + HOUR > now  # the fake does serve a candle in progress
    for symbol in ("BTCUSDT", "ETHUSDT"):
        rows = lines(out / f"{symbol}-1h.csv")
        assert rows[0] == CANDLE_HEADER
        assert rows[1:] == served_candle_lines(venue, symbol, since)
        # ... which are the lines of the data file, digit for digit.
        assert rows[1:] == shared_lines(perp_dir, f"{symbol}-1h.csv", venue.offset_ms, since, now - HOUR + 1)
        assert len(rows) - 1 > 1500
        last_open = int(rows[-1].split(",")[0])
        assert last_open + HOUR <= now and last_open == open_candle - HOUR  # closed candles only, up to now
        assert int(rows[1].split(",")[0]) == since
    klines = requests(venue, "/fapi/v3/klines")
    assert len(klines) == 4  # two pages a symbol, no probing request
    assert all(int(k["limit"]) <= 1500 for k in klines)
    assert all(int(k["endTime"]) < open_candle for k in klines)  # the open candle is never even asked for
    assert "BTCUSDT" in result.stdout and "BTCUSDT-1h.csv" in result.stdout


def test_funding_is_the_venue_events(venue: FakeAster, runner: CliRunner, perp_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = full(runner, venue, out)
    assert result.exit_code == 0, result.output
    since, now = days_ago(venue, 120), venue.clock()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        rows = lines(out / f"{symbol}-funding.csv")
        assert rows[0] == FUNDING_HEADER
        assert len(rows) > 50
        assert rows[1:] == served_funding_lines(venue, symbol, since, now)
        assert rows[1:] == shared_lines(perp_dir, f"{symbol}-funding.csv", venue.offset_ms, since, now)
    assert all(int(r["limit"]) <= 1000 for r in requests(venue, "/fapi/v3/fundingRate"))


def test_no_funding_writes_candles_only(venue: FakeAster, runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = full(runner, venue, out, "--no-funding")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["BTCUSDT-1h.csv", "ETHUSDT-1h.csv", "exchangeInfo.json"]
    assert not requests(venue, "/fapi/v3/fundingRate")
    # The venue's rules of the symbols downloaded, for the backtester's rounding and minimums.
    from llmtrader.core.filters import parse_exchange_info

    rules = parse_exchange_info(json.loads((out / "exchangeInfo.json").read_text()))
    assert sorted(rules) == ["BTCUSDT", "ETHUSDT"]
    assert rules["BTCUSDT"].tick_size > 0 and rules["BTCUSDT"].step_size > 0


def test_json_has_one_entry_per_file(venue: FakeAster, runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = full(runner, venue, out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["interval"] == "1h"
    files = {f["file"]: f for f in data["files"]}
    assert list(files) == ["BTCUSDT-1h.csv", "BTCUSDT-funding.csv", "ETHUSDT-1h.csv", "ETHUSDT-funding.csv"]
    btc = files["BTCUSDT-1h.csv"]
    rows = lines(out / "BTCUSDT-1h.csv")[1:]
    assert btc["symbol"] == "BTCUSDT" and btc["kind"] == "candles" and btc["created"] is True
    assert btc["rows_added"] == btc["rows_total"] == len(rows)
    assert btc["first_time_ms"] == int(rows[0].split(",")[0]) and btc["last_time_ms"] == int(rows[-1].split(",")[0])
    assert btc["first_time"].endswith("T00:00:00.000Z") and btc["gaps"] == 0 and btc["missing_candles"] == 0
    funding = files["BTCUSDT-funding.csv"]
    assert funding["kind"] == "funding" and funding["gaps"] is None
    assert funding["rows_total"] == len(lines(out / "BTCUSDT-funding.csv")) - 1
    # Again: everything is there already, so nothing is added and nothing is created.
    again = json.loads(full(runner, venue, out, "--json").stdout)
    assert [(f["rows_added"], f["created"]) for f in again["files"]] == [(0, False)] * 4
    assert [f["rows_total"] for f in again["files"]] == [f["rows_total"] for f in data["files"]]


# ---- resume and interruption --------------------------------------------------------------------------------


def test_resume_requests_only_after_the_last_row_and_equals_one_download(
    venue: FakeAster, runner: CliRunner, tmp_path: Path
) -> None:
    out, reference = tmp_path / "data", tmp_path / "reference"
    first = run_download(
        runner, out, "--symbols", SYMBOLS, "--interval", "1h", "--since", date(days_ago(venue, 120)),
        "--until", date(days_ago(venue, 60)),
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    last_candle = {s: int(lines(out / f"{s}-1h.csv")[-1].split(",")[0]) for s in ("BTCUSDT", "ETHUSDT")}
    funding_rows = {s: lines(out / f"{s}-funding.csv")[1:] for s in ("BTCUSDT", "ETHUSDT")}
    assert last_candle["BTCUSDT"] == days_ago(venue, 60) - HOUR  # --until is excluded
    venue.requests.clear()

    second = full(runner, venue, out, "--json")
    assert second.exit_code == 0, second.output
    for params in requests(venue, "/fapi/v3/klines"):
        assert int(params["startTime"]) == last_candle[params["symbol"]] + HOUR
    for params in requests(venue, "/fapi/v3/fundingRate"):
        rows = funding_rows[params["symbol"]]
        first_time, last_time = int(rows[0].split(",")[0]), int(rows[-1].split(",")[0])
        if int(params["startTime"]) < first_time:
            # --since is before the first funding event (the data starts later): one light look proves the
            # venue has nothing there, so the file is continued, not refused.
            assert params["limit"] == "1" and int(params["endTime"]) == first_time - 1
        else:
            assert int(params["startTime"]) > last_time
    added = {f["file"]: f["rows_added"] for f in json.loads(second.stdout)["files"]}
    last_closed = venue.clock() // HOUR * HOUR - HOUR
    assert added["BTCUSDT-1h.csv"] == (last_closed - days_ago(venue, 60)) // HOUR + 1

    assert full(runner, venue, reference).exit_code == 0
    assert snapshot(out) == snapshot(reference)


class Tripwire(list[tuple[str, str, dict[str, str]]]):
    """The fake's request log, which makes ``path`` fail (HTTP 500, every retry) from its ``after``-th request."""

    def __init__(self, fake: FakeAster, path: str, after: int) -> None:
        super().__init__(fake.requests)
        self.fake, self.path, self.after, self.seen = fake, path, after, 0

    def append(self, item: tuple[str, str, dict[str, str]]) -> None:
        super().append(item)
        if item[1] == self.path:
            self.seen += 1
            if self.seen == self.after:
                self.fake.fail(self.path, 500, msg="upstream down", times=AsterMarketData.MAX_ATTEMPTS)


def test_an_interrupted_download_keeps_whole_pages_and_a_rerun_completes_it(
    venue: FakeAster, runner: CliRunner, tmp_path: Path
) -> None:
    out, reference = tmp_path / "data", tmp_path / "reference"
    assert full(runner, venue, reference).exit_code == 0
    venue.requests = Tripwire(venue, "/fapi/v3/klines", after=2)  # BTC's second page fails

    result = full(runner, venue, out)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1
    assert "klines BTCUSDT 1h" in result.stderr and "HTTP 500" in result.stderr
    assert "keeps its 1500 complete rows" in result.stderr and "run the same command again to resume" in result.stderr
    raw = (out / "BTCUSDT-1h.csv").read_bytes()
    assert raw.endswith(b"\n")
    written = raw.decode().splitlines()
    assert written[0] == CANDLE_HEADER and len(written) == 1 + 1500  # exactly the first page
    assert all(len(line.split(",")) == 6 for line in written)
    assert written == lines(reference / "BTCUSDT-1h.csv")[: 1 + 1500]
    assert sorted(p.name for p in out.iterdir()) == ["BTCUSDT-1h.csv", "exchangeInfo.json"]  # nothing else started

    rerun = full(runner, venue, out)
    assert rerun.exit_code == 0, rerun.output
    assert snapshot(out) == snapshot(reference)


# ---- refusals -----------------------------------------------------------------------------------------------


def _bad_header(path: Path) -> None:
    text = path.read_text()
    path.write_text("time,open,high,low,close,volume" + text[text.index("\n") :])


def _off_grid(path: Path) -> None:
    rows = lines(path)
    when, rest = rows[-1].split(",", 1)
    rows[-1] = f"{int(when) + 60_000},{rest}"  # still after the row before, but at hh:01
    path.write_text("\n".join(rows) + "\n")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-9])  # a write cut short: the last line has no end


def _bad_funding_header(path: Path) -> None:
    text = path.read_text()
    path.write_text("time,rate" + text[text.index("\n") :])


@pytest.mark.parametrize(
    ("name", "corrupt", "expected"),
    [
        ("BTCUSDT-1h.csv", _bad_header, "the header is 'time,open,high,low,close,volume'"),
        ("BTCUSDT-1h.csv", _off_grid, "is not on the 1h grid"),
        ("BTCUSDT-1h.csv", _truncated, "the last line is incomplete"),
        ("BTCUSDT-funding.csv", _bad_funding_header, "the header is 'time,rate'"),
    ],
)
def test_a_corrupted_file_is_refused_by_name_and_left_untouched(
    venue: FakeAster,
    runner: CliRunner,
    tmp_path: Path,
    name: str,
    corrupt: Any,
    expected: str,
) -> None:
    out = tmp_path / "data"
    since = date(days_ago(venue, 30))
    made = run_download(
        runner, out, "--symbols", "BTCUSDT", "--interval", "1h", "--since", since, "--until", date(days_ago(venue, 10))
    )
    assert made.exit_code == 0, made.output
    corrupt(out / name)
    before = snapshot(out)
    venue.requests.clear()

    result = run_download(runner, out, "--symbols", SYMBOLS, "--interval", "1h", "--since", since)
    assert result.exit_code == 2
    assert f"{out / name}:" in result.stderr and expected in result.stderr
    assert snapshot(out) == before  # untouched, and ETH (asked too) was not started
    assert not requests(venue, "/fapi/v3/klines") and not requests(venue, "/fapi/v3/fundingRate")


def test_since_before_the_file_with_venue_rows_there_is_refused(
    venue: FakeAster, runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    args = ("--symbols", "BTCUSDT", "--interval", "1h", "--no-funding")
    assert run_download(runner, out, *args, "--since", date(days_ago(venue, 30))).exit_code == 0
    before = snapshot(out)
    result = run_download(runner, out, *args, "--since", date(days_ago(venue, 60)))
    assert result.exit_code == 2
    message = result.stderr
    assert str(out / "BTCUSDT-1h.csv") in message and "is before the file's first row" in message
    assert "use another --out, or delete the file" in message
    assert snapshot(out) == before


def test_an_unknown_symbol_gets_the_closest_names_and_nothing_is_downloaded(
    venue: FakeAster, runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    result = run_download(runner, out, "--symbols", "BTCUSD,ETHUSDT", "--interval", "1h", "--since", "2025-01-01")
    assert result.exit_code == 2
    assert "BTCUSD is not listed on the venue; closest listed: BTCUSDT" in result.stderr
    assert not out.exists()
    assert not requests(venue, "/fapi/v3/klines") and not requests(venue, "/fapi/v3/fundingRate")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--interval", "1h", "--since", "2025-13-01"), "--since '2025-13-01' is not a date"),
        (("--interval", "1h", "--since", "2025-07-01", "--until", "last week"), "--until 'last week' is not a date"),
        (("--interval", "1h", "--since", "2025-07-01", "--until", "2025-07-01"), "is not after --since"),
        (("--interval", "1h", "--since", "2025-07-02T10:00", "--until", "2025-07-02T09:00+00:00"), "not after"),
        (("--interval", "7m", "--since", "2025-07-01"), "--interval '7m' is not a candle interval; accepted: 1m"),
        (("--interval", "1h", "--since", "2999-01-01"), "is not before the venue's time now"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    venue: FakeAster, runner: CliRunner, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    out = tmp_path / "data"
    result = run_download(runner, out, "--symbols", "BTCUSDT", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()
    assert not requests(venue, "/fapi/v3/klines")


def test_dates_read_as_utc_unless_they_name_a_zone() -> None:
    from llmtrader.backtest.download import parse_time_ms

    assert parse_time_ms("2025-07-04", "--since") == 1_751_587_200_000
    assert parse_time_ms("2025-07-04T12:00", "--since") == 1_751_587_200_000 + 12 * HOUR
    assert parse_time_ms("2025-07-04T12:00:00Z", "--since") == 1_751_587_200_000 + 12 * HOUR
    assert parse_time_ms("2025-07-04T14:00+02:00", "--since") == 1_751_587_200_000 + 12 * HOUR


# ---- holes in the venue's history ---------------------------------------------------------------------------


def test_holes_are_counted_never_filled(
    perp_dir: Path, clean_env: Path, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venue whose BTC 1h history misses 3 candles in one place and 1 in another (on a page edge)."""
    data = tmp_path / "venue"
    data.mkdir()
    shutil.copy(perp_dir / "BTCUSDT-15m.csv", data)  # the fake lists the symbols it has 15m candles of
    fake = FakeAster(data).start()
    try:
        freeze(fake)
        since = days_ago(fake, 120)
        rows = lines(perp_dir / "BTCUSDT-1h.csv")
        first = next(i for i, r in enumerate(rows[1:], 1) if int(r.split(",")[0]) + fake.offset_ms == since)
        # Three in the first page, and the second page's first candle (page 1 holds rows first..first+1502).
        dropped = {first + 100, first + 101, first + 102, first + 1503}
        (data / "BTCUSDT-1h.csv").write_text("\n".join(r for i, r in enumerate(rows) if i not in dropped) + "\n")
        monkeypatch.setenv("ASTERDEX_BASE_URL", fake.base_url)
        out = tmp_path / "data"
        args = ("--symbols", "BTCUSDT", "--interval", "1h", "--no-funding", "--json", "--since", date(since))
        result = run_download(runner, out, *args)
        assert result.exit_code == 0, result.output
        entry = json.loads(result.stdout)["files"][0]
        assert (entry["gaps"], entry["missing_candles"]) == (2, 4)
        written = lines(out / "BTCUSDT-1h.csv")[1:]
        assert written == served_candle_lines(fake, "BTCUSDT", since)  # what the venue has, nothing invented
        assert entry["rows_total"] == len(written)
        again = json.loads(run_download(runner, out, *args).stdout)["files"][0]  # the file's holes, on resume
        assert (again["rows_added"], again["gaps"], again["missing_candles"]) == (0, 2, 4)
    finally:
        fake.stop()


# ---- the core, called directly ------------------------------------------------------------------------------


def test_progress_advances_by_time_covered_and_pacing_waits_past_the_budget(
    venue: FakeAster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download_module, "WEIGHT_BUDGET_1M", 2)  # the fake counts 1 a request
    steps: list[FileProgress] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def go() -> Any:
        async with AsterMarketData(venue.base_url, timeout_s=5) as market:
            return await download_history(
                market, ["BTCUSDT"], "1h", days_ago(venue, 120), None, tmp_path, progress=steps.append, sleep=sleep
            )

    result = asyncio.run(go())
    assert [f.path.name for f in result.files] == ["BTCUSDT-1h.csv", "BTCUSDT-funding.csv"]
    candles = [s for s in steps if s.key == "BTCUSDT-1h.csv"]
    covered = [s.covered_ms for s in candles]
    assert covered == sorted(covered) and covered[0] == 0 and covered[-1] == candles[-1].total_ms
    assert len(candles) == 4  # start, two pages, done
    assert candles[1].covered_ms == 1500 * HOUR and candles[1].reached_ms == days_ago(venue, 120) + 1499 * HOUR
    assert waits and all(0 < w <= 61 for w in waits)  # waited for the venue's minute to turn


@pytest.mark.parametrize("width", WIDTHS)
def test_the_summary_fits_the_terminal_with_every_symbol_and_number_whole(
    venue: FakeAster, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    at_width(monkeypatch, width)
    out = tmp_path / "data"
    result = runner.invoke(app, ["download", "--out", str(out), "--symbols", SYMBOLS, "--interval", "1h",
                                 "--since", date(days_ago(venue, 120))])  # fmt: skip
    shown = "\n".join(lines_of(result, width))
    files = json.loads(runner.invoke(app, ["download", "--out", str(out), "--symbols", SYMBOLS, "--interval", "1h",
                                           "--since", date(days_ago(venue, 120)), "--json"]).stdout)  # fmt: skip
    for name in ("BTCUSDT-1h.csv", "ETHUSDT-1h.csv", "BTCUSDT-funding.csv", "ETHUSDT-funding.csv"):
        assert name in shown or name.removesuffix(".csv") in shown, shown
    assert "…" not in shown
    assert files  # the same download again: one document, nothing new to add
