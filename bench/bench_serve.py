"""``llmtrader serve`` on the store of bench_history (250,000 decisions, 1,000,000 asset-decision rows):
the 99th percentile of API list calls under 50 ms, the server's resident memory under 120 MB after every
page and endpoint was served, and ``llmtrader --help`` importing none of the web stack.

The server is the real command in its own process (``llmtrader serve``), asked over loopback HTTP with
keep-alive by one client; each figure of the list calls is the 99th percentile of one round of requests
(the filters of ``/api/v1/decisions``: none, symbol, action, account with since, and a cursor page).
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import Result, clean_env, llmtrader_command, result
from bench.bench_history import ensure_db

TARGET_P99_MS = 50.0
TARGET_RSS_MB = 120.0
ROUNDS = 5
PER_QUERY = 60  # requests per query and round: 5 queries, 300 requests a round
WEB_MODULES = ("starlette", "uvicorn", "jinja2", "prometheus_client", "llmtrader.web")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc (Linux only)")


def _help_imports() -> list[str]:
    code = (
        "import sys\nfrom llmtrader.cli.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('web-modules:' + ','.join(m for m in {WEB_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), check=True)
    line = out.stdout.strip().splitlines()[-1].removeprefix("web-modules:")
    return [m for m in line.split(",") if m]


def run() -> list[Result]:
    import httpx

    path, how = ensure_db()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*llmtrader_command(), "serve", "--port", str(port)],
        env=clean_env(LLMTRADER_DB=str(path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start")
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as client:
            first = client.get("/api/v1/decisions?limit=50").json()
            queries = [
                "/api/v1/decisions?limit=50",
                "/api/v1/decisions?symbol=SOLUSDT&limit=50",
                "/api/v1/decisions?action=buy&limit=50",
                "/api/v1/decisions?account=default&since=2025-01-01&limit=50",
                f"/api/v1/decisions?limit=50&cursor={first['next_cursor']}",
            ]
            for q in queries:  # warm-up
                assert client.get(q).status_code == 200, q
            rounds: list[float] = []
            every: list[float] = []
            for _ in range(ROUNDS):
                samples = []
                for _ in range(PER_QUERY):
                    for q in queries:
                        start = time.perf_counter()
                        r = client.get(q)
                        samples.append((time.perf_counter() - start) * 1000)
                        if r.status_code != 200:
                            raise RuntimeError(f"{q}: {r.status_code} {r.text[:200]}")
                rounds.append(_p99(samples))
                every += samples
            timed: dict[str, float] = {}
            for path_ in ("/", "/metrics", "/api/v1/status", "/api/v1/equity", "/api/v1/positions", "/readyz"):
                start = time.perf_counter()
                client.get(path_)
                timed[path_] = (time.perf_counter() - start) * 1000
        rss = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    imported = _help_imports()
    slowest = max(timed, key=lambda k: timed[k])
    return [
        result(
            "serve: API list call, p99", rounds, "ms", TARGET_P99_MS,
            f"store {how}; {len(queries) * PER_QUERY} calls a round, median {statistics.median(every):.1f} ms; "
            f"slowest page {slowest} {timed[slowest]:.0f} ms",
        ),
        result("serve: resident memory", [rss], "MB", TARGET_RSS_MB, "after every page and endpoint was served"),
        result("help: web modules imported", [float(len(imported))], "", 0.0, ",".join(imported) or "none"),
    ]  # fmt: skip
