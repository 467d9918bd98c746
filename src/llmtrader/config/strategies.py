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


def load_strategy_file(path: Path) -> Strategy:
    """Load and validate one strategy file (read at every decision: an edit takes effect at the next one)."""
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


def _strategy_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files of ``directory`` (none when it cannot be read)."""
    try:
        return sorted(directory.glob("*.toml"))
    except OSError:
        return []


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
