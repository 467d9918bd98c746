"""The decision schema sent to the model, and the tolerant parsing of its answers."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmtrader.core.decision import (
    Action,
    DecisionParseError,
    decision_json_schema,
    extract_json_object,
    parse_decision,
    salvage_decision,
)

ACTIONS = {"buy", "sell", "hold", "adjust_position", "close_position", "adjust_orders"}


def asset(symbol: str = "BTCUSDT", **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "symbol": symbol,
        "action": "buy",
        "rationale": "Trend up, RSI not overbought.",
        "allocation_usd": 500.0,
        "leverage": 2,
        "entry_price": None,
        "tp_price": 110000.0,
        "sl_price": 95000.0,
        "confidence": 0.7,
        "risk_level": "medium",
    }
    entry.update(changes)
    return entry


def decision(*assets: dict[str, Any]) -> dict[str, Any]:
    return {
        "assets": list(assets) or [asset()],
        "portfolio_rationale": "Mostly long.",
        "total_allocation_usd": 500.0,
        "portfolio_risk_level": "medium",
    }


VALID = decision(asset("BTCUSDT"), asset("ETHUSDT", action="hold", allocation_usd=0, tp_price=None, sl_price=None))


# The schema ----------------------------------------------------------------------------------------


def objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every object schema anywhere in the tree."""
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield node
        for value in node.values():
            yield from objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from objects(value)


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    assert ref.startswith("#/$defs/"), ref
    return schema["$defs"][ref.removeprefix("#/$defs/")]


def test_schema_is_strict_everywhere() -> None:
    schema = decision_json_schema()
    found = list(objects(schema))
    assert len(found) == 2  # the portfolio and one asset entry
    for obj in found:
        assert obj["type"] == "object"
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
        assert obj["properties"]
    assert set(schema["properties"]) == {
        "assets",
        "portfolio_rationale",
        "total_allocation_usd",
        "portfolio_risk_level",
    }
    json.dumps(schema)  # plain JSON, ready for response_format


def test_schema_asset_entry_fields_and_nullable_optionals() -> None:
    schema = decision_json_schema()
    entry = resolve(schema, schema["properties"]["assets"]["items"])
    assert set(entry["properties"]) == set(asset())
    assert set(entry["required"]) == set(asset())
    for name in ("entry_price", "tp_price", "sl_price"):
        types = {option.get("type") for option in entry["properties"][name]["anyOf"]}
        assert types == {"number", "null"}, name
    for name in ("symbol", "rationale", "allocation_usd", "leverage", "confidence"):
        assert "anyOf" not in entry["properties"][name], f"{name} must not be nullable"
    assert entry["properties"]["confidence"]["minimum"] == 0
    assert entry["properties"]["confidence"]["maximum"] == 1


def test_schema_lists_the_six_actions() -> None:
    schema = decision_json_schema()
    entry = resolve(schema, schema["properties"]["assets"]["items"])
    action = resolve(schema, entry["properties"]["action"])
    assert set(action["enum"]) == ACTIONS
    assert len(action["enum"]) == 6
    assert {a.value for a in Action} == ACTIONS


def test_schema_has_no_titles_or_defaults_and_is_a_fresh_copy() -> None:
    schema = decision_json_schema()
    text = json.dumps(schema)
    assert '"title"' not in text and '"default"' not in text
    pristine = copy.deepcopy(schema)
    schema["properties"].clear()
    schema["$defs"]["AssetDecision"]["required"].pop()
    assert decision_json_schema() == pristine


# extract_json_object -------------------------------------------------------------------------------

OBJ = {"a": 1, "b": [1, 2, {"c": "x"}], "d": "braces { } in a string"}
TEXT = json.dumps(OBJ, indent=2)


