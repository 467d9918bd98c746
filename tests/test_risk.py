"""Every validation rule of risk.py, on values: no server, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from llmtrader.core.account import AccountState, Position, paper_account_state
from llmtrader.core.decision import AssetDecision, LenientDecision, salvage_decision
from llmtrader.core.limits import DcaLimits, Limits
from llmtrader.core.risk import RiskInputs, Status, ValidationReport, liquidation_price, validate_decision

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
    limits: Limits = LIMITS,
    inputs: RiskInputs | None = None,
    marks: dict[str, float] | None = None,
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
        marks=marks or MARKS,
        account=account or paper_account_state("t", 10_000),
        limits=limits,
        inputs=inputs,
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
    assert beyond.reasons == ["sl_price 65000 lies beyond the liquidation price 70000: the stop would never trigger"]
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


# --- the strategy limits that need more than the decision: ATR, time, fees, the day's loss, DCA ---

NOW = 1_760_000_000_000
MINUTE = 60_000
# ATR 1000 on BTC: the default long (entry 100000, sl 97000, tp 106000) has a 3-ATR stop.
INPUTS = RiskInputs(
    now_ms=NOW, interval_ms=3_600_000, taker_fee=0.0005, atr={"BTCUSDT": 1000.0, "ETHUSDT": 40.0},
    day_start_equity=10_000,
)  # fmt: skip
STRICT = Limits(
    max_leverage=5, max_position_usd=10_000, min_reward_risk=1.5, min_confidence=0.55, maintenance_margin_rate=0.01,
    max_position_pct=100, max_total_exposure_pct=200, min_stop_atr=1, max_stop_atr=4, max_open_positions=3,
    cooldown_minutes=60, min_hold_minutes=120, daily_loss_limit_pct=5, min_target_fee_multiple=3,
)  # fmt: skip
ETH_SHORT = {"tp_price": 3_700, "sl_price": 4_150}


def inputs(**kw: Any) -> RiskInputs:
    base: dict[str, Any] = {
        "now_ms": INPUTS.now_ms, "interval_ms": INPUTS.interval_ms, "taker_fee": INPUTS.taker_fee, "atr": INPUTS.atr,
        "day_start_equity": INPUTS.day_start_equity,
    }  # fmt: skip
    base.update(kw)
    return RiskInputs(**base)


def strict(*assets: dict[str, Any], **kw: Any) -> ValidationReport:
    kw.setdefault("inputs", INPUTS)
    return run(*assets, limits=kw.pop("limits", STRICT), **kw)


def test_a_decision_inside_every_strategy_limit_is_accepted() -> None:
    report = strict(asset("BTCUSDT"), asset("ETHUSDT", "sell", **ETH_SHORT))
    assert [(v.status, v.reasons) for v in report.assets] == [(Status.ACCEPTED, []), (Status.ACCEPTED, [])]
    assert report.notes == []


@pytest.mark.parametrize(
    ("sl", "tp", "expected"),
    [
        (99_500, 101_000, "stop distance 500 is 0.50 ATR (ATR14 1000), below the minimum 1 ATR"),
        (95_000, 110_000, "stop distance 5000 is 5.00 ATR (ATR14 1000), above the maximum 4 ATR"),
    ],
)
def test_a_stop_outside_the_atr_band_is_rejected(sl: float, tp: float, expected: str) -> None:
    v = verdict(strict(asset(sl_price=sl, tp_price=tp)), "BTCUSDT")
    assert v.status is Status.REJECTED and v.reasons == [expected]


def test_the_atr_band_is_measured_from_a_limit_entry() -> None:
    # From the mark the stop is 3000 away (3 ATR); from the limit entry 98000 it is 1000 (1 ATR): both inside.
    v = verdict(strict(asset(entry_price=98_000, sl_price=97_000, tp_price=101_000)), "BTCUSDT")
    assert v.status is Status.ACCEPTED, v.reasons


def test_an_unknown_atr_rejects_an_opening_whose_stop_cannot_be_checked() -> None:
    v = verdict(strict(asset(), inputs=inputs(atr={})), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert v.reasons == ["ATR14 of BTCUSDT on the decision interval is unknown: the stop distance cannot be checked"]


def test_without_risk_inputs_the_checks_that_need_them_are_skipped_and_named() -> None:
    report = strict(asset(sl_price=99_500, tp_price=101_000), inputs=None)
    assert verdict(report, "BTCUSDT").status is Status.ACCEPTED
    assert report.notes == [
        "not checked (no risk inputs): stop distance in ATR, fee-aware target, cooldown, minimum hold, daily loss limit"
    ]


def test_a_target_that_does_not_pay_for_the_fees_is_rejected() -> None:
    # round trip 2 x 0.05% = 0.1%; 3 x that is 0.3% of 100000 = 300; the target is 250 away.
    v = verdict(strict(asset(tp_price=100_250, sl_price=99_000, leverage=2), inputs=inputs(atr={"BTCUSDT": 500.0})),
                "BTCUSDT")  # fmt: skip
    assert v.status is Status.REJECTED
    assert v.reasons == [
        "reward/risk 0.25 (entry 100000, tp 100250, sl 99000) below the minimum 1.5",
        "target distance 250 (0.250% of entry) below 3 x the round-trip taker fee 0.100%: it must be at least 300 "
        "(0.300%)",
    ]
    ok = verdict(strict(asset(tp_price=101_600, sl_price=99_000), inputs=inputs(atr={"BTCUSDT": 500.0})), "BTCUSDT")
    assert ok.status is Status.ACCEPTED, ok.reasons


def test_max_position_pct_caps_the_notional_by_the_live_equity() -> None:
    limits = Limits(**{**STRICT.__dict__, "max_position_pct": 20})
    v = verdict(strict(asset(allocation_usd=1000, leverage=3), limits=limits), "BTCUSDT")
    assert v.status is Status.AMENDED
    assert v.final is not None and v.final.allocation_usd == pytest.approx(2000 / 3)
    assert v.reasons == [
        "notional 3000 USD above the limit 2000 USD (20% of equity 10000 USD): allocation_usd 1000 -> 666.6667"
    ]


def test_total_exposure_above_the_limit_scales_new_openings_pro_rata() -> None:
    # 5000 USD already open (BTC long); the limit is 150% of 10000 = 15000; adding 3000 (BTC) and opening
    # 8000 (ETH) would make 16000, so the 11000 of new notional is scaled to the 10000 of room.
    limits = Limits(**{**STRICT.__dict__, "max_total_exposure_pct": 150})
    report = strict(
        asset("BTCUSDT", allocation_usd=1000, leverage=3),
        asset("ETHUSDT", "sell", allocation_usd=2000, leverage=4, **ETH_SHORT),
        account=with_position("long"), limits=limits,
    )  # fmt: skip
    btc, eth = verdict(report, "BTCUSDT"), verdict(report, "ETHUSDT")
    assert btc.status is Status.AMENDED and eth.status is Status.AMENDED
    assert btc.final is not None and eth.final is not None
    assert btc.final.allocation_usd == pytest.approx(1000 * 10 / 11)
    assert eth.final.allocation_usd == pytest.approx(2000 * 10 / 11)
    assert eth.reasons == [
        "total exposure 16000 USD above the limit 15000 USD (150% of equity 10000 USD): allocation_usd 2000 -> 1818.182"
    ]
    assert any("new notional scaled by 0.9091" in n for n in report.notes)


def test_no_room_under_the_total_exposure_rejects_new_openings_but_not_closes() -> None:
    big = Position("SOLUSDT", "long", 100, 200, 200, 0, 2, 100)  # 20000 USD: the whole 200%
    account = AccountState(name="t", mode="paper", balance_usd=10_000, available_usd=0, positions=(big,))
    report = strict(
        asset("BTCUSDT"), asset("SOLUSDT", "close_position", allocation_usd=0), account=account,
        symbols=("BTCUSDT", "SOLUSDT"), marks={**MARKS, "SOLUSDT": 200.0},
    )  # fmt: skip
    btc = verdict(report, "BTCUSDT")
    assert btc.status is Status.REJECTED
    assert btc.reasons == [
        "total exposure 20000 USD of open positions is already at the limit 20000 USD (200% of equity 10000 USD)"
    ]
    assert verdict(report, "SOLUSDT").status is Status.ACCEPTED


def test_openings_beyond_max_open_positions_are_rejected_lowest_confidence_first() -> None:
    limits = Limits(**{**STRICT.__dict__, "max_open_positions": 2, "max_total_exposure_pct": None})
    account = with_position("long")  # BTC is open: one slot left
    report = strict(
        asset("BTCUSDT", allocation_usd=100),  # adds to the open long: not a new position
        asset("ETHUSDT", "sell", allocation_usd=100, confidence=0.6, **ETH_SHORT),
        asset("SOLUSDT", allocation_usd=100, confidence=0.9, tp_price=212, sl_price=196),
        account=account, limits=limits, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
        inputs=inputs(atr={**INPUTS.atr, "SOLUSDT": 2.0}),
    )  # fmt: skip
    assert verdict(report, "BTCUSDT").status is Status.ACCEPTED
    assert verdict(report, "SOLUSDT").status is Status.ACCEPTED
    eth = verdict(report, "ETHUSDT")
    assert eth.status is Status.REJECTED and eth.final is None
    assert eth.reasons == [
        "at most 2 open positions: 1 open and 2 new openings; 1 kept by confidence, this one's 0.6 is too low"
    ]


def test_a_new_opening_within_the_cooldown_is_rejected_naming_the_minutes_left() -> None:
    report = strict(
        asset("BTCUSDT"), asset("ETHUSDT", "sell", **ETH_SHORT),
        inputs=inputs(last_close_ms={"BTCUSDT": NOW - 25 * MINUTE, "ETHUSDT": NOW - 60 * MINUTE}),
    )  # fmt: skip
    btc = verdict(report, "BTCUSDT")
    assert btc.status is Status.REJECTED
    assert btc.reasons == [
        "cooldown: the BTCUSDT position closed at 2025-10-09 08:28 UTC; no new opening for 60 min after a close: "
        "35 min remaining"
    ]
    assert verdict(report, "ETHUSDT").status is Status.ACCEPTED  # exactly 60 minutes later: allowed


@pytest.mark.parametrize(
    ("action", "extra", "what"),
    [("close_position", {"allocation_usd": 0}, "closed"), ("adjust_position", {"allocation_usd": 500}, "reduced")],
)
def test_closing_or_reducing_a_young_position_is_rejected(action: str, extra: dict[str, Any], what: str) -> None:
    account = with_position("long")  # margin 5000 / 3 = 1666.67
    young = inputs(opened_at_ms={"BTCUSDT": NOW - 30 * MINUTE})
    v = verdict(strict(asset(action=action, **extra), account=account, inputs=young), "BTCUSDT")
    assert v.status is Status.REJECTED
    assert v.reasons == [
        f"minimum hold: the BTCUSDT position opened 30 min ago and may not be {what} before 120 min: "
        "90 min remaining (its stop-loss and take-profit still act)"
    ]
    old = inputs(opened_at_ms={"BTCUSDT": NOW - 120 * MINUTE})
    assert verdict(strict(asset(action=action, **extra), account=account, inputs=old), "BTCUSDT").executable


def test_stops_and_targets_of_a_young_position_may_still_move() -> None:
    young = inputs(opened_at_ms={"BTCUSDT": NOW - MINUTE})
    v = verdict(
        strict(asset(action="adjust_orders", tp_price=110_000, sl_price=98_000), account=with_position("long"),
               inputs=young),
        "BTCUSDT",
    )  # fmt: skip
    assert v.status is Status.ACCEPTED


def test_the_daily_loss_limit_allows_only_reductions_closes_and_order_moves() -> None:
    # equity 10000 against 10600 at the start of the day: a loss of 600 USD, 5.66%, above the 5% limit.
    losing = inputs(day_start_equity=10_600)
    account = with_position("long")
    reason = (
        "daily loss limit reached: today's loss 600 USD is 5.66% of the start-of-day equity 10600 USD (limit 5%): "
        "no openings or increases until 00:00 UTC"
    )
    opening = verdict(strict(asset("ETHUSDT", "sell", **ETH_SHORT), account=account, inputs=losing), "ETHUSDT")
    assert opening.status is Status.REJECTED and opening.reasons == [reason]
    adding = verdict(strict(asset("BTCUSDT", allocation_usd=100), account=account, inputs=losing), "BTCUSDT")
    assert adding.status is Status.REJECTED and reason in adding.reasons
    bigger = verdict(strict(asset(action="adjust_position", allocation_usd=2000), account=account, inputs=losing),
                     "BTCUSDT")  # fmt: skip
    assert bigger.status is Status.REJECTED and bigger.reasons == [reason]
    for allowed in (
        asset(action="close_position", allocation_usd=0),
        asset(action="adjust_position", allocation_usd=1000),
        asset(action="adjust_orders", tp_price=None, sl_price=99_000),
        asset(action="hold"),
    ):
        assert verdict(strict(allowed, account=account, inputs=losing), "BTCUSDT").executable, allowed
    fine = inputs(day_start_equity=10_400)  # 3.85%: under the limit
    assert verdict(strict(asset("ETHUSDT", "sell", **ETH_SHORT), inputs=fine), "ETHUSDT").executable


def test_one_asset_vetoed_by_a_strategy_limit_never_voids_the_others() -> None:
    report = strict(
        asset("BTCUSDT"), asset("ETHUSDT", "sell", **ETH_SHORT),
        inputs=inputs(last_close_ms={"BTCUSDT": NOW - MINUTE}),
    )  # fmt: skip
    assert verdict(report, "BTCUSDT").status is Status.REJECTED
    assert verdict(report, "ETHUSDT").status is Status.ACCEPTED
    assert not report.all_rejected


# DCA: 100 USD of margin per buy, one buy per 24 intervals (a day on 1h), earlier on a 5% dip, 2000 USD cap.
DCA = Limits(
    max_leverage=2, max_position_usd=10_000, min_reward_risk=1.0, min_confidence=0.5, maintenance_margin_rate=0.01,
    dca=DcaLimits(allocation_usd=100, every_intervals=24, average_down_pct=5, max_position_usd=2000),
)  # fmt: skip


def dca_position(entry: float, mark: float, size: float = 0.01) -> AccountState:
    p = Position("BTCUSDT", "long", size, entry, mark, (mark - entry) * size, 2, entry * 0.5)
    return AccountState(name="t", mode="paper", balance_usd=10_000, available_usd=9_000, positions=(p,))


def dca(*assets: dict[str, Any], **kw: Any) -> ValidationReport:
    kw.setdefault("inputs", INPUTS)
    return run(*assets, limits=DCA, **kw)


def test_dca_a_buy_above_the_fixed_allocation_is_cut_to_it() -> None:
    v = verdict(dca(asset(allocation_usd=500, leverage=2)), "BTCUSDT")
    assert v.status is Status.AMENDED and v.final is not None and v.final.allocation_usd == 100
    assert v.reasons == ["allocation_usd 500 above the DCA allocation 100 USD per buy: set to 100"]


def test_dca_a_buy_before_the_schedule_is_rejected_unless_it_averages_down() -> None:
    recent = inputs(last_entry_ms={"BTCUSDT": NOW - 600 * MINUTE})
    # mark 100000, average entry 103000: only 2.9% below, the rule wants 5% (97850 or less)
    v = verdict(dca(asset(allocation_usd=100, leverage=2), account=dca_position(103_000, 100_000), inputs=recent),
                "BTCUSDT")  # fmt: skip
    assert v.status is Status.REJECTED
    assert v.reasons == [
        "DCA schedule: the last entry on BTCUSDT was 600 min ago, the next scheduled one is in 840 min "
        "(one every 24 intervals of 60 min); an earlier one needs the mark at most 97850 (5% below the average "
        "entry 103000), and it is 100000"
    ]
    dip = verdict(dca(asset(allocation_usd=100, leverage=2), account=dca_position(106_000, 100_000), inputs=recent),
                  "BTCUSDT")  # fmt: skip
    assert dip.status is Status.ACCEPTED, dip.reasons
    due = inputs(last_entry_ms={"BTCUSDT": NOW - 24 * 60 * MINUTE})
    on_time = verdict(dca(asset(allocation_usd=100, leverage=2), account=dca_position(103_000, 100_000), inputs=due),
                      "BTCUSDT")  # fmt: skip
    assert on_time.status is Status.ACCEPTED, on_time.reasons


def test_dca_the_total_position_is_capped() -> None:
    # 0.019 BTC at 100000 = 1900 USD: a 200 USD buy would make 2100, above the 2000 cap.
    v = verdict(dca(asset(allocation_usd=100, leverage=2), account=dca_position(100_000, 100_000, 0.019)), "BTCUSDT")
    assert v.status is Status.AMENDED and v.final is not None and v.final.allocation_usd == pytest.approx(50)
    assert v.reasons == [
        "notional 2100 USD above the limit 2000 USD (the DCA cap on the whole position): allocation_usd 100 -> 50"
    ]
    full = verdict(dca(asset(allocation_usd=100, leverage=2), account=dca_position(100_000, 100_000, 0.02)), "BTCUSDT")
    assert full.status is Status.REJECTED
    assert full.reasons == [
        "the position's notional 2000 USD is already at the limit 2000 USD (the DCA cap on the whole position)"
    ]


def test_dca_long_only_refuses_shorts_and_adjust_position_may_not_enlarge() -> None:
    short = verdict(dca(asset("ETHUSDT", "sell", allocation_usd=100, leverage=2, **ETH_SHORT)), "ETHUSDT")
    assert short.status is Status.REJECTED
    assert short.reasons == ["the strategy is long only (DCA): sell may not open or add to a short"]
    bigger = verdict(dca(asset(action="adjust_position", allocation_usd=900, leverage=2),
                         account=dca_position(100_000, 100_000)), "BTCUSDT")  # fmt: skip
    assert bigger.status is Status.REJECTED
    assert bigger.reasons == [
        "adjust_position may not enlarge a DCA position (margin 500 -> 900 USD): add with a scheduled buy"
    ]


def test_limits_combine_takes_the_stricter_of_settings_and_strategy() -> None:
    from llmtrader.config.strategies import load_strategy

    conservative = load_strategy("conservative")
    limits = Limits.combine(5, 10_000, conservative, equity_usd=20_000)
    assert limits.max_leverage == 2  # the strategy's 2 beats the settings' 5
    assert limits.max_position_usd == pytest.approx(4_000)  # 20% of 20000 beats 10000
    assert Limits.combine(5, 3_000, conservative, equity_usd=20_000).max_position_usd == 3_000
    assert Limits.combine(1, 10_000, conservative).max_position_usd == 10_000  # no equity: the settings' cap
    assert Limits.combine(1, 10_000, conservative).max_leverage == 1
    dca_limits = Limits.combine(5, 10_000, load_strategy("dca"))
    assert dca_limits.dca == DcaLimits(allocation_usd=100, every_intervals=7, average_down_pct=5, max_position_usd=2000)
