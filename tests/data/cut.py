"""Cut tests/data/binance-usdm-perp from ../shared/data/binance-usdm-perp (see SOURCES.md).

    python tests/data/cut.py [SOURCE_DIR]      # default: $LLMTRADER_SHARED_DATA or ../shared/data

Every kept line is copied byte for byte from the source file; only whole rows inside the windows below
are kept (a window is [start, end) on the row's first column, UTC). Running it again on the same source
writes the same files.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "binance-usdm-perp"

MAIN = ("BTCUSDT", "ETHUSDT")
SOL = ("SOLUSDT",)
OTHERS = ("BNBUSDT", "XRPUSDT", "DOGEUSDT")

# The fake venue's anchor is 2025-12-15 10:20 (tests/fakes/aster.py): its clock reads data time between
# then and a day later, and the tests ask for up to about 300 candles before it. October holds the
# funding events of BTC and ETH (none between 2025-10-27 and 2026-01-12), so the paper tests that settle
# funding and the backtests run there.
OCTOBER = ("2025-10-10 12:00", "2025-10-11 12:00")  # the paper funding tests (10-11 00:00 settlement)
WINDOWS: dict[tuple[tuple[str, ...], str], tuple[tuple[str, str], ...]] = {
    # 1h: download (120 days before the anchor), backtests (2025-09-19 .. 2025-12-16), the anchor; it
    # ends at 18:00, inside a 4h group, as the whole file does (the resampling test drops that group).
    (MAIN, "1h"): (("2025-08-16 00:00", "2025-12-16 19:00"),),
    (SOL, "1h"): (("2025-11-01 00:00", "2025-12-17 00:00"),),
    (OTHERS, "1h"): (("2025-12-10 00:00", "2025-12-17 00:00"),),
    # 4h: the backtests' warm-up before 2025-09-19, the 200 candles before the anchor; BTC and ETH over
    # the whole 1h range (the 1h candles resampled are the 4h candles).
    (MAIN, "4h"): (("2025-08-16 00:00", "2025-12-17 00:00"),),
    (SOL, "4h"): (("2025-10-01 00:00", "2025-12-17 00:00"),),
    (OTHERS, "4h"): (("2025-11-01 00:00", "2025-12-17 00:00"),),
    # 15m: the paper venue's candles; 2025-11-27 .. 2025-12-17 holds two klines pages and the anchor.
    # BTC also: a stop gapped through (2025-09-22 06:00), funding on 2025-10-12 16:00.
    (("BTCUSDT",), "15m"): (
        ("2025-09-22 00:00", "2025-09-23 00:00"),
        ("2025-10-10 12:00", "2025-10-13 00:00"),
        ("2025-11-27 00:00", "2025-12-17 00:00"),
    ),
    (("ETHUSDT", "SOLUSDT"), "15m"): (OCTOBER, ("2025-11-27 00:00", "2025-12-17 00:00")),
    (OTHERS, "15m"): (OCTOBER, ("2025-12-11 00:00", "2025-12-17 00:00")),
    # 5m: the 300 candles of the scalping strategy before the anchor.
    (MAIN, "5m"): (("2025-12-13 00:00", "2025-12-16 12:00"),),
    # funding: every event before 2026 (BTC from 2025-09-19, ETH from 2025-09-27).
    (MAIN, "funding"): (("2025-01-01 00:00", "2026-01-01 00:00"),),
}


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def cut(source: Path, target: Path, windows: tuple[tuple[str, str], ...]) -> int:
    """Write the header and the rows of ``source`` inside ``windows``; returns the number of rows."""
    bounds = [(ms(a), ms(b)) for a, b in windows]
    with source.open(encoding="utf-8", newline="") as fh:
        header, *rows = fh.read().splitlines(keepends=True)
    kept = [r for r in rows if any(a <= int(r.split(",", 1)[0]) < b for a, b in bounds)]
    with target.open("w", encoding="utf-8", newline="") as fh:
        fh.write(header)
        fh.writelines(kept)
    return len(kept)


def main(argv: list[str]) -> int:
    default = os.environ.get("LLMTRADER_SHARED_DATA", ROOT.parent / "shared" / "data")
    shared = Path(argv[1] if len(argv) > 1 else default)
    source = shared / "binance-usdm-perp"
    if not (source / "BTCUSDT-1h.csv").exists():
        print(f"cut.py: no real candles at {source} (give the shared data folder as the argument)", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.csv"):
        old.unlink()
    for (symbols, kind), windows in WINDOWS.items():
        for symbol in symbols:
            name = f"{symbol}-{kind}.csv"
            print(f"{name:22} {cut(source / name, OUT / name, windows):6} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
