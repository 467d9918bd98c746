"""Every validation rule of risk.py, on values: no server, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from llmtrader.account import AccountState, Position, paper_account_state
from llmtrader.context import Limits
from llmtrader.decision import AssetDecision, LenientDecision, salvage_decision
from llmtrader.risk import Status, ValidationReport, liquidation_price, validate_decision

LIMITS = Limits(
    max_leverage=5, max_position_usd=10_000, min_reward_risk=1.5, min_confidence=0.55, maintenance_margin_rate=0.01
)
MARKS = {"BTCUSDT": 100_000.0, "ETHUSDT": 4_000.0, "SOLUSDT": 200.0}
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def asset(symbol: str = "BTCUSDT", action: str = "buy", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "symbol": symbol, "action": action, "rationale": "test", "allocation_usd": 1000, "leverage": 3,
        "entry_price": None, "tp_price": 106_000, "sl_price": 97_000, "confidence": 0.7, "risk_level": "medium",
    }  # fmt: skip
    if action == "sell":
        base.update(tp_price=94_000, sl_price=103_000)
    if action == "hold":
        base.update(allocation_usd=0, tp_price=None, sl_price=None)
    base.update(kw)
    return base


def run(
    *assets: dict[str, Any],
    symbols: tuple[str, ...] = SYMBOLS,
    account: AccountState | None = None,
    total: float | None = None,
) -> ValidationReport:
    obj = {
        "assets": list(assets),
        "portfolio_rationale": "r",
        "total_allocation_usd": total if total is not None else sum(a.get("allocation_usd", 0) for a in assets),
        "portfolio_risk_level": "medium",
    }
    return validate_decision(
        salvage_decision(obj),
        symbols=symbols,
        marks=MARKS,
        account=account or paper_account_state("t", 10_000),
        limits=LIMITS,
    )


def verdict(report: ValidationReport, symbol: str, index: int = 0) -> Any:
    return [a for a in report.assets if a.symbol == symbol][index]


def with_position(side: str, size: float = 0.05, leverage: int = 3, **kw: Any) -> AccountState:
    position = Position(
        symbol="BTCUSDT", side=side, size=size, entry_price=100_000, mark_price=100_000, unrealized_pnl=0,  # type: ignore[arg-type]
        leverage=leverage, liquidation_price=kw.pop("liq", 70_000 if side == "long" else 130_000), **kw,
    )  # fmt: skip
    return AccountState(name="t", mode="paper", balance_usd=10_000, available_usd=8_000, positions=(position,))


def test_valid_long_and_short_are_accepted_unchanged() -> None:
    report = run(asset("BTCUSDT", "buy"), asset("ETHUSDT", "sell", tp_price=3_700, sl_price=4_150))
    btc, eth = verdict(report, "BTCUSDT"), verdict(report, "ETHUSDT")
    assert (btc.status, btc.reasons) == (Status.ACCEPTED, [])
    assert (eth.status, eth.reasons) == (Status.ACCEPTED, [])
    assert btc.final is not None and btc.final.allocation_usd == 1000 and btc.final.leverage == 3
    assert not report.all_rejected


def test_symbol_not_asked_for_is_rejected_and_others_survive() -> None:
    report = run(asset("SOLUSDT", tp_price=230, sl_price=190), asset("BTCUSDT"))
    sol = verdict(report, "SOLUSDT")
    assert sol.status is Status.REJECTED and "SOLUSDT was not asked for" in sol.reasons[0]
    assert sol.final is None
    assert verdict(report, "BTCUSDT").status is Status.ACCEPTED


def test_second_decision_for_a_symbol_is_rejected() -> None:
    report = run(asset("BTCUSDT"), asset("BTCUSDT", allocation_usd=2000))
    first, second = verdict(report, "BTCUSDT", 0), verdict(report, "BTCUSDT", 1)
    assert first.status is Status.ACCEPTED
    assert second.status is Status.REJECTED and "second decision" in second.reasons[0]


def test_leverage_above_the_limit_is_clamped() -> None:
    v = verdict(run(asset(leverage=200)), "BTCUSDT")
    assert v.status is Status.AMENDED
    assert v.final is not None and v.final.leverage == 5
    assert v.reasons == ["leverage 200 above the limit 5: set to 5"]


def test_notional_above_the_maximum_reduces_the_allocation() -> None:
    v = verdict(run(asset(allocation_usd=2500, leverage=5)), "BTCUSDT")
    assert v.status is Status.AMENDED
    assert v.final is not None and v.final.allocation_usd == pytest.approx(2000)
    assert "notional 12500 USD above the limit 10000 USD" in v.reasons[0]


@pytest.mark.parametrize("missing", ["tp_price", "sl_price"])
def test_missing_stop_or_target_is_rejected(missing: str) -> None:
    v = verdict(run(asset(**{missing: None})), "BTCUSDT")
    assert v.status is Status.REJECTED and f"{missing} is missing" in v.reasons


@pytest.mark.parametrize(
    ("action", "tp", "sl", "expected"),
    [
        ("buy", 106_000, 100_500, "sl_price 100500 must be below the mark price 100000 for a long"),
        ("buy", 99_000, 97_000, "tp_price 99000 must be above the mark price 100000 for a long"),
        ("sell", 94_000, 99_000, "sl_price 99000 must be above the mark price 100000 for a short"),
        ("sell", 101_000, 103_000, "tp_price 101000 must be below the mark price 100000 for a short"),
    ],
)
def test_stop_or_target_on_the_wrong_side_of_the_mark_is_rejected(
    action: str, tp: float, sl: float, expected: str
) -> None:
    v = verdict(run(asset(action=action, tp_price=tp, sl_price=sl)), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert expected in v.reasons


def test_reward_risk_below_the_minimum_is_rejected() -> None:
    v = verdict(run(asset(tp_price=103_000, sl_price=97_000)), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert v.reasons[0].startswith("reward/risk 1.00 (entry 100000, tp 103000, sl 97000) below the minimum 1.5")


def test_reward_risk_is_measured_from_a_limit_entry() -> None:
    # From the mark (100000) this is 1000/2000 = 0.5; from the limit entry 99000 it is 2000/1000 = 2.
    v = verdict(run(asset(entry_price=99_000, tp_price=101_000, sl_price=98_000)), "BTCUSDT")
    assert v.status is Status.ACCEPTED, v.reasons


def test_stop_beyond_the_liquidation_price_is_rejected() -> None:
    liq = liquidation_price(100_000, 5, "long", 0.01)
    assert liq == pytest.approx(81_000)
    v = verdict(run(asset(leverage=5, allocation_usd=500, sl_price=80_000, tp_price=140_000)), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert any("beyond the estimated liquidation price 81000 at 5x" in r for r in v.reasons)


def test_short_liquidation_is_above_the_entry() -> None:
    assert liquidation_price(100_000, 4, "short", 0.01) == pytest.approx(124_000)


def test_confidence_below_the_floor_is_rejected() -> None:
    v = verdict(run(asset(confidence=0.4)), "BTCUSDT")
    assert v.status is Status.REJECTED and v.reasons == ["confidence 0.4 below the floor 0.55"]


def test_every_reason_is_reported_not_only_the_first() -> None:
    v = verdict(run(asset(tp_price=None, confidence=0.1)), "BTCUSDT")
    assert "tp_price is missing" in v.reasons
    assert "confidence 0.1 below the floor 0.55" in v.reasons


def test_total_above_the_available_balance_is_scaled_pro_rata() -> None:
    account = paper_account_state("t", 3_000)
    report = run(
        asset("BTCUSDT", allocation_usd=3000, leverage=2),
        asset("ETHUSDT", "sell", allocation_usd=1000, leverage=2, tp_price=3_700, sl_price=4_150),
        account=account,
    )
    btc, eth = verdict(report, "BTCUSDT"), verdict(report, "ETHUSDT")
    assert btc.status is Status.AMENDED and eth.status is Status.AMENDED
    assert btc.final is not None and eth.final is not None
    assert btc.final.allocation_usd == pytest.approx(2250)
    assert eth.final.allocation_usd == pytest.approx(750)
    assert btc.final.allocation_usd + eth.final.allocation_usd == pytest.approx(3000)
    assert any("exceeds the available balance 3000 USD" in n for n in report.notes)


def test_one_invalid_asset_never_voids_the_others() -> None:
    report = run(asset("BTCUSDT", action="yolo"), asset("ETHUSDT", "sell", tp_price=3_700, sl_price=4_150))
    btc, eth = verdict(report, "BTCUSDT"), verdict(report, "ETHUSDT")
    assert btc.status is Status.REJECTED and btc.action == "yolo"
    assert any(r.startswith("assets.0.action:") for r in btc.reasons)
    assert eth.status is Status.ACCEPTED
    assert not report.all_rejected


def test_a_symbol_missing_from_the_answer_is_held() -> None:
    report = run(asset("BTCUSDT"))
    eth = verdict(report, "ETHUSDT")
    assert eth.action == "hold" and eth.status is Status.ACCEPTED and eth.proposed is None
    assert eth.reasons == ["no decision in the model's answer: treated as hold"]


def test_all_rejected_only_when_every_answered_asset_is_rejected() -> None:
    assert run(asset("BTCUSDT", confidence=0.1), asset("ETHUSDT", action="?")).all_rejected
    assert not run(asset("BTCUSDT", confidence=0.1), asset("ETHUSDT", "hold")).all_rejected


@pytest.mark.parametrize("action", ["close_position", "adjust_orders", "adjust_position"])
def test_actions_on_a_position_need_one(action: str) -> None:
    v = verdict(run(asset(action=action)), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert v.reasons == [f"{action} needs an open position on BTCUSDT; there is none"]


def test_close_an_open_position_is_accepted() -> None:
    v = verdict(run(asset(action="close_position", allocation_usd=0), account=with_position("long")), "BTCUSDT")
    assert v.status is Status.ACCEPTED


def test_adjust_orders_checks_sides_and_liquidation() -> None:
    long = with_position("long")
    ok = verdict(run(asset(action="adjust_orders", tp_price=110_000, sl_price=98_000), account=long), "BTCUSDT")
    assert ok.status is Status.ACCEPTED
    wrong = verdict(run(asset(action="adjust_orders", tp_price=None, sl_price=101_000), account=long), "BTCUSDT")
    assert wrong.status is Status.REJECTED and "sl_price 101000 must be below the mark price" in wrong.reasons[0]
    beyond = verdict(run(asset(action="adjust_orders", tp_price=None, sl_price=65_000), account=long), "BTCUSDT")
    assert beyond.status is Status.REJECTED
    assert beyond.reasons == ["sl_price 65000 lies beyond the liquidation price 70000"]
    empty = verdict(run(asset(action="adjust_orders", tp_price=None, sl_price=None), account=long), "BTCUSDT")
    assert empty.reasons == ["adjust_orders needs a new tp_price or sl_price"]


def test_opening_against_an_open_position_is_rejected() -> None:
    v = verdict(run(asset("BTCUSDT", "buy"), account=with_position("short")), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert "a short position is open; close it before opening a long" in v.reasons


def test_adding_to_a_position_counts_its_notional() -> None:
    # 0.05 BTC at 100000 = 5000 USD already; adding 3000 x 3 = 9000 would make 14000.
    v = verdict(run(asset(allocation_usd=3000, leverage=3), account=with_position("long")), "BTCUSDT")
    assert v.status is Status.AMENDED
    assert v.final is not None
    assert v.final.allocation_usd * 3 + 5000 == pytest.approx(10_000)


def test_adjust_position_keeps_the_position_leverage_and_the_cap() -> None:
    v = verdict(
        run(asset(action="adjust_position", allocation_usd=5000, leverage=10), account=with_position("long")),
        "BTCUSDT",
    )
    assert v.status is Status.AMENDED
    assert v.final is not None and v.final.leverage == 3
    assert v.final.allocation_usd == pytest.approx(10_000 / 3)


def test_the_model_total_is_checked_against_the_validated_sum() -> None:
    report = run(asset("BTCUSDT"), total=9_999)
    assert any("total_allocation_usd 9999 differs" in n for n in report.notes)


def test_validated_decisions_remain_schema_valid() -> None:
    report = run(asset(leverage=50, allocation_usd=5000), asset("ETHUSDT", "hold"))
    for v in report.assets:
        if v.final is not None:
            AssetDecision.model_validate(v.final.model_dump())


def test_an_answer_without_assets_holds_everything() -> None:
    empty = LenientDecision(
        assets=[], invalid=[], portfolio_rationale="", total_allocation_usd=None, portfolio_risk_level=None
    )
    report = validate_decision(
        empty, symbols=SYMBOLS, marks=MARKS, account=paper_account_state("t", 10_000), limits=LIMITS
    )
    assert [(a.symbol, a.action, a.status) for a in report.assets] == [
        ("BTCUSDT", "hold", Status.ACCEPTED),
        ("ETHUSDT", "hold", Status.ACCEPTED),
    ]
    assert not report.all_rejected
