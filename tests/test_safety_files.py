"""Files on disk: what the agent writes is private, templates take bare placeholders only, downloads never
write through a symbolic link, and the systemd unit is hardened."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.strategies import builtin_dir, load_strategy, load_strategy_file
from llmtrader.errors import StrategyError
from tests.fakes.aster import FakeAster

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask (files 0644, directories 0755): what the agent's own modes must override."""
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---- 8. private files ------------------------------------------------------------------------------------


def test_run_creates_its_database_wal_shm_lock_and_log_owner_only(
    clean_env: Path,
    fake_aster: FakeAster,
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loose_umask: None,
) -> None:
    state = tmp_path / "state" / "data"
    db = state / "llmtrader.db"
    logs = tmp_path / "logs" / "agent"
    log_file = logs / "run.log"
    monkeypatch.setenv("LLMTRADER_DB", str(db))
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    monkeypatch.setenv("ASSETS", "BTCUSDT")
    result = runner.invoke(app, ["--log-json", "--log-file", str(log_file), "run", "--once"])
    assert result.exit_code == 0, result.output

    assert mode(db) == 0o600
    assert mode(log_file) == 0o600 and log_file.read_text()
    [lock] = state.glob("llmtrader.db.*.run.lock")
    assert mode(lock) == 0o600
    for directory in (state, state.parent, logs, logs.parent):
        assert mode(directory) == 0o700, directory

    # While the database is in use (another reader holds it open) its WAL and SHM files stay on disk.
    holder = sqlite3.connect(db)
    try:
        holder.execute("SELECT count(*) FROM cycles").fetchone()
        again = runner.invoke(app, ["run", "--once"])
        assert again.exit_code == 0, again.output
        wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
        assert wal.exists() and shm.exists()
        assert mode(wal) == 0o600 and mode(shm) == 0o600
    finally:
        holder.close()


