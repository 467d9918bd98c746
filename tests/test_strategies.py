"""Strategies: the presets load, bad files are refused with file, key and reason, and every preset's
limits are enforced by the validator (pure: values in, verdicts out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmtrader.config.strategies import available_strategies, load_strategy, load_strategy_file
from llmtrader.core.account import AccountState, Position, paper_account_state
from llmtrader.core.decision import salvage_decision
from llmtrader.core.limits import Limits
from llmtrader.core.market import NAMES
from llmtrader.core.risk import RiskInputs, Status, ValidationReport, validate_decision
from llmtrader.core.strategy import PLACEHOLDERS, Strategy
from llmtrader.errors import StrategyError

PRESETS = ("default", "conservative", "aggressive", "scalping", "swing", "dca")
NOW = 1_760_000_000_000
MINUTE = 60_000
MARK = 100_000.0
ATR = 1_000.0
TAKER_FEE = 0.00035
EQUITY = 10_000.0


# --- loading ---


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_describes_its_style(name: str) -> None:
    strategy = load_strategy(name)
    assert strategy.name == name and strategy.description
    assert strategy.interval in strategy.timeframes
    template = strategy.prompt.system + strategy.prompt.user
    for placeholder in ("limits", "account", "market", "recent_trades", "performance"):
        assert "{" + placeholder + "}" in template, placeholder
    assert (strategy.dca is not None) == (name == "dca")


def test_the_presets_are_the_built_in_strategies() -> None:
    assert set(PRESETS) <= set(available_strategies(None))


def test_the_presets_differ_where_their_styles_say() -> None:
    s = {name: load_strategy(name) for name in PRESETS}
    assert s["conservative"].limits.max_leverage <= 2 and s["conservative"].limits.min_confidence >= 0.7
    assert s["conservative"].limits.min_reward_risk >= 2 and s["conservative"].limits.min_stop_atr >= 2
    assert s["aggressive"].limits.max_leverage == 10
    assert s["aggressive"].limits.min_confidence < s["default"].limits.min_confidence
    assert s["aggressive"].limits.max_open_positions > s["default"].limits.max_open_positions
    assert s["scalping"].timeframes == ["1m", "5m", "15m"] and s["scalping"].interval == "5m"
    assert s["scalping"].limits.max_stop_atr <= 1.5 and s["scalping"].limits.min_target_fee_multiple >= 3
    assert s["swing"].timeframes == ["4h", "1d"] and s["swing"].interval == "4h"
    assert s["swing"].limits.max_open_positions <= 2 and s["swing"].limits.min_hold_minutes >= 240
    assert s["dca"].dca is not None and s["dca"].dca.long_only
    assert s["dca"].timeframes == ["1h", "4h", "1d"] and s["dca"].interval in ("4h", "1d")


# --- refusals: the file, the key and the reason ---

GOOD = """
name = "mine"
description = "test"
interval = "1h"
timeframes = ["1h", "4h"]

[limits]
max_leverage = 3

[context]
indicators = ["ema20", "atr14"]

[prompt]
system = "Rules: {limits}"
user = "{market} {recent_trades} {performance}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(StrategyError) as info:
        load_strategy_file(path)
    message = str(info.value)
    assert message.startswith(f"strategy file {path}: ")
    return message.removeprefix(f"strategy file {path}: ")


