"""Historical data files: candles and funding rates as CSV, one file per symbol and timeframe.

The format is the one of ``../shared/data`` (written by ``llmtrader download``, read by ``llmtrader backtest``)::

    {SYMBOL}-{tf}.csv       open_time_ms,open,high,low,close,volume
    {SYMBOL}-funding.csv    funding_time_ms,funding_rate

Times are UTC epoch milliseconds (candle open times), rows ascending without duplicates, numbers in plain
decimal notation. A file that breaks any of this is refused with a :class:`DataError` naming the file and
the row, because a backtest on silently bad data is worse than none.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from llmtrader.core.market import Candles
from llmtrader.core.times import INTERVAL_MS
from llmtrader.errors import DataError

# The venue's exchangeInfo reply for the downloaded symbols (tick and step sizes, minimums), beside the CSVs.
EXCHANGE_INFO_FILE = "exchangeInfo.json"
CANDLE_HEADER = ("open_time_ms", "open", "high", "low", "close", "volume")
FUNDING_HEADER = ("funding_time_ms", "funding_rate")


def candle_path(directory: Path, symbol: str, interval: str) -> Path:
    return directory / f"{symbol}-{interval}.csv"


def funding_path(directory: Path, symbol: str) -> Path:
    return directory / f"{symbol}-funding.csv"


def plain_number(value: str | Decimal | float | int) -> str:
    """A number in plain decimal notation, trailing zeros removed: ``"115715.50"`` -> ``"115715.5"``,
    ``1e-05`` -> ``"0.00001"``. Strings keep the venue's digits exactly (no float round trip)."""
    try:
        number = Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise DataError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise DataError(f"{value!r} is not a finite number")
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _read_matrix(path: Path, header: tuple[str, ...]) -> np.ndarray:
    """The rows of a CSV file as a float matrix, after checking its header and that every cell is a number."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        first = f.readline().strip()
    if tuple(first.split(",")) != header:
        raise DataError(f"{path}: the header is {first!r}, expected {','.join(header)!r}")
    try:
        frame = pd.read_csv(path, dtype=np.float64, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable: {str(exc).splitlines()[0]}") from None
    matrix: np.ndarray = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: row {row + 2} has an empty or non-finite value")
    return matrix


def _check_times(path: Path, times: np.ndarray, what: str) -> None:
    if len(times) and (times != np.floor(times)).any():
        raise DataError(f"{path}: a {what} is not a whole number of milliseconds")
    steps = np.diff(times)
    if (steps <= 0).any():
        row = int(np.argmax(steps <= 0)) + 3  # +1 for diff, +1 for the header, +1 for 1-based lines
        kind = "repeats the previous" if steps[row - 3] == 0 else "is older than the previous"
        raise DataError(f"{path}: line {row}: the {what} {int(times[row - 2])} {kind} ({int(times[row - 3])})")


@dataclass(frozen=True)
class CandleFile:
    """A candle file read and checked; ``gaps`` lists (after_open_ms, missing candles) where rows are missing."""

    path: Path
    candles: Candles
    gaps: tuple[tuple[int, int], ...]


def read_candles(path: Path, symbol: str, interval: str) -> CandleFile:
    """Read and check one candle file: header, numbers, ascending open times on the interval's grid,
    and every candle's high and low around its open and close. Gaps are reported, not refused."""
    if interval not in INTERVAL_MS:
        raise DataError(f"{path}: {interval!r} is not a candle interval ({', '.join(INTERVAL_MS)})")
    step = INTERVAL_MS[interval]
    rows = _read_matrix(path, CANDLE_HEADER)
    times = rows[:, 0]
    _check_times(path, times, "open_time_ms")
    off_grid = (times.astype(np.int64) % step) != 0
    if off_grid.any():
        row = int(np.argmax(off_grid))
        raise DataError(f"{path}: line {row + 2}: open time {int(times[row])} is not on the {interval} grid")
    o, h, lo, c, v = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
    broken = (lo <= 0) | (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (v < 0)
    if broken.any():
        row = int(np.argmax(broken))
        raise DataError(
            f"{path}: line {row + 2}: the candle is impossible (open {o[row]}, high {h[row]}, low {lo[row]}, "
            f"close {c[row]}, volume {v[row]})"
        )
    jumps = np.diff(times.astype(np.int64))
    gap_at = np.nonzero(jumps != step)[0]
    gaps = tuple((int(times[i]), int(jumps[i] // step) - 1) for i in gap_at)
    return CandleFile(path, Candles.from_rows(symbol, interval, rows), gaps)


@dataclass(frozen=True)
class FundingFile:
    """A funding file read and checked: settlement times (ms) and rates as written (exact decimals)."""

    path: Path
    times_ms: np.ndarray  # int64, ascending
    rates: tuple[Decimal, ...]


def read_funding(path: Path) -> FundingFile:
    """Read and check one funding file; the rates are kept as the decimals written in it."""
    rows = _read_matrix(path, FUNDING_HEADER)
    _check_times(path, rows[:, 0], "funding_time_ms")
    with path.open(encoding="utf-8") as f:
        next(f)
        rates = tuple(Decimal(line.rstrip("\n").split(",")[1]) for line in f if line.strip())
    return FundingFile(path, rows[:, 0].astype(np.int64), rates)


def last_time_ms(path: Path) -> int | None:
    """The time in the last row of a data file (None when it has no rows), read from its end only."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 4096))
        lines = [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines or lines[-1].startswith(("open_time_ms", "funding_time_ms")):
        return None
    try:
        return int(lines[-1].split(",")[0])
    except ValueError:
        raise DataError(f"{path}: the last line {lines[-1]!r} does not start with a time in ms") from None


# ---- writing (``llmtrader download``): whole lines only, so a cut-short download leaves a readable file --------
def check_complete(path: Path) -> None:
    """Raise DataError unless the file is non-empty and ends with a newline (its last line was written whole)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            raise DataError(f"{path}: the file is empty (not even a header)")
        f.seek(-1, 2)
        if f.read(1) != b"\n":
            raise DataError(
                f"{path}: the last line is incomplete (no newline at its end): a write was cut short; "
                "remove that line or the file"
            )


def refuse_link(path: Path) -> None:
    """Raise DataError when ``path`` is a symbolic link: a download writes only files it creates itself, never
    through a link someone else planted (its target could be any file the user can write)."""
    if path.is_symlink():
        raise DataError(
            f"{path}: is a symbolic link; a download writes only files it creates itself: "
            "remove the link, or use another --out"
        )


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a new file of ours: whatever is there first (a stale temporary file, or a
    link planted in its place) is removed, never written through; the file is created exclusively."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # removes a link itself, never its target
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def create_data_file(path: Path, header: Sequence[str]) -> None:
    """Create a data file holding only its header, all at once; an existing file is never replaced."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_new_file(tmp, (",".join(header) + "\n").encode())
    try:
        os.link(tmp, path)  # atomic, and refused when the file exists
    except FileExistsError:
        raise DataError(f"{path}: the file appeared while the download started (another download?)") from None
    except OSError:  # a file system without hard links: create exclusively, then one small write
        with path.open("xb") as f:
            f.write(tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines in one write and flush them to disk; a write cut short is undone (no half line stays)."""
    data = "".join(line + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)  # a link put in its place is refused
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