def test_a_database_and_log_file_others_could_read_are_narrowed_when_opened_again(
    clean_env: Path, fake_aster: FakeAster, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    monkeypatch.setenv("ASSETS", "BTCUSDT")
    log_file = tmp_path / "run.log"
    log_file.write_text("")
    first = runner.invoke(app, ["run", "--once"])
    assert first.exit_code == 0, first.output
    clean_env.chmod(0o644)  # as an older version, or a loose umask, left it
    log_file.chmod(0o644)
    result = runner.invoke(app, ["--log-json", "--log-file", str(log_file), "run", "--once"])
    assert result.exit_code == 0, result.output
    assert mode(clean_env) == 0o600 and mode(log_file) == 0o600


def test_backtest_creates_backtests_db_owner_only(
    perp_dir: Path, clean_env: Path, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    loose_umask: None,
) -> None:  # fmt: skip
    db = tmp_path / "new" / "llmtrader.db"
    monkeypatch.setenv("LLMTRADER_DB", str(db))
    args = ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--interval", "1h", "--from", "2025-11-03",
            "--to", "2025-11-03T06:00", "--timeframes", "1h", "--model", "baseline", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    backtests = db.with_name("backtests.db")
    assert mode(backtests) == 0o600
    assert mode(backtests.parent) == 0o700


# ---- 9. strategy templates take bare placeholders ------------------------------------------------------


BAD_PLACEHOLDERS = [
    ("{time:{account.__class__}}", "format spec"),
    ("{market:>300000000}", "format spec"),
    ("{time:d}", "format spec"),
    ("{time!r}", "conversion"),
    ("{account.__class__}", "attribute or index"),
    ("{limits[0]}", "attribute or index"),
]


def _with_user_prompt(tmp_path: Path, placeholder: str) -> Path:
    text = (builtin_dir() / "default.toml").read_text()
    assert "{market}" in text
    path = tmp_path / "strategies" / "default.toml"
    path.parent.mkdir(exist_ok=True)
    head, _, tail = text.rpartition("\n{market}\n")  # in the user prompt (the first one is in a comment)
    path.write_text(f"{head}\n{placeholder}\n{tail}")
    return path


@pytest.mark.parametrize(("placeholder", "what"), BAD_PLACEHOLDERS)
def test_strategy_validate_refuses_a_placeholder_with_a_format_spec_or_field(
    clean_env: Path, runner: CliRunner, tmp_path: Path, placeholder: str, what: str
) -> None:
    path = _with_user_prompt(tmp_path, placeholder)
    result = runner.invoke(app, ["strategy", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, "one line"
    assert f"placeholder {placeholder} has " in result.stderr and what in result.stderr
    assert "write a placeholder as its bare name" in result.stderr and "available: account, " in result.stderr


@pytest.mark.parametrize(("placeholder", "what"), BAD_PLACEHOLDERS)
def test_loading_a_strategy_refuses_a_placeholder_with_a_format_spec_or_field(
    tmp_path: Path, placeholder: str, what: str
) -> None:
    path = _with_user_prompt(tmp_path, placeholder)
    with pytest.raises(StrategyError, match=r"placeholder .* has ") as caught:
        load_strategy("default", path.parent)  # a user's file overrides the built-in one of the same name
    assert placeholder in str(caught.value) and what in str(caught.value)


def test_every_bundled_strategy_still_loads() -> None:
    files = sorted(builtin_dir().glob("*.toml"))
    assert len(files) >= 6
    for path in files:
        assert load_strategy_file(path).name == path.stem


# ---- 10. download --out never writes through a symbolic link -------------------------------------------------

HOUR = 3_600_000
DAY = 86_400_000
CANDLE_HEADER = "open_time_ms,open,high,low,close,volume\n"
OUTSIDE = "the user's own file, outside --out\n"


@pytest.fixture
def frozen_venue(fake_aster: FakeAster, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAster:
    frozen = int(time.time() * 1000) // HOUR * HOUR + 30 * 60_000
    fake_aster.clock = lambda: frozen
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    return fake_aster


def download(runner: CliRunner, venue: FakeAster, out: Path) -> Any:
    since = datetime.fromtimestamp((venue.clock() // DAY - 3) * DAY / 1000, tz=UTC).strftime("%Y-%m-%d")
    args = ["download", "--out", str(out), "--symbols", "BTCUSDT", "--interval", "1h", "--no-funding", "--since", since]
    return runner.invoke(app, args, env={"COLUMNS": "200"})


@pytest.mark.parametrize("name", ["BTCUSDT-1h.csv", "exchangeInfo.json"])
@pytest.mark.parametrize("content", [CANDLE_HEADER, OUTSIDE])
def test_download_refuses_a_symlink_at_an_output_file(
    frozen_venue: FakeAster, runner: CliRunner, tmp_path: Path, name: str, content: str
) -> None:
    out, target = tmp_path / "data", tmp_path / "elsewhere" / "target"
    out.mkdir()
    target.parent.mkdir()
    target.write_text(content)  # a header-only candle file would be appended to through the link
    (out / name).symlink_to(target)
    result = download(runner, frozen_venue, out)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert (
        f"{out / name}: is a symbolic link" in result.stderr
        and "remove the link, or use another --out" in result.stderr
    )
    assert target.read_text() == content
    assert (out / name).is_symlink() and sorted(p.name for p in out.iterdir()) == [name]  # nothing else written


@pytest.mark.parametrize("part", ["exchangeInfo.json.part", f".BTCUSDT-1h.csv.{os.getpid()}.tmp"])
def test_download_replaces_a_symlink_at_its_temporary_file_never_writing_through_it(
    frozen_venue: FakeAster, runner: CliRunner, tmp_path: Path, part: str
) -> None:
    out, target = tmp_path / "data", tmp_path / "elsewhere"
    out.mkdir()
    target.write_text(OUTSIDE)
    (out / part).symlink_to(target)
    result = download(runner, frozen_venue, out)
    assert result.exit_code == 0, result.output
    assert target.read_text() == OUTSIDE
    assert not (out / part).exists() and not (out / part).is_symlink()
    for name in ("BTCUSDT-1h.csv", "exchangeInfo.json"):
        assert (out / name).is_file() and not (out / name).is_symlink()
    assert (out / "BTCUSDT-1h.csv").read_text().startswith(CANDLE_HEADER)
    assert len((out / "BTCUSDT-1h.csv").read_text().splitlines()) > 24


# ---- 11. the systemd unit is hardened --------------------------------------------------------------------

UNIT = ROOT / "deploy" / "llmtrader.service"


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """The unit's sections, each key with every value it is given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_systemd_unit_is_hardened() -> None:
    service = unit_settings(UNIT)["Service"]
    one = {key: values[-1] for key, values in service.items()}
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
        "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "UMask": "0077", "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "SystemCallArchitectures": "native",
        "StateDirectory": "llmtrader", "StateDirectoryMode": "0700", "User": "llmtrader",
    }  # fmt: skip
    assert {key: one.get(key) for key in expected} == expected
    assert sorted(one["RestrictAddressFamilies"].split()) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert all(f.startswith("~") for f in service["SystemCallFilter"][1:])  # later lines only take calls away
    # The database is in the one directory ProtectSystem=strict leaves writable: StateDirectory's.
    env = dict(e.split("=", 1) for e in service["Environment"])
    assert Path(env["LLMTRADER_DB"]).parent == Path("/var/lib") / one["StateDirectory"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_rates_the_unit_ok_or_better() -> None:
    found = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", found.stdout)
    assert match, found.stdout + found.stderr
    assert match.group(2) in ("SAFE", "OK"), match.group(0)


# ---- 12. reproducible installs ---------------------------------------------------------------------------


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """``name -> (version, number of hashes)`` of a pip-compile lock file."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==(\S+) \\$", line)
        if pin:
            name = canonical(pin.group(1))
            pins[name] = (pin.group(2), 0)
        elif re.match(r"^ +--hash=sha256:[0-9a-f]{64}", line):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
        else:
            assert not line or line.lstrip().startswith("#"), f"{path.name}: unexpected line {line!r}"
    return pins


def test_the_lock_files_pin_every_dependency_with_hashes_and_make_installs_from_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {canonical(re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0]) for r in requirements}

    run, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    assert names(project["dependencies"]) <= set(run)
    assert names(project["dependencies"]) | names(project["optional-dependencies"]["dev"]) <= set(dev)
    assert all(hashes >= 1 for _, hashes in [*run.values(), *dev.values()])
    assert {n: dev[n] for n in run} == run, "the tests run on the versions `make run` installs"
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements.lock" in makefile
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    assert re.findall(r"pip install .*-e \S+", makefile) == ["pip install --quiet --no-deps -e ."] * 2
