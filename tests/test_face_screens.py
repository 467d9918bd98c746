"""Every screen at 80 and 200 columns: no line wider than the terminal, and every id, symbol, price, size and
date whole on one line (so an id can be copied into `show`), whatever the layout (table or stacked)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import WIDTHS, at_width, lines_of


def whole(lines: list[str], *tokens: str) -> None:
    """Each token appears intact on some line (never split across two)."""
    for token in tokens:
        assert any(token in line for line in lines), (token, "\n".join(lines))


def _trade(runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM) -> dict[str, Any]:
    mark = fake_aster.mark("BTCUSDT")
    fake_llm.push(answer(decision(
        asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
              sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium"),
        asset("ETHUSDT", "sell", allocation_usd=50, leverage=3, tp_price=1.0, sl_price=1.5, confidence=0.9),
    )))  # fmt: skip
    result = runner.invoke(app, ["decide", "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_decide_positions_history_show_fit(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch,
    width: int,
) -> None:  # fmt: skip
    at_width(monkeypatch, width)
    first = _trade(runner, fake_aster, fake_llm)
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    lines = lines_of(runner.invoke(app, ["decide", "--dry-run"]), width)
    whole(lines, "BTCUSDT", "ETHUSDT")
    assert any(re.search(r"\b0mx\w{11}\b|\b\w{14}\b", line) for line in lines)

    positions = json.loads(runner.invoke(app, ["positions", "--json"]).stdout)
    (btc,) = positions
    lines = lines_of(runner.invoke(app, ["positions"]), width)
    shown = [str(btc[k]) for k in ("size", "entry_price", "mark_price", "sl_price", "tp_price")]  # JSON numbers
    whole(lines, "BTCUSDT", *shown)
    assert len(str(btc["entry_price"]).split(".")[-1]) <= 1  # at the tick (0.1), not an average's 28 decimals

    history = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    lines = lines_of(runner.invoke(app, ["history"]), width)
    whole(lines, *(h["decision_id"] for h in history), "BTCUSDT", "ETHUSDT")
    whole(lines, *(h["created_at"][:16].replace("T", " ") for h in history))

    lines = lines_of(runner.invoke(app, ["show", first["decision_id"]]), width)
    whole(lines, first["decision_id"], "BTCUSDT", "ETHUSDT")
    whole(lines, *(leg["client_order_id"] for o in first["orders"] for leg in o["orders"] if leg["client_order_id"]))
    # the validator's reasons stand under the table, not in a column running down the screen
    eth = next(a for a in first["assets"] if a["symbol"] == "ETHUSDT")
    assert eth["validation"]["status"] == "rejected"
    assert any(line.startswith("ETHUSDT: ") for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_strategy_list_fits_in_a_few_lines(clean_env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                           width: int) -> None:  # fmt: skip
    at_width(monkeypatch, width)
    lines = lines_of(runner.invoke(app, ["strategy", "list"]), width)
    whole(lines, "aggressive", "conservative", "swing", "15m,1h,4h")
    assert len(lines) < 40  # 6 strategies: a table and their descriptions, not 160 lines


@pytest.mark.parametrize("width", WIDTHS)
def test_status_and_stats_fit(paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM,
                              monkeypatch: pytest.MonkeyPatch, width: int) -> None:  # fmt: skip
    at_width(monkeypatch, width)
    _trade(runner, fake_aster, fake_llm)
    lines_of(runner.invoke(app, ["status"]), width)
    lines_of(runner.invoke(app, ["stats"]), width)
    lines_of(runner.invoke(app, ["config", "show"]), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_close_shows_the_realised_pnl(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch,
    width: int,
) -> None:  # fmt: skip
    at_width(monkeypatch, width)
    _trade(runner, fake_aster, fake_llm)
    lines = lines_of(runner.invoke(app, ["close", "--all", "--yes"]), width)
    assert any(line.startswith("BTCUSDT: closed ") and "realised PnL" in line for line in lines), lines
