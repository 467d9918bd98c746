"""``python -m bench [NAME ...]``: run every benchmark, or those named, and print one line per figure.

Exit status: 0 when every target is met, 1 when a figure misses its target, 2 when a benchmark failed
to run at all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench import Result

BENCHMARKS = {
    "help": "`llmtrader --help` wall time, process start included",
    "fetch": "market context fetch for 10 assets with 50 ms added to every request, in round trips",
    "execute": "executing 5 opens (margin, leverage, entry, sl, tp) with 50 ms added to every request, in round trips",
    "context": "context + prompt for 10 assets × 3 timeframes × 200 candles, CPU time",
    "history": "`llmtrader history --symbol X --limit 50` on 1,000,000 asset-decision rows",
    "run": "`llmtrader run`: memory over 2,000 scheduler cycles; real cycles' overhead (5 assets, baseline, paper)",
    "backtest": "`llmtrader backtest` of BTC, ETH, SOL over every 1h candle (baseline), wall time; growth",
    "serve": "`llmtrader serve` on 1,000,000 asset-decision rows: API list p99, resident memory; --help imports",
    "arena": "an arena of 5 recorded models replayed over BTC, ETH, SOL 1h (~6,150 steps each), wall time",
}


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.4g}"


def format_result(r: Result) -> str:
    status = "INFO" if r.passed is None else ("PASS" if r.passed else "FAIL")
    target = f"target <= {_number(r.target)} {r.unit}" if r.target is not None else "no target"
    return (
        f"{status}  {r.name:<38} median {_number(r.median):>6} {r.unit:<3} "
        f"(min {_number(r.min)}, max {_number(r.max)})  {target:<17}  {r.note}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, what in BENCHMARKS.items():
            print(f"{name:<10} {what}")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; available: {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)

    status = 0
    started = time.perf_counter()
    for name in names:
        print(f"# {name}: {BENCHMARKS[name]}", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            results: list[Result] = module.run()
        except Exception:
            traceback.print_exc()
            print(f"ERROR {name}: the benchmark did not run", flush=True)
            status = 2
            continue
        for r in results:
            print(format_result(r), flush=True)
            if r.passed is False and status == 0:
                status = 1
        print(f"# {name} took {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"# total {time.perf_counter() - started:.1f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