@pytest.mark.parametrize(
    "answer",
    [
        TEXT,
        f"```json\n{TEXT}\n```",
        f"```JSON\n{TEXT}\n```",
        f"```\n{TEXT}\n```",
        f"Here is my decision:\n```json\n{TEXT}\n```\nGood luck with the trades.",
        f"Here is my decision: {TEXT} -- that is all.",
        f"Thinking about {{the market}} first.\n{TEXT}\nDone.",
        f"  \n\t {TEXT} \n\n ",
        f"\n\n```json\n{TEXT}\n```\n\n",
    ],
    ids=["bare", "fenced-json", "fenced-JSON", "fenced-plain", "fence-with-prose", "prose", "prose-braces", "ws",
         "ws-fence"],
)  # fmt: skip
def test_extract_json_object_finds_the_object(answer: str) -> None:
    assert extract_json_object(answer) == OBJ


def test_extract_prefers_the_fenced_block_over_prose() -> None:
    answer = f'I first thought of {{"a": 0}} but then:\n```json\n{TEXT}\n```'
    assert extract_json_object(answer) == OBJ


@pytest.mark.parametrize("answer", ["", "   ", "\n\t\n"])
def test_extract_refuses_empty_text(answer: str) -> None:
    with pytest.raises(DecisionParseError) as info:
        extract_json_object(answer)
    assert info.value.errors == ["(root): the answer is empty"]


@pytest.mark.parametrize(
    "answer",
    [
        "I would hold everything this hour.",
        "```json\nnot json at all\n```",
        "[1, 2, 3]",
        '"just a string"',
        "{not: valid, json}",
    ],
)
def test_extract_refuses_text_without_a_json_object(answer: str) -> None:
    with pytest.raises(DecisionParseError) as info:
        extract_json_object(answer)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("(root): ")


@pytest.mark.parametrize(
    "answer",
    [
        '{"assets": [',
        '{"portfolio_rationale": "Mostly lo',
        '```json\n{"assets": [], "portfolio_rationale": "x",\n```',
    ],
)
def test_extract_refuses_truncated_json(answer: str) -> None:
    with pytest.raises(DecisionParseError) as info:
        extract_json_object(answer)
    assert info.value.errors[0].startswith("(root): ")
    assert "invalid JSON" in info.value.errors[0]


def test_extract_refuses_truncated_json_containing_a_complete_inner_object() -> None:
    # What an answer cut off by max_tokens looks like: the first asset entry is complete, the rest is not.
    full = json.dumps(VALID)
    truncated = full[: full.index('"ETHUSDT"')]
    with pytest.raises(DecisionParseError):
        extract_json_object(truncated)


# parse_decision ------------------------------------------------------------------------------------


def test_parse_decision_accepts_a_valid_answer() -> None:
    parsed, raw = parse_decision("```json\n" + json.dumps(VALID) + "\n```")
    assert raw == VALID
    assert [a.symbol for a in parsed.assets] == ["BTCUSDT", "ETHUSDT"]
    assert parsed.assets[0].action is Action.BUY
    assert parsed.assets[0].entry_price is None
    assert parsed.assets[1].action is Action.HOLD
    assert parsed.total_allocation_usd == 500.0


