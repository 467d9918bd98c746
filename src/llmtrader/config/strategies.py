"""Strategy files: the built-in ones and the user's, found, parsed (TOML) and checked against the schema of
:mod:`llmtrader.core.strategy`."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmtrader.config.file import user_config_path
from llmtrader.core.strategy import Strategy
from llmtrader.errors import StrategyError


@cache
def builtin_dir() -> Path:
    """The built-in strategies: inside the installed package, or the project's strategies/."""
    here = Path(__file__).resolve().parents[1]  # the llmtrader package, whatever subpackage this module is in
    packaged = here / "_strategies"
    return packaged if packaged.is_dir() else here.parents[1] / "strategies"


# Parsed files by (path, mtime, size): a scheduled agent or a backtest resolves its strategy at every
# decision, and parsing the TOML again each time was a millisecond of every cycle. An edited file has a
# new mtime or size, so a change still takes effect at the next decision.
_LOADED: dict[tuple[str, int, int], Strategy] = {}


def load_strategy_file(path: Path) -> Strategy:
    """Load and validate one strategy file (the result is shared between callers: treat it as read-only)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise StrategyError(f"strategy file {path}: unreadable ({exc.strerror})") from exc
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    strategy = _parse_strategy_file(path)
    if len(_LOADED) > 64:
        _LOADED.clear()
    _LOADED[key] = strategy
    return strategy


def _parse_strategy_file(path: Path) -> Strategy:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except OSError as exc:
        raise StrategyError(f"strategy file {path}: unreadable ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StrategyError(f"strategy file {path}: not valid TOML: {exc}") from exc
    try:
        return Strategy.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err.get("loc", ())) or "(file)"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = "unknown key"
            if key == "(file)" and msg.split(":", 1)[0] in Strategy.model_fields:
                parts.append(msg)  # a whole-file check that already names its key
            else:
                parts.append(f"{key}: {msg}")
        raise StrategyError(f"strategy file {path}: " + "; ".join(parts)) from None


_LISTED: dict[tuple[str, int], list[Path]] = {}


def _strategy_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files of ``directory``, listed again only when the directory changed (its mtime)."""
    try:
        key = (str(directory), directory.stat().st_mtime_ns)
    except OSError:
        return []
    listed = _LISTED.get(key)
    if listed is None:
        listed = sorted(directory.glob("*.toml"))
        if len(_LISTED) > 16:
            _LISTED.clear()
        _LISTED[key] = listed
    return listed


def default_user_dir() -> Path:
    """Where the user's strategies are found without a ``strategies_dir`` setting: ``strategies`` beside the
    user's config.toml (XDG on Linux: ~/.config/llmtrader/strategies), as config.example.toml suggests."""
    return user_config_path().parent / "strategies"


def available_strategies(user_dir: Path | None) -> dict[str, Path]:
    """Strategy names and their files; the user's directory (``strategies_dir``, else the one of
    :func:`default_user_dir` when it exists) shadows the built-in ones."""
    if user_dir is None and default_user_dir().is_dir():
        user_dir = default_user_dir()
    found: dict[str, Path] = {}
    for directory in (builtin_dir(), user_dir):
        if directory is not None:
            for path in _strategy_files(directory):
                found[path.stem] = path
    return found


def load_strategy(name: str, user_dir: Path | None = None) -> Strategy:
    """The strategy called ``name``; StrategyError lists the available ones when it is unknown."""
    found = available_strategies(user_dir)
    path = found.get(name)
    if path is None:
        names = ", ".join(sorted(found)) or "(none found)"
        raise StrategyError(f"unknown strategy {name!r}; available: {names}")
    strategy = load_strategy_file(path)
    if strategy.name != name:
        raise StrategyError(f"strategy file {path}: name: {strategy.name!r} differs from the file name")
    return strategy
