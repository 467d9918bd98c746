"""``llmtrader --help`` wall time as a subprocess, process start included. Target: under 0.3 s."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench import Result, clean_env, llmtrader_command, repeat, result, wall

TARGET_S = 0.3
RUNS = 7


def _once(cmd: list[str], env: dict[str, str]) -> float:
    def call() -> None:
        proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
        if proc.returncode != 0 or b"Usage" not in proc.stdout:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")

    return wall(call)


def run() -> list[Result]:
    cmd = [*llmtrader_command(), "--help"]
    env = clean_env()
    samples = repeat(lambda: _once(cmd, env), RUNS, warmup=1)
    return [result("help.wall", samples, "s", TARGET_S, note=" ".join([Path(cmd[0]).name, *cmd[1:]]))]
