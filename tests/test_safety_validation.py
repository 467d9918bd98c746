"""Safety of validation: a new stop or target is checked as an opening's is, absurd numbers in an answer are
recorded rejections of their asset, and a decision that cannot be valid never ends a run.

Pure checks on values (validate_decision on a parsed answer), then the same through ``decide`` against the
fake venue and the fake model, and a backtest of the baseline on candles of extreme volatility.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.backtest.data import load_history
from llmtrader.backtest.replay import run_backtest
from llmtrader.backtest.spec import BacktestSpec, open_backtests
from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.account import AccountState, Position, paper_account_state
from llmtrader.core.decision import extract_json_object, salvage_decision
from llmtrader.core.limits import Limits
from llmtrader.core.risk import RiskInputs, Status, ValidationReport, validate_decision
from llmtrader.llm.baseline import BaselineClient
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision

LIMITS = Limits(
    max_leverage=5, max_position_usd=10_000, min_reward_risk=1.5, min_confidence=0.55, maintenance_margin_rate=0.01,
    min_stop_atr=0.5, max_stop_atr=6, min_target_fee_multiple=2,
)  # fmt: skip
MARKS = {"BTCUSDT": 100_000.0, "ETHUSDT": 4_000.0}
SYMBOLS = ("BTCUSDT", "ETHUSDT")
ATR = 1_000.0  # BTCUSDT's ATR14 in the pure cases: the band is 500 to 6000 from the mark
INPUTS = RiskInputs(
    now_ms=1_800_000_000_000, interval_ms=3_600_000, taker_fee=0.0005, atr={"BTCUSDT": ATR, "ETHUSDT": 100.0}
)
H = 3_600_000


def judge(text: str, account: AccountState | None = None, marks: dict[str, float] | None = None) -> ValidationReport:
    """An answer's text, parsed as a model's is (salvaged per asset), then validated."""
    return validate_decision(
        salvage_decision(extract_json_object(text)),
        symbols=SYMBOLS,
        marks=marks or MARKS,
        account=account or paper_account_state("t", 10_000),
        limits=LIMITS,
        inputs=INPUTS,
    )


def verdict(report: ValidationReport, symbol: str) -> Any:
    return next(a for a in report.assets if a.symbol == symbol)


def holding(side: str = "long", *, entry: float = 100_000, mark: float = 100_000, leverage: int = 3,
            liq: float | None = 70_000, margin_type: str = "isolated") -> AccountState:  # fmt: skip
    cross: dict[str, Any] = {"margin_type": margin_type} if margin_type != "isolated" else {}
    position = Position(
        symbol="BTCUSDT", side=side, size=0.05, entry_price=entry, mark_price=mark, unrealized_pnl=0,  # type: ignore[arg-type]
        leverage=leverage, liquidation_price=liq, stop_loss=97_000, take_profit=106_000, **cross,
    )  # fmt: skip
    return AccountState(name="t", mode="paper", balance_usd=10_000, available_usd=8_000, positions=(position,))


def adjust(action: str = "adjust_orders", **kw: Any) -> str:
    fields: dict[str, Any] = {"allocation_usd": 0, "tp_price": None, "sl_price": None}
    fields.update(kw)
    return json.dumps(decision(asset("BTCUSDT", action, **fields), asset("ETHUSDT")))


# ---- 3. a new stop or target is validated as an opening's --------------------------------------------------


@pytest.mark.parametrize(
    ("sl", "reason"),
    [
        (1.0, "sl_price 1 lies beyond the liquidation price 70000: the stop would never trigger"),
        (80_000.0, "stop distance 20000 is 20.00 ATR (ATR14 1000), above the maximum 6 ATR"),
        (99_800.0, "stop distance 200 is 0.20 ATR (ATR14 1000), below the minimum 0.5 ATR"),
    ],
)
def test_adjust_orders_refuses_a_stop_beyond_liquidation_or_outside_the_atr_band(sl: float, reason: str) -> None:
    v = verdict(judge(adjust(sl_price=sl), holding()), "BTCUSDT")
    assert v.status is Status.REJECTED and v.final is None
    assert reason in v.reasons


def test_the_stop_band_is_measured_from_the_current_mark_not_the_entry() -> None:
    # Entry 100000, mark 110000: a stop at 105000 is 5 ATR from the mark (15 from the entry) and is accepted;
    # one at 103000 is 7 ATR from the mark and is refused.
    account = holding(mark=110_000)
    marks = {**MARKS, "BTCUSDT": 110_000.0}
    ok = verdict(judge(adjust(sl_price=105_000), account, marks), "BTCUSDT")
    assert (ok.status, ok.reasons) == (Status.ACCEPTED, [])
    far = verdict(judge(adjust(sl_price=103_000), account, marks), "BTCUSDT")
    assert far.status is Status.REJECTED
    assert far.reasons == ["stop distance 7000 is 7.00 ATR (ATR14 1000), above the maximum 6 ATR"]


@pytest.mark.parametrize(
    ("liq", "margin_type"),
    [(None, "isolated"), (50_000.0, "cross")],
    ids=["venue-reports-no-liquidation-price", "cross-margin"],
)
def test_without_the_venues_isolated_figure_the_openings_liquidation_estimate_applies(
    liq: float | None, margin_type: str
) -> None:
    # A 3x long from 100000 with a 1% maintenance margin: estimated liquidation 100000 x (1 - 1/3 + 0.01).
    marks = {**MARKS, "BTCUSDT": 70_000.0}
    account = holding(mark=70_000, liq=liq, margin_type=margin_type)
    v = verdict(judge(adjust(sl_price=66_000), account, marks), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert v.reasons == [
        "sl_price 66000 lies beyond the estimated liquidation price 67666.67 at 3x: the stop would never trigger"
    ]
    inside = verdict(judge(adjust(sl_price=68_000), account, marks), "BTCUSDT")
    assert inside.status is Status.ACCEPTED


def test_a_new_target_must_clear_the_fees_from_the_mark() -> None:
    # Round trip 2 x 0.05 % = 0.1 %, twice over: a target at least 200 above the mark 100000.
    near = verdict(judge(adjust(tp_price=100_100), holding()), "BTCUSDT")
    assert near.status is Status.REJECTED
    assert near.reasons[0].startswith("target distance 100 (0.100% of the mark) below 2 x the round-trip taker fee")
    ok = verdict(judge(adjust(tp_price=100_300), holding()), "BTCUSDT")
    assert ok.status is Status.ACCEPTED


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"sl_price": 101_000}, "sl_price 101000 must be below the mark price 100000 for a long"),
        ({"sl_price": 1.0}, "sl_price 1 lies beyond the liquidation price 70000: the stop would never trigger"),
        ({"sl_price": 80_000}, "stop distance 20000 is 20.00 ATR (ATR14 1000), above the maximum 6 ATR"),
        ({"tp_price": 99_000}, "tp_price 99000 must be above the mark price 100000 for a long"),
    ],
)
def test_adjust_position_checks_its_new_levels_too(fields: dict[str, float], reason: str) -> None:
    v = verdict(judge(adjust("adjust_position", allocation_usd=1000, leverage=3, **fields), holding()), "BTCUSDT")
    assert v.status is Status.REJECTED and reason in v.reasons


def open_long(
    runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, leverage: int = 2
) -> list[tuple[str, str, str]]:
    """A live long on BTCUSDT with its stop and target at the venue; returns the venue's open orders."""
    mark = fake_aster.mark("BTCUSDT")
    buy = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=leverage, tp_price=round(mark * 1.04, 1),
                sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(answer(decision(buy, asset("ETHUSDT"))))
    result = runner.invoke(app, ["decide", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["execution"] == "executed"
    return venue_orders(fake_aster)


def venue_orders(fake_aster: FakeAster) -> list[tuple[str, str, str]]:
    return sorted((o.client_order_id, o.orig_type, str(o.stop_price)) for o in fake_aster.open_orders(USER))


@pytest.mark.parametrize(
    ("leverage", "share", "reason"),
    [
        (2, None, "lies beyond the liquidation price"),
        # at 1x the venue reports no liquidation price (0): the opening's estimate stands in for it
        (1, None, "lies beyond the estimated liquidation price"),
        (2, 0.8, "ATR (ATR14 "),
        (2, 1.01, "must be below the mark price"),
    ],
    ids=["stop-at-1-usd", "stop-at-1-usd-no-venue-liquidation-price", "stop-20-pct-away", "stop-above-the-mark"],
)
def test_a_rejected_adjustment_leaves_the_venues_protection_untouched(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, leverage: int, share: float | None,
    reason: str,
) -> None:  # fmt: skip
    before = open_long(runner, fake_aster, fake_llm, leverage)
    assert [kind for _, kind, _ in before] == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    mark = fake_aster.mark("BTCUSDT")
    sl = 1.0 if share is None else round(mark * share, 1)
    fake_llm.push(answer(adjust(sl_price=sl)))
    result = runner.invoke(app, ["decide", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    btc = next(a for a in out["assets"] if a["symbol"] == "BTCUSDT")
    assert btc["validation"]["status"] == "rejected"
    assert any(reason in r for r in btc["validation"]["reasons"]), btc["validation"]["reasons"]
    assert out["execution"] == "nothing"
    assert venue_orders(fake_aster) == before  # the old stop and target are still the ones at the venue
    assert list(fake_aster.positions(USER)) == ["BTCUSDT"]


def test_a_sound_adjustment_still_replaces_the_stop(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    before = open_long(runner, fake_aster, fake_llm)
    sl = round(fake_aster.mark("BTCUSDT") * 0.985, 1)
    fake_llm.push(answer(adjust(sl_price=sl)))
    result = runner.invoke(app, ["decide", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["execution"] == "executed"
    after = venue_orders(fake_aster)
    stops = [(cid, price) for cid, kind, price in after if kind == "STOP_MARKET"]
    assert len(stops) == 1 and Decimal(stops[0][1]) == Decimal(str(sl)) and after != before


# ---- 4. non-finite and absurd numbers ---------------------------------------------------------------------


def with_literal(entry: str, field: str, literal: str) -> str:
    """``entry`` (JSON text) with ``field``'s value replaced by ``literal``, written verbatim."""
    value = json.dumps(json.loads(entry)[field])
    return entry.replace(f'"{field}": {value}', f'"{field}": {literal}', 1)


def raw_asset(symbol: str, action: str, **literals: str) -> str:
    """One asset entry as JSON text; ``literals`` are written verbatim (Infinity, NaN, 1e400, "12")."""
    entry = asset(symbol, action, allocation_usd=1000, leverage=3, tp_price=106_000, sl_price=97_000,
                  confidence=0.7, risk_level="medium")  # fmt: skip
    text = json.dumps(entry)
    for key, literal in literals.items():
        text = with_literal(text, key, literal)
    return text


def raw_answer(*entries: str, total: str = "1000") -> str:
    return (
        '{"assets": [' + ", ".join(entries) + '], "portfolio_rationale": "r", '
        f'"total_allocation_usd": {total}, "portfolio_risk_level": "medium"}}'
    )


ETH_SELL = raw_asset("ETHUSDT", "sell", tp_price="3700", sl_price="4150")


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("allocation_usd", "1e308"),
        ("allocation_usd", "1" + "0" * 400),  # an integer no float can hold
        ("allocation_usd", "Infinity"),
        ("allocation_usd", "NaN"),
        ("allocation_usd", "-5"),
        ("allocation_usd", '"1000"'),
        ("allocation_usd", "true"),
        ("tp_price", "1e308"),
        ("tp_price", "1e400"),
        ("sl_price", "-Infinity"),
        ("entry_price", "1e300"),
        ("leverage", "1e30"),
        ("leverage", '"3"'),
        ("confidence", "NaN"),
    ],
)
def test_a_non_finite_or_absurd_number_rejects_its_asset_naming_the_field(field: str, literal: str) -> None:
    report = judge(raw_answer(raw_asset("BTCUSDT", "buy", **{field: literal}), ETH_SELL))
    btc, eth = verdict(report, "BTCUSDT"), verdict(report, "ETHUSDT")
    assert btc.status is Status.REJECTED and btc.final is None
    assert any(r.startswith(f"assets.0.{field}:") for r in btc.reasons), btc.reasons
    assert eth.status is Status.ACCEPTED  # the other assets of the decision are still judged
    # what is kept of the answer is valid JSON
    json.dumps(btc.proposed, allow_nan=False)


@pytest.mark.parametrize("total", ["Infinity", "1e308", "NaN", "1" + "0" * 400])
def test_an_absurd_total_is_ignored_not_fatal(total: str) -> None:
    report = judge(raw_answer(raw_asset("BTCUSDT", "buy"), ETH_SELL, total=total))
    assert verdict(report, "BTCUSDT").status is Status.ACCEPTED
    assert not any("total_allocation_usd" in n for n in report.notes)


def strict_json(text: str) -> Any:
    """JSON as the standard defines it: a bare Infinity or NaN is an error."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("field", "literal"),
    [("allocation_usd", "1e308"), ("tp_price", "1e308"), ("allocation_usd", "-Infinity"), ("confidence", "NaN")],
)
def test_decide_records_an_absurd_number_as_a_rejection_with_the_calls_cost(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch,
    field: str, literal: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("LLM_MAX_REASKS", "0")
    mark = fake_aster.mark("BTCUSDT")
    btc = raw_asset("BTCUSDT", "buy", tp_price=str(round(mark * 1.04, 1)), sl_price=str(round(mark * 0.98, 1)))
    text = raw_answer(with_literal(btc, field, literal), json.dumps(asset("ETHUSDT")))
    fake_llm.push(answer(text, cost=0.0042))
    result = runner.invoke(app, ["decide", "--json"])
    assert result.exit_code == 0, result.output
    out = strict_json(result.stdout)  # one valid JSON document: no bare Infinity or NaN
    verdicts = {a["symbol"]: a["validation"] for a in out["assets"]}
    assert verdicts["BTCUSDT"]["status"] == "rejected"
    assert any(r.startswith(f"assets.0.{field}:") for r in verdicts["BTCUSDT"]["reasons"])
    assert verdicts["ETHUSDT"]["status"] == "accepted"
    assert out["outcome"] == "decided" and out["execution"] == "nothing"
    assert out["usage"]["cost_usd"] == pytest.approx(0.0042)
    # recorded like any decision, with the model call's cost (what the daily budget sums)
    shown = runner.invoke(app, ["show", out["decision_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    record = strict_json(shown.stdout)
    assert record["cost_usd"] == pytest.approx(0.0042)
    listed = strict_json(runner.invoke(app, ["positions", "--json"]).stdout)
    assert listed == []  # nothing opened, with or without a target


# ---- 16. a decision that cannot be valid never ends a run --------------------------------------------------


def wild_candles(path: Path, n: int = 400) -> int:
    """1h candles of a falling market whose every candle spans +-40 %: ATR14 far above a third of the price, so
    the baseline's short target (3 ATR below the mark) is below 0. Returns the first open time."""
    start = 1_699_999_200_000  # a 4h boundary
    rows = ["open_time_ms,open,high,low,close,volume"]
    close = 1000.0
    for i in range(n):
        open_ = close
        rate = 0.004 + 0.00002 * i
        close = close * (1 - 2.2 * rate) if i % 2 == 0 else close * (1 + 1.5 * rate)
        high, low = max(open_, close) * 1.4, min(open_, close) * 0.6
        rows.append(f"{start + i * H},{open_:.4f},{high:.4f},{low:.4f},{close:.4f},100")
    path.write_text("\n".join(rows) + "\n")
    return start


def test_a_baseline_target_at_or_below_zero_is_rejected_and_the_backtest_runs_on(
    clean_env: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    start = wild_candles(data / "BTCUSDT-1h.csv")
    settings = load_settings(None, None)
    spec = BacktestSpec(
        data_dir=str(data), symbols=("BTCUSDT",), interval="1h", start_ms=start + 300 * H, end_ms=start + 399 * H,
        timeframes=("1h", "4h"), model="baseline", strategy="default", balance_usd=10_000.0,
    )  # fmt: skip
    store = open_backtests(settings)
    try:
        history = load_history(spec, load_strategy(spec.strategy, settings.strategies_dir))
        result = asyncio.run(run_backtest(settings, spec, history, store, BaselineClient(), run_id="bt-wild"))
        rows = store.db.execute(
            "SELECT a.action, a.status, a.reasons FROM asset_decisions a WHERE a.account = 'bt-wild'"
        ).fetchall()
    finally:
        store.close()
    assert result.steps_done == 100
    refused = [json.loads(reasons) for action, status, reasons in rows if action == "sell" and status == "rejected"]
    assert refused, rows[:5]
    assert all(any(r.startswith("assets.0.tp_price: Input should be greater than 0") for r in rs) for rs in refused)


def test_the_number_bounds_leave_the_request_and_its_hash_as_recorded_runs_have_them() -> None:
    """The bounds are checked on values, not written into the decision schema: the schema is part of every
    request and of its hash, so a changed schema would stop every stored backtest from replaying byte for byte.
    The digest below is the one the code before the bounds gave for this request."""
    from llmtrader.backtest.clients import request_hash

    digest = request_hash("model-a", "http://127.0.0.1:1/v1", "system text", "user text")
    assert digest == "88a9137ad69fc6d97564584fce1f8d261c0f6577b7f5fc6fb9b22d13b7d95148"
