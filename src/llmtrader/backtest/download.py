"""``llmtrader download``: closed candles and funding rates from the venue's public endpoints into CSV files.

The files are in the format of :mod:`llmtrader.backtest.datafiles` (the one of ``../shared/data``), with the venue's
number strings written in plain decimal notation, never through a float. A download appends page by page
after an existing file's last row, each page in one write, so an interrupted download keeps every complete
page and running the same command again resumes it. Rows already written are never rewritten: a file that
does not match the format, or a ``--since`` that would need rows before a file's first one, is refused
before anything is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from llmtrader.backtest.datafiles import (
    CANDLE_HEADER,
    EXCHANGE_INFO_FILE,
    FUNDING_HEADER,
    append_lines,
    candle_path,
    check_complete,
    create_data_file,
    funding_path,
    plain_number,
    read_candles,
    read_funding,
    refuse_link,
    write_new_file,
)
from llmtrader.core.filters import parse_exchange_info
from llmtrader.core.market import check_symbols
from llmtrader.core.times import INTERVAL_MS, iso_utc
from llmtrader.errors import ConfigError, DataError, VenueError
from llmtrader.exchange.asterdex_market import AsterMarketData

Kind = Literal["candles", "funding"]
Sleep = Callable[[float], Awaitable[None]]

# The venue allows 2400 request weight a minute per IP (reference, section 6); a klines page of 1500 weighs 10.
# A download stays under half of it, so an agent running beside it on the same IP keeps its share.
WEIGHT_BUDGET_1M = 1200


@dataclass(frozen=True)
class FileProgress:
    """How far the download of one file is: ``covered_ms`` of the ``total_ms`` its window spans."""

    key: str  # the file name, one progress task each
    symbol: str
    kind: Kind
    covered_ms: int
    total_ms: int
    reached_ms: int | None  # the time of the newest row in the file, None while it has none


ProgressFn = Callable[[FileProgress], None]


@dataclass(frozen=True)
class FileResult:
    """One file after the download: what was added, what it holds now, and the holes in its candles."""

    symbol: str
    kind: Kind
    path: Path
    created: bool
    rows_added: int
    rows_total: int
    first_ms: int | None
    last_ms: int | None
    gaps: int | None  # holes between consecutive candles in the whole file (None for funding)
    missing: int | None  # candles missing in those holes


@dataclass(frozen=True)
class DownloadResult:
    """Every file of one download; the window actually asked for (``until_ms`` capped at the venue's now)."""

    interval: str
    since_ms: int
    until_ms: int
    now_ms: int
    files: list[FileResult]


@dataclass
class _Job:
    """One file to fill: its window ``[window_start, end_ms)`` and what the file already holds."""

    symbol: str
    kind: Kind
    path: Path
    window_start: int
    end_ms: int
    exists: bool = False
    created: bool = False
    rows: int = 0
    added: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    gaps: int = 0
    missing: int = 0

    def start_ms(self, step: int) -> int:
        """Where the download starts: after the file's last row, or at the window's start."""
        return self.window_start if self.last_ms is None else self.last_ms + step

    def result(self) -> FileResult:
        candles = self.kind == "candles"
        return FileResult(
            symbol=self.symbol,
            kind=self.kind,
            path=self.path,
            created=self.created,
            rows_added=self.added,
            rows_total=self.rows,
            first_ms=self.first_ms,
            last_ms=self.last_ms,
            gaps=self.gaps if candles else None,
            missing=self.missing if candles else None,
        )


def parse_time_ms(value: str, option: str) -> int:
    """``YYYY-MM-DD`` or an ISO date-time (UTC unless it names a zone) as epoch milliseconds."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not a date: use YYYY-MM-DD or an ISO date-time like 2025-07-04T12:00 "
            "(UTC unless it names a zone)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ms = int(parsed.timestamp() * 1000)
    if ms < 0:
        raise ConfigError(f"{option} {value!r} is before 1970")
    return ms


def check_request(interval: str, since_ms: int, until_ms: int | None) -> None:
    """Refuse an interval the venue does not serve, or a window that ends before it starts."""
    if interval not in INTERVAL_MS:
        raise ConfigError(f"--interval {interval!r} is not a candle interval; accepted: {', '.join(INTERVAL_MS)}")
    if until_ms is not None and until_ms <= since_ms:
        raise ConfigError(f"--until {_iso(until_ms)} is not after --since {_iso(since_ms)}")


async def download_history(
    market: AsterMarketData,
    symbols: Sequence[str],
    interval: str,
    since_ms: int,
    until_ms: int | None,
    out_dir: Path,
    *,
    funding: bool = True,
    progress: ProgressFn | None = None,
    now_ms: int | None = None,
    sleep: Sleep = asyncio.sleep,
) -> DownloadResult:
    """Download closed candles (and funding events) opened in ``[since_ms, until_ms)`` into ``out_dir``.

    Symbols are checked against exchangeInfo and every existing file is checked before any download.
    ``until_ms`` None means the venue's now (its server time, which also decides which candles are closed).
    """
    check_request(interval, since_ms, until_ms)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a directory")
    info = await market.get("/fapi/v3/exchangeInfo")
    check_symbols(symbols, parse_exchange_info(info))
    now = now_ms if now_ms is not None else await market.server_time_ms()
    until = now if until_ms is None else min(until_ms, now)
    if until <= since_ms:
        raise ConfigError(f"--since {_iso(since_ms)} is not before the venue's time now ({_iso(now)})")
    step = INTERVAL_MS[interval]
    first_open = -(-since_ms // step) * step  # the first candle opened at or after --since
    # Candles opened before ``until`` and closed by now: open + step <= now.
    candles_end = min(until, now - step + 1)
    jobs: list[_Job] = []
    for symbol in symbols:
        jobs.append(_Job(symbol, "candles", candle_path(out_dir, symbol, interval), first_open, candles_end))
        if funding:
            jobs.append(_Job(symbol, "funding", funding_path(out_dir, symbol), since_ms, until))
    refuse_link(out_dir / EXCHANGE_INFO_FILE)
    for job in jobs:  # every refusal comes before the first write
        _inspect(job, interval)
        await _refuse_history_before(market, job, interval)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: cannot create the directory ({exc.strerror or exc})") from None
    _write_rules(out_dir, info, symbols)
    pace = _Pace(market, sleep)
    report = progress or (lambda _: None)
    for job in jobs:
        try:
            if job.kind == "candles":
                await _fill_candles(market, job, interval, now, report, pace)
            else:
                await _fill_funding(market, job, report, pace)
        except VenueError as exc:
            # Same error type (the caller's category), with what the file kept and how to go on.
            exc.args = (
                f"{exc}; {job.path} keeps its {job.rows} complete rows ({job.added} added now): "
                "run the same command again to resume",
            )
            raise
        except OSError as exc:  # a full disk, a permission: the rows written so far stay whole
            raise DataError(f"{job.path}: cannot write ({exc.strerror or exc}); {job.rows} complete rows kept") from exc
    return DownloadResult(interval, since_ms, until, now, [job.result() for job in jobs])


def _write_rules(out_dir: Path, info: Any, symbols: Sequence[str]) -> None:
    """The venue's rules of ``symbols`` (tick and step sizes, minimums) as ``exchangeInfo.json``, refreshed at
    every download: the backtester sizes and rounds orders with them. Written whole, then renamed."""
    wanted = set(symbols)
    kept = dict(info)
    kept["symbols"] = [s for s in info.get("symbols", []) if isinstance(s, dict) and s.get("symbol") in wanted]
    path = out_dir / EXCHANGE_INFO_FILE
    temp = path.with_suffix(".json.part")
    try:
        write_new_file(temp, json.dumps(kept, indent=1, sort_keys=True).encode())
        temp.replace(path)  # a rename replaces whatever is at ``path``, a link itself, never its target
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _inspect(job: _Job, interval: str) -> None:
    """Read and check an existing file (refused with a DataError naming it); note its rows and holes."""
    refuse_link(job.path)
    if not job.path.exists():
        return
    if not job.path.is_file():
        raise DataError(f"{job.path}: exists and is not a file")
    check_complete(job.path)
    if job.kind == "candles":
        candles = read_candles(job.path, job.symbol, interval)
        times = [int(t) for t in candles.candles.open_time_ms]
        job.gaps = len(candles.gaps)
        job.missing = sum(n for _, n in candles.gaps)
    else:
        times = [int(t) for t in read_funding(job.path).times_ms]
    job.exists = True
    job.rows = len(times)
    if times:
        job.first_ms, job.last_ms = times[0], times[-1]


async def _refuse_history_before(market: AsterMarketData, job: _Job, interval: str) -> None:
    """Refuse a window starting before the file's first row when the venue has rows there (one light request):
    a download appends, it never rewrites history. A window that only looks earlier (the symbol was listed
    later, --since between two funding events) goes on."""
    first = job.first_ms
    if first is None or job.window_start >= first:
        return
    if job.kind == "candles":
        found = bool(await market.kline_page(job.symbol, interval, job.window_start, first, limit=1))
    else:
        found = bool(await market.funding_page(job.symbol, job.window_start, first, limit=1))
    if found:
        raise DataError(
            f"{job.path}: --since {_iso(job.window_start)} is before the file's first row ({_iso(first)}) and "
            "the venue has rows there; a download only appends after the last row and never rewrites a file: "
            "use another --out, or delete the file to download it again from --since"
        )


class _Pace:
    """Keep the download under WEIGHT_BUDGET_1M: past it, wait for the venue's minute counter to restart."""

    def __init__(self, market: AsterMarketData, sleep: Sleep) -> None:
        self._market = market
        self._sleep = sleep

    async def __call__(self) -> None:
        used = self._market.used_weight_1m
        if used is not None and used >= WEIGHT_BUDGET_1M:
            await self._sleep(61 - time.time() % 60)
            self._market.used_weight_1m = None  # unknown until the next reply says it again


def _covered(job: _Job, cursor: int) -> FileProgress:
    total = max(job.end_ms - job.window_start, 0)
    done = min(max(cursor - job.window_start, 0), total)
    return FileProgress(job.path.name, job.symbol, job.kind, done, total, job.last_ms)


async def _fill_candles(
    market: AsterMarketData, job: _Job, interval: str, now_ms: int, report: ProgressFn, pace: _Pace
) -> None:
    step = INTERVAL_MS[interval]
    if not job.exists:
        create_data_file(job.path, CANDLE_HEADER)
        job.exists = job.created = True
    cursor = job.start_ms(step)
    report(_covered(job, cursor))
    while cursor < job.end_ms:
        await pace()
        # The window already ends before the open candle; the filter keeps that true whatever the venue sends.
        rows = await market.kline_page(job.symbol, interval, cursor, job.end_ms)
        page = [row for row in rows if row[0] + step <= now_ms]
        if not page:
            break  # nothing more in the window (the symbol stopped trading, or a hole up to its end)
        lines = []
        last = job.last_ms
        for when, *values in page:
            if when % step:
                raise VenueError(f"klines {job.symbol} {interval}: the candle at {when} is not on the {interval} grid")
            if last is not None and when - last > step:  # a hole: reported, never filled with invented rows
                job.gaps += 1
                job.missing += (when - last) // step - 1
            lines.append(",".join([str(when), *(plain_number(v) for v in values)]))
            last = when
        append_lines(job.path, lines)
        job.rows += len(lines)
        job.added += len(lines)
        job.first_ms = page[0][0] if job.first_ms is None else job.first_ms
        job.last_ms = last
        cursor = page[-1][0] + step
        report(_covered(job, cursor))
    report(_covered(job, job.end_ms))


async def _fill_funding(market: AsterMarketData, job: _Job, report: ProgressFn, pace: _Pace) -> None:
    if not job.exists:
        create_data_file(job.path, FUNDING_HEADER)
        job.exists = job.created = True
    cursor = job.start_ms(1)
    report(_covered(job, cursor))
    while cursor < job.end_ms:
        await pace()
        page = await market.funding_page(job.symbol, cursor, job.end_ms)
        if not page:
            break
        append_lines(job.path, [f"{when},{plain_number(rate)}" for when, rate in page])
        job.rows += len(page)
        job.added += len(page)
        job.first_ms = page[0][0] if job.first_ms is None else job.first_ms
        job.last_ms = page[-1][0]
        cursor = job.last_ms + 1
        report(_covered(job, cursor))
    report(_covered(job, job.end_ms))


# ---- rendering: the summary as JSON or a rich table, progress bars on stderr -----------------------------------
def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_utc(ms)


def _short_time(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def result_json(result: DownloadResult) -> dict[str, Any]:
    """The download as one JSON object, one entry per file."""
    return {
        "interval": result.interval,
        "since": _iso(result.since_ms),
        "until": _iso(result.until_ms),
        "files": [
            {
                "symbol": f.symbol,
                "kind": f.kind,
                "file": f.path.name,
                "path": str(f.path),
                "created": f.created,
                "rows_added": f.rows_added,
                "rows_total": f.rows_total,
                "first_time": _iso(f.first_ms),
                "last_time": _iso(f.last_ms),
                "first_time_ms": f.first_ms,
                "last_time_ms": f.last_ms,
                "gaps": f.gaps,
                "missing_candles": f.missing,
            }
            for f in result.files
        ],
    }


def result_rows(result: DownloadResult) -> tuple[str, list[str], list[list[str]]]:
    """The download summary as (title, headers, rows): one row per file, rows added and held, first and last
    time (UTC), holes in the candles; every cell a short token, never to be split."""
    title = f"Downloaded {result.interval} candles up to {_short_time(result.until_ms)} UTC"
    headers = ["symbol", "file", "added", "rows", "first (UTC)", "last (UTC)", "gaps"]
    rows = []
    for f in result.files:
        gaps = "-" if f.gaps is None else (f"{f.gaps} ({f.missing} missing)" if f.gaps else "0")
        rows.append(
            [f.symbol, f.path.name, f"{f.rows_added:,}", f"{f.rows_total:,}", _short_time(f.first_ms),
             _short_time(f.last_ms), gaps]
        )  # fmt: skip
    return title, headers, rows


def progress_wanted() -> bool:
    """Progress bars only for a person: stderr is a terminal and this is not CI."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


class ProgressBars:
    """A rich progress bar per file on stderr, advancing by the time its rows cover; a no-op when disabled."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[reached]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def __call__(self, step: FileProgress) -> None:
        reached = f"to {_short_time(step.reached_ms)}" if step.reached_ms is not None else ""
        total, done = (step.total_ms, step.covered_ms) if step.total_ms else (1, 1)  # an empty window is done
        task = self._tasks.get(step.key)
        if task is None:
            task = self._tasks[step.key] = self._progress.add_task(step.key, total=total, reached="")
        self._progress.update(task, completed=done, total=total, reached=reached)