def parse_errors(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(DecisionParseError) as info:
        parse_decision(json.dumps(obj))
    assert str(info.value) == "; ".join(info.value.errors)
    return info.value.errors


def test_parse_decision_names_an_invalid_action() -> None:
    errors = parse_errors(decision(asset(), asset("ETHUSDT", action="yolo")))
    assert len(errors) == 1
    assert errors[0].startswith("assets.1.action: ")
    assert '"yolo"' in errors[0]


def test_parse_decision_names_a_confidence_above_one() -> None:
    errors = parse_errors(decision(asset(confidence=1.5)))
    assert len(errors) == 1
    assert errors[0].startswith("assets.0.confidence: ")
    assert "1.5" in errors[0]


def test_parse_decision_names_a_missing_field() -> None:
    entry = asset()
    del entry["rationale"]
    errors = parse_errors(decision(entry))
    assert errors == [error for error in errors if error.startswith("assets.0.rationale: ")]
    assert len(errors) == 1
    assert "required" in errors[0].lower()

    top = dict(VALID)
    del top["portfolio_risk_level"]
    assert [e.split(":")[0] for e in parse_errors(top)] == ["portfolio_risk_level"]


def test_parse_decision_names_an_extra_field() -> None:
    errors = parse_errors(decision(asset(notes="extra")))
    assert len(errors) == 1
    assert errors[0].startswith("assets.0.notes: ")
    assert "extra" in errors[0].lower()

    top = dict(VALID, comment="extra")
    assert [e.split(":")[0] for e in parse_errors(top)] == ["comment"]


def test_parse_decision_reports_every_problem() -> None:
    entry = asset(confidence=1.5, leverage=0)
    del entry["risk_level"]
    errors = parse_errors(decision(asset(), entry))
    assert sorted(e.split(":")[0] for e in errors) == [
        "assets.1.confidence",
        "assets.1.leverage",
        "assets.1.risk_level",
    ]


def test_parse_decision_raises_for_no_json() -> None:
    with pytest.raises(DecisionParseError):
        parse_decision("I cannot decide.")


# salvage_decision ----------------------------------------------------------------------------------


def test_salvage_keeps_valid_assets_and_reports_invalid_ones() -> None:
    missing = asset("solusdt")
    del missing["confidence"]
    obj = decision(
        asset("BTCUSDT"),
        asset("ethusdt", action="moon"),
        missing,
        asset("XRPUSDT", action="sell", confidence=0.4),
        "not an object",
    )
    salvaged = salvage_decision(obj)
    assert [a.symbol for a in salvaged.assets] == ["BTCUSDT", "XRPUSDT"]
    assert salvaged.assets[1].action is Action.SELL
    assert [(bad.index, bad.symbol) for bad in salvaged.invalid] == [(1, "ETHUSDT"), (2, "SOLUSDT"), (4, None)]
    assert len(salvaged.invalid[0].errors) == 1
    assert salvaged.invalid[0].errors[0].startswith("assets.1.action: ")
    assert len(salvaged.invalid[1].errors) == 1
    assert salvaged.invalid[1].errors[0].startswith("assets.2.confidence: ")
    assert salvaged.invalid[2].errors and all(e.startswith("assets.4.") for e in salvaged.invalid[2].errors)
    assert salvaged.invalid[0].raw == obj["assets"][1]
    assert salvaged.invalid[2].raw == "not an object"
    assert salvaged.portfolio_rationale == "Mostly long."
    assert salvaged.total_allocation_usd == 500.0
    assert salvaged.portfolio_risk_level == "medium"


def test_salvage_of_a_fully_valid_decision_keeps_everything() -> None:
    salvaged = salvage_decision(VALID)
    assert [a.symbol for a in salvaged.assets] == ["BTCUSDT", "ETHUSDT"]
    assert salvaged.invalid == []


def test_salvage_survives_a_broken_portfolio_level() -> None:
    obj = {"assets": [asset("BTCUSDT"), asset("ETHUSDT", leverage=0)], "total_allocation_usd": "lots", "x": 1}
    salvaged = salvage_decision(obj)
    assert [a.symbol for a in salvaged.assets] == ["BTCUSDT"]
    assert [(bad.index, bad.symbol) for bad in salvaged.invalid] == [(1, "ETHUSDT")]
    assert salvaged.invalid[0].errors[0].startswith("assets.1.leverage: ")
    assert salvaged.portfolio_rationale == ""
    assert salvaged.total_allocation_usd is None
    assert salvaged.portfolio_risk_level is None


@pytest.mark.parametrize("assets", [None, "BTCUSDT", {"symbol": "BTCUSDT"}, []])
def test_salvage_without_an_asset_list_gives_nothing(assets: Any) -> None:
    obj = {"portfolio_rationale": "r"} if assets is None else {"assets": assets, "portfolio_rationale": "r"}
    salvaged = salvage_decision(obj)
    assert salvaged.assets == [] and salvaged.invalid == []
    assert salvaged.portfolio_rationale == "r"