def test_a_good_custom_file_loads(tmp_path: Path) -> None:
    strategy = load_strategy_file(write(tmp_path, GOOD))
    assert strategy.context.indicators == ["ema20", "atr14"]
    assert strategy.limits.max_leverage == 3
    assert strategy.limits.min_stop_atr == 0.5 and strategy.limits.max_stop_atr == 6  # the documented defaults


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max_leverage = 3", "max_leverage = 3\nmax_levrage = 4", "limits.max_levrage: unknown key"),
        ("max_leverage = 3", "max_leverage = 0", "limits.max_leverage: Input should be greater than or equal to 1"),
        ("max_leverage = 3", "max_position_pct = -5", "limits.max_position_pct: Input should be greater than 0"),
        ("max_leverage = 3", "min_stop_atr = 3\nmax_stop_atr = 2",
         "limits: max_stop_atr 2 must be above min_stop_atr 3"),
        ("max_leverage = 3", "cooldown_minutes = \"soon\"", "limits.cooldown_minutes: Input should be a valid number"),
        ("{performance}", "{pnl}", "prompt.user: placeholder {pnl} is not provided by the context; available: "),
        ('"ema20", "atr14"', '"ema20", "vwap"', "context.indicators: unknown indicator 'vwap'; available: ema20, "),
        ("[context]", "[context]\nrecent_trades = -1", "context.recent_trades: Input should be greater than or equal"),
        ('interval = "1h"', 'interval = "5m"', "interval: 5m must be one of the timeframes (1h, 4h)"),
        ('interval = "1h"', 'interval = "2m"', "interval: Input should be '1m', '3m'"),
        ("[context]", "[dca]\nallocation_usd = 500\nevery_intervals = 1\naverage_down_pct = 5\n"
         "max_position_usd = 100\n\n[context]", "dca: max_position_usd 100 is below one buy's allocation_usd 500"),
        ("[context]", "[dca]\nallocation_usd = 50\n\n[context]", "dca.every_intervals: Field required"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_naming_the_key_and_the_reason(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert refusal(tmp_path, GOOD.replace(old, new, 1)).startswith(expected)


def test_every_placeholder_is_accepted_and_provided(tmp_path: Path) -> None:
    every = " ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
    strategy = load_strategy_file(write(tmp_path, GOOD.replace('"{market} {recent_trades} {performance}"',
                                                                f'"{every}"')))  # fmt: skip
    assert strategy.prompt.user == every


def test_the_indicator_list_is_the_real_one(tmp_path: Path) -> None:
    names = ", ".join(f'"{n}"' for n in NAMES)
    strategy = load_strategy_file(write(tmp_path, GOOD.replace('"ema20", "atr14"', names)))
    assert tuple(strategy.context.indicators or ()) == NAMES


# --- every preset's limits, enforced by the validator ---


def limits_of(name: str) -> Limits:
    # Settings generous enough that the strategy's own limits are the binding ones.
    return Limits.combine(25, 1_000_000, load_strategy(name), equity_usd=EQUITY)


def inputs(**kw: Any) -> RiskInputs:
    base: dict[str, Any] = {
        "now_ms": NOW, "interval_ms": 3_600_000, "taker_fee": TAKER_FEE, "atr": {"BTCUSDT": ATR},
        "day_start_equity": EQUITY,
    }  # fmt: skip
    base.update(kw)
    return RiskInputs(**base)


def decision(action: str = "buy", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "symbol": "BTCUSDT", "action": action, "rationale": "t", "allocation_usd": 100, "leverage": 2,
        "entry_price": None, "tp_price": None, "sl_price": None, "confidence": 0.75, "risk_level": "medium",
    }  # fmt: skip
    base.update(kw)
    return base


def good_opening(limits: Limits, side: str = "buy", **kw: Any) -> dict[str, Any]:
    """An opening inside every limit of ``limits``: a stop in the middle of its ATR band, a target well above the
    minimum reward/risk, a confidence above the floor."""
    stop = (limits.min_stop_atr + (limits.max_stop_atr or limits.min_stop_atr + 2)) / 2 * ATR
    target = max(limits.min_reward_risk, 1.0) * 1.2 * stop
    sign = 1 if side == "buy" else -1
    base = decision(
        side,
        leverage=min(2, limits.max_leverage),
        sl_price=MARK - sign * stop,
        tp_price=MARK + sign * target,
        confidence=min(1.0, limits.min_confidence + 0.05),
    )
    base.update(kw)
    return base


def check(
    limits: Limits,
    *assets: dict[str, Any],
    account: AccountState | None = None,
    risk: RiskInputs | None = None,
    symbols: tuple[str, ...] = ("BTCUSDT",),
) -> ValidationReport:
    obj = {"assets": list(assets), "portfolio_rationale": "r", "portfolio_risk_level": "medium"}
    return validate_decision(
        salvage_decision(obj),
        symbols=symbols,
        marks=dict.fromkeys(symbols, MARK),
        account=account or paper_account_state("t", EQUITY),
        limits=limits,
        inputs=risk or inputs(),
    )


def btc(report: ValidationReport) -> Any:
    return next(v for v in report.assets if v.symbol == "BTCUSDT")


def holding(*positions: Position) -> AccountState:
    return AccountState(name="t", mode="paper", balance_usd=EQUITY, available_usd=EQUITY, positions=positions)


def small(symbol: str, notional: float = 10.0, side: str = "long", entry: float = 100.0) -> Position:
    return Position(symbol, side, notional / entry, entry, entry, 0.0, 2, entry / 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", PRESETS)
def test_a_decision_inside_the_preset_limits_is_accepted(name: str) -> None:
    limits = limits_of(name)
    v = btc(check(limits, good_opening(limits)))
    assert (v.status, v.reasons) == (Status.ACCEPTED, [])


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_clamps_leverage_and_caps_the_position(name: str) -> None:
    limits = limits_of(name)
    strategy = load_strategy(name)
    v = btc(check(limits, good_opening(limits, leverage=limits.max_leverage + 1)))
    assert v.status is Status.AMENDED and v.final is not None and v.final.leverage == strategy.limits.max_leverage
    assert f"leverage {limits.max_leverage + 1} above the limit {strategy.limits.max_leverage}" in v.reasons[0]
    # a margin whose notional is twice the position cap (max_position_pct of equity, or the DCA cap)
    cap = EQUITY * strategy.limits.max_position_pct / 100
    if strategy.dca is not None:
        cap = min(cap, strategy.dca.max_position_usd)
    leverage = min(2, limits.max_leverage)
    allocation = 2 * cap / leverage
    if strategy.dca is not None:
        allocation = strategy.dca.allocation_usd  # the DCA allocation rule cuts first; fill up to the cap instead
        account = holding(small("BTCUSDT", notional=cap - 50, entry=MARK))
    else:
        account = None
    v = btc(check(limits, good_opening(limits, allocation_usd=allocation), account=account))
    assert v.status is Status.AMENDED, v.reasons
    assert v.final is not None
    existing = cap - 50 if strategy.dca is not None else 0
    assert v.final.allocation_usd * v.final.leverage + existing == pytest.approx(cap)


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_enforces_its_confidence_reward_risk_and_atr_band(name: str) -> None:
    limits = limits_of(name)
    low = btc(check(limits, good_opening(limits, confidence=limits.min_confidence - 0.01)))
    assert low.status is Status.REJECTED
    assert low.reasons == [f"confidence {limits.min_confidence - 0.01:g} below the floor {limits.min_confidence:g}"]
    assert limits.max_stop_atr is not None
    for multiple, words in ((limits.min_stop_atr * 0.9, "below the minimum"), (limits.max_stop_atr * 1.1, "above")):
        stop = multiple * ATR
        tight = btc(check(limits, good_opening(limits, sl_price=MARK - stop, tp_price=MARK + 3 * stop)))
        assert tight.status is Status.REJECTED
        assert any(f"is {multiple:.2f} ATR" in r and words in r for r in tight.reasons), tight.reasons
    good = good_opening(limits)
    stop = MARK - good["sl_price"]
    poor = btc(check(limits, good_opening(limits, tp_price=MARK + stop * limits.min_reward_risk * 0.9)))
    assert poor.status is Status.REJECTED
    assert any("reward/risk" in r and f"below the minimum {limits.min_reward_risk:g}" in r for r in poor.reasons)


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_enforces_its_fee_aware_target(name: str) -> None:
    limits = limits_of(name)
    k = limits.min_target_fee_multiple
    need = k * 2 * TAKER_FEE * MARK
    # a small ATR so that a stop inside the band is tiny, and a target just short of the fee rule
    atr = need / 10
    stop = (limits.min_stop_atr + (limits.max_stop_atr or 0)) / 2 * atr
    report = check(
        limits, good_opening(limits, sl_price=MARK - stop, tp_price=MARK + need * 0.95),
        risk=inputs(atr={"BTCUSDT": atr}),
    )  # fmt: skip
    v = btc(report)
    assert v.status is Status.REJECTED
    assert any(f"below {k:g} x the round-trip taker fee 0.070%" in r for r in v.reasons), v.reasons


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_limits_its_open_positions_and_exposure(name: str) -> None:
    limits = limits_of(name)
    assert limits.max_open_positions is not None and limits.max_total_exposure_pct is not None
    full = holding(*(small(f"P{i}USDT") for i in range(limits.max_open_positions)))
    v = btc(check(limits, good_opening(limits), account=full))
    assert v.status is Status.REJECTED
    assert v.reasons[0].startswith(
        f"at most {limits.max_open_positions} open positions: {limits.max_open_positions} open and 1 new openings"
    )
    exposed = holding(small("P0USDT", notional=EQUITY * limits.max_total_exposure_pct / 100))
    v = btc(check(limits, good_opening(limits), account=exposed))
    assert v.status is Status.REJECTED
    assert f"is already at the limit {EQUITY * limits.max_total_exposure_pct / 100:g} USD" in v.reasons[0]


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_enforces_its_cooldown_minimum_hold_and_daily_loss(name: str) -> None:
    limits = limits_of(name)
    cooldown, hold = limits.cooldown_minutes, limits.min_hold_minutes
    just_closed = inputs(last_close_ms={"BTCUSDT": NOW - int(max(cooldown - 1, 0) * MINUTE)})
    v = btc(check(limits, good_opening(limits), risk=just_closed))
    if cooldown > 0:
        assert v.status is Status.REJECTED
        assert v.reasons[0].startswith("cooldown: ") and v.reasons[0].endswith(": 1 min remaining")
    else:
        assert v.status is Status.ACCEPTED, v.reasons
    young = inputs(opened_at_ms={"BTCUSDT": NOW - int(max(hold - 1, 0) * MINUTE)})
    account = holding(small("BTCUSDT", notional=100, entry=MARK))
    v = btc(check(limits, decision("close_position", allocation_usd=0), account=account, risk=young))
    if hold > 0:
        assert v.status is Status.REJECTED
        assert v.reasons[0].startswith("minimum hold: ") and "1 min remaining" in v.reasons[0]
    else:
        assert v.status is Status.ACCEPTED, v.reasons
    assert limits.daily_loss_limit_pct is not None
    start = EQUITY / (1 - limits.daily_loss_limit_pct / 100)  # today's loss is exactly the limit
    v = btc(check(limits, good_opening(limits), risk=inputs(day_start_equity=start)))
    assert v.status is Status.REJECTED
    assert (
        v.reasons[0].startswith("daily loss limit reached")
        and f"(limit {limits.daily_loss_limit_pct:g}%)" in (v.reasons[0])
    )
    v = btc(check(limits, decision("close_position", allocation_usd=0), account=account,
                  risk=inputs(day_start_equity=start)))  # fmt: skip
    assert v.status is Status.ACCEPTED


def test_the_dca_preset_accumulates_on_its_schedule() -> None:
    limits = limits_of("dca")
    strategy = load_strategy("dca")
    assert strategy.dca is not None and limits.dca is not None
    day = 86_400_000
    risk = inputs(interval_ms=day, last_entry_ms={"BTCUSDT": NOW - 3 * day})
    entry = MARK * 1.02  # the mark is only 2% under the average entry: no averaging down yet
    account = holding(Position("BTCUSDT", "long", 0.004, entry, MARK, -8.0, 2, entry / 2))
    early = btc(check(limits, good_opening(limits), account=account, risk=risk))
    assert early.status is Status.REJECTED
    assert early.reasons[0].startswith("DCA schedule: the last entry on BTCUSDT was 4320 min ago, the next scheduled "
                                       "one is in 5760 min (one every 7 intervals of 1440 min)")  # fmt: skip
    dip = holding(Position("BTCUSDT", "long", 0.004, MARK * 1.06, MARK, -24.0, 2, MARK / 2))
    assert btc(check(limits, good_opening(limits), account=dip, risk=risk)).status is Status.ACCEPTED
    due = inputs(interval_ms=day, last_entry_ms={"BTCUSDT": NOW - 7 * day})
    big = btc(check(limits, good_opening(limits, allocation_usd=1_000), account=account, risk=due))
    assert big.status is Status.AMENDED and big.final is not None
    assert big.final.allocation_usd == strategy.dca.allocation_usd
    short = btc(check(limits, good_opening(limits, "sell")))
    assert short.status is Status.REJECTED
    assert short.reasons == ["the strategy is long only (DCA): sell may not open or add to a short"]


# --- one decision, six presets: who accepts and who vetoes ---

A, M, R = Status.ACCEPTED, Status.AMENDED, Status.REJECTED
LONG_OPEN = holding(Position("BTCUSDT", "long", 0.002, MARK, MARK, 0.0, 2, MARK / 2))

# Each row: a decision (mark 100000, ATR 1000 unless said otherwise, no position, equity 10000, taker fee
# 0.035%), and for each preset the expected status and, for a veto, a phrase of the reason naming the limit.
TABLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, tuple[Status, str | None]]]] = [
    (
        "a 5x long with a 2.5-ATR stop at confidence 0.6",
        decision(leverage=5, allocation_usd=300, sl_price=97_500, tp_price=106_000, confidence=0.6),
        {},
        {
            "default": (A, None),
            "conservative": (R, "confidence 0.6 below the floor 0.7"),
            "aggressive": (A, None),
            "scalping": (R, "above the maximum 1.5 ATR"),
            "swing": (M, "leverage 5 above the limit 3: set to 3"),
            "dca": (M, "allocation_usd 300 above the DCA allocation 100 USD per buy: set to 100"),
        },
    ),
    (
        "a 0.8-ATR stop with reward/risk 1.5",
        decision(sl_price=99_200, tp_price=101_200),
        {},
        {
            "default": (A, None),
            "conservative": (R, "is 0.80 ATR (ATR14 1000), below the minimum 2 ATR"),
            "aggressive": (A, None),
            "scalping": (A, None),
            "swing": (R, "is 0.80 ATR (ATR14 1000), below the minimum 2 ATR"),
            "dca": (R, "is 0.80 ATR (ATR14 1000), below the minimum 1 ATR"),
        },
    ),
    (
        "a short with a 2.5-ATR stop",
        decision("sell", sl_price=102_500, tp_price=95_000),
        {},
        {
            "default": (A, None),
            "conservative": (A, None),
            "aggressive": (A, None),
            "scalping": (R, "is 2.50 ATR (ATR14 1000), above the maximum 1.5 ATR"),
            "swing": (A, None),
            "dca": (R, "the strategy is long only (DCA)"),
        },
    ),
    (
        "a tight target, 0.18% away, with a 0.8-ATR stop (ATR 150)",
        decision(sl_price=99_880, tp_price=100_180, confidence=0.7),
        {"atr": {"BTCUSDT": 150.0}},
        {
            "default": (A, None),
            "conservative": (R, "below the minimum 2 ATR"),
            "aggressive": (A, None),
            "scalping": (R, "target distance 180 (0.180% of entry) below 3 x the round-trip taker fee 0.070%"),
            "swing": (R, "below the minimum 2 ATR"),
            "dca": (R, "below the minimum 1 ATR"),
        },
    ),
    (
        "closing a long opened an hour ago",
        decision("close_position", allocation_usd=0),
        {"opened_at_ms": {"BTCUSDT": NOW - 60 * MINUTE}, "account": LONG_OPEN},
        {
            "default": (A, None),
            "conservative": (R, "may not be closed before 120 min: 60 min remaining"),
            "aggressive": (A, None),
            "scalping": (A, None),
            "swing": (R, "may not be closed before 480 min: 420 min remaining"),
            "dca": (R, "may not be closed before 4320 min: 4260 min remaining"),
        },
    ),
    (
        "re-entering 30 minutes after a close",
        decision(sl_price=98_000, tp_price=105_000),
        {"last_close_ms": {"BTCUSDT": NOW - 30 * MINUTE}},
        {
            "default": (A, None),
            "conservative": (R, "no new opening for 240 min after a close: 210 min remaining"),
            "aggressive": (A, None),
            "scalping": (R, "above the maximum 1.5 ATR"),
            "swing": (R, "no new opening for 720 min after a close: 690 min remaining"),
            "dca": (R, "no new opening for 1440 min after a close: 1410 min remaining"),
        },
    ),
    (
        "a new long after a 4% loss today",
        decision(sl_price=98_000, tp_price=105_000),
        {"day_start_equity": 10_417.0},
        {
            "default": (A, None),
            "conservative": (R, "today's loss 417 USD is 4.00% of the start-of-day equity 10417 USD (limit 3%)"),
            "aggressive": (A, None),
            "scalping": (R, "(limit 4%)"),
            "swing": (A, None),
            "dca": (A, None),
        },
    ),
]


@pytest.mark.parametrize(("label", "asked", "facts", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_which_presets_accept_and_which_veto_a_decision(
    label: str, asked: dict[str, Any], facts: dict[str, Any], expected: dict[str, tuple[Status, str | None]]
) -> None:
    facts = dict(facts)
    account = facts.pop("account", None)
    assert set(expected) == set(PRESETS)
    got = {}
    for name in PRESETS:
        v = btc(check(limits_of(name), asked, account=account, risk=inputs(**facts)))
        got[name] = v.status
        status, phrase = expected[name]
        if phrase is not None:
            assert any(phrase in r for r in v.reasons), (label, name, v.reasons)
        if status is Status.ACCEPTED:
            assert v.reasons == [], (label, name, v.reasons)
    assert got == {name: status for name, (status, _) in expected.items()}, label


def test_a_strategy_model_is_a_plain_value() -> None:
    strategy = load_strategy("swing")
    assert Strategy.model_validate(strategy.model_dump()) == strategy
