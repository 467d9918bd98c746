"""`llmtrader strategy ...`, strategy switching and A/B tests, end to end through the CLI with the fakes.

Switching is persisted in the store, audited, and read again by every decision; an A/B arm is derived
from the decision id alone, so each record's arm can be checked (and re-derived) by anyone.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.settings import ABTest, arm_fraction
from llmtrader.config.strategies import builtin_dir
from llmtrader.core.formatting import fmt
from llmtrader.core.records import new_decision_id
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision, error

MARKER = "Follow the house rules of strategy MINE."


def write_strategy(directory: Path, name: str, *, marker: str | None = None, max_leverage: int | None = None) -> Path:
    """A copy of the built-in default strategy under another name; ``marker`` opens its system prompt."""
    text = (builtin_dir() / "default.toml").read_text()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text, count=1)
    text = re.sub(r'(?m)^description = ".*"$', f'description = "The {name} strategy (a test copy)."', text, count=1)
    if marker is not None:
        text, found = re.subn(r'(?m)^system = """\n?', f'system = """\n{marker}\n', text, count=1)
        assert found == 1, "the default strategy's system prompt is not a multi-line string"
    if max_leverage is not None:
        text, found = re.subn(r"(?m)^max_leverage = \d+$", f"max_leverage = {max_leverage}", text, count=1)
        assert found == 1
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def user_dir(env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's strategies directory, holding `mine` (its system prompt starts with MARKER)."""
    directory = env.parent / "strategies"
    write_strategy(directory, "mine", marker=MARKER, max_leverage=3)
    monkeypatch.setenv("LLMTRADER_STRATEGIES_DIR", str(directory))
    monkeypatch.setenv("PAPER_CANDLE_INTERVAL", "15m")  # the fake venue serves no 1m candles
    return directory


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


def decide(runner: CliRunner, *args: str) -> dict[str, Any]:
    result = invoke(runner, "decide", "--json", *args)
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def show(runner: CliRunner, decision_id: str) -> dict[str, Any]:
    result = invoke(runner, "show", decision_id, "--json")
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def history(runner: CliRunner) -> list[dict[str, Any]]:
    result = invoke(runner, "history", "--json", "--limit", "1000")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def catalog(runner: CliRunner, *args: str) -> dict[str, dict[str, Any]]:
    result = invoke(runner, *args, "strategy", "list", "--json")
    assert result.exit_code == 0, result.output
    return {e["name"]: e for e in json.loads(result.stdout)}


def write_config(directory: Path, body: str) -> Path:
    path = directory / "test-config.toml"  # not ./config.toml, which every command would read
    path.write_text(body)
    return path


def choices(db: Path, account: str = "default") -> list[tuple[str, str | None, str]]:
    conn = sqlite3.connect(db)
    sql = "SELECT strategy, previous, via FROM strategy_choices WHERE account = ? ORDER BY id"
    return [tuple(r) for r in conn.execute(sql, [account])]


# ---- list, validate, show ----------------------------------------------------------------------------


def test_list_shows_every_strategy_and_the_one_in_force(env: Path, user_dir: Path, runner: CliRunner) -> None:
    (user_dir / "broken.toml").write_text(
        (user_dir / "mine.toml").read_text().replace('name = "mine"', 'name = "broken"') + "\nbogus = 1\n"
    )
    entries = catalog(runner)
    assert {"default", "mine", "broken"} <= set(entries)
    assert entries["default"]["source"] == "built-in" and entries["mine"]["source"] == "user"
    assert entries["default"]["in_force"] is True and entries["mine"]["in_force"] is False
    assert entries["mine"]["limits"]["max_leverage"] == 3 and entries["mine"]["error"] is None
    assert entries["broken"]["error"] is not None and "bogus: unknown key" in entries["broken"]["error"]
    table = invoke(runner, "strategy", "list")
    assert table.exit_code == 0, table.output
    assert "account default: default, the configured `strategy`" in table.stdout
    line = next(x for x in table.stdout.splitlines() if " mine " in x)
    # the leverage in force: the strategy's 3x capped by the settings' 2x; the description under the table
    assert "user" in line and " 2x " in line
    assert any(x.startswith("mine: The mine strategy") for x in table.stdout.splitlines())
    assert "bogus: unknown key" in table.stdout  # listed with its error, not a crash
    # the user's own `default` shadows the built-in one
    write_strategy(user_dir, "default")
    shadowed = catalog(runner)["default"]
    assert shadowed["source"] == "user (shadows built-in)" and shadowed["description"].startswith("The default")


def test_validate_a_good_and_bad_files(env: Path, user_dir: Path, runner: CliRunner) -> None:
    good = user_dir / "mine.toml"
    result = invoke(runner, "strategy", "validate", str(good))
    assert result.exit_code == 0 and result.stdout.startswith(f"{good}: ok (name mine")
    text = good.read_text()
    cases = {
        "unknown_key.toml": (
            text.replace("[limits]\n", "[limits]\nmax_levrage = 3\n"),
            "limits.max_levrage: unknown key",
        ),
        "bad_value.toml": (
            re.sub(r"(?m)^min_confidence = .*$", "min_confidence = 2", text),
            "limits.min_confidence: Input should be less than or equal to 1",
        ),
        "placeholder.toml": (text.replace(MARKER, MARKER + " {nope}"), "placeholder {nope} is not provided"),
        "not_toml.toml": ("name = ", "not valid TOML"),
    }
    for filename, (body, reason) in cases.items():
        path = user_dir.parent / filename
        path.write_text(body)
        result = invoke(runner, "strategy", "validate", str(path))
        assert result.exit_code == 2, (filename, result.output)
        assert str(path) in result.stderr and reason in result.stderr, (filename, result.stderr)
        assert result.stderr.count("\n") == 1, "one clear line"
    missing = invoke(runner, "strategy", "validate", str(user_dir / "nowhere.toml"))
    assert missing.exit_code == 2 and "nowhere.toml" in missing.stderr


def test_show_renders_the_prompt_on_current_data_without_a_model_call(
    env: Path, user_dir: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    result = invoke(runner, "strategy", "show", "mine", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["name"] == "mine" and out["limits"]["max_leverage"] == 3
    assert out["prompt"]["system"].startswith(MARKER)
    assert "Decide for: BTCUSDT, ETHUSDT." in out["prompt"]["user"]
    assert f"mark {fmt(fake_aster.mark('BTCUSDT'))}" in out["prompt"]["user"]
    assert out["account"]["mode"] == "paper"
    table = invoke(runner, "strategy", "show")  # no name: the strategy in force
    assert table.exit_code == 0, table.output
    assert "Strategy default" in table.stdout and "Prompt: system" in table.stdout
    assert "limits.max_leverage" in table.stdout and "no model was called" in table.stdout
    assert fake_llm.requests == [] and history(runner) == []
    unknown = invoke(runner, "strategy", "show", "nope")
    assert unknown.exit_code == 2 and "unknown strategy 'nope'; available:" in unknown.stderr
    assert "mine" in unknown.stderr


# ---- switching -----------------------------------------------------------------------------------------


def test_use_is_persisted_audited_and_effective_from_the_next_decision(
    env: Path, user_dir: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    before = decide(runner, "--dry-run")
    assert before["strategy"] == "default" and before["arm"] is None
    assert MARKER not in show(runner, before["decision_id"])["prompt"]["system"]

    result = invoke(runner, "strategy", "use", "mine")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "account default: default -> mine (takes effect from the next decision)"
    assert choices(env) == [("mine", "default", "cli")]
    assert catalog(runner)["mine"]["in_force"] is True  # a fresh invocation reads it back from the store

    after = decide(runner, "--dry-run")
    assert after["strategy"] == "mine"
    record = show(runner, after["decision_id"])
    assert record["strategy"] == "mine" and record["prompt"]["system"].startswith(MARKER)
    assert fake_llm.requests[-1]["messages"][0]["content"].startswith(MARKER)

    once = decide(runner, "--dry-run", "--strategy", "default")  # this call only
    assert once["strategy"] == "default" and MARKER not in show(runner, once["decision_id"])["prompt"]["system"]
    assert decide(runner, "--dry-run")["strategy"] == "mine"
    assert choices(env) == [("mine", "default", "cli")], "--strategy persists nothing"

    back = invoke(runner, "strategy", "use", "default")
    assert back.stdout.strip() == "account default: mine -> default (takes effect from the next decision)"
    other = invoke(runner, "strategy", "use", "mine", "--account", "other")
    assert other.stdout.strip() == "account other: default -> mine (takes effect from the next decision)"
    assert choices(env) == [("mine", "default", "cli"), ("default", "mine", "cli")]
    assert choices(env, "other") == [("mine", "default", "cli")]
    assert decide(runner, "--dry-run")["strategy"] == "default"
    assert catalog(runner, "--config", str(write_config(env.parent, 'account = "other"\n')))["mine"]["in_force"]


def test_use_of_an_unknown_strategy_exits_2_listing_the_available_ones(
    env: Path, user_dir: Path, runner: CliRunner
) -> None:
    result = invoke(runner, "strategy", "use", "nope")
    assert result.exit_code == 2
    assert "unknown strategy 'nope'; available:" in result.stderr and "default" in result.stderr
    assert "mine" in result.stderr
    assert choices(env) == []
    bad_account = invoke(runner, "strategy", "use", "mine", "--account", "no spaces")
    assert bad_account.exit_code == 2 and "--account" in bad_account.stderr


def test_a_persisted_strategy_that_no_longer_loads_fails_clearly(
    env: Path, user_dir: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    assert invoke(runner, "strategy", "use", "mine").exit_code == 0
    (user_dir / "mine.toml").write_text((user_dir / "mine.toml").read_text() + "\nbogus = 1\n")
    result = invoke(runner, "decide", "--dry-run")
    assert result.exit_code == 2
    assert "account 'default' uses strategy 'mine'" in result.stderr and "no longer loads" in result.stderr
    assert "bogus: unknown key" in result.stderr and "llmtrader strategy use NAME" in result.stderr
    assert fake_llm.requests == [] and history(runner) == []
    assert "bogus: unknown key" in catalog(runner)["mine"]["error"]  # list still works and shows why
    (user_dir / "mine.toml").unlink()
    gone = invoke(runner, "decide", "--dry-run")
    assert gone.exit_code == 2 and "unknown strategy 'mine'" in gone.stderr
    assert decide(runner, "--dry-run", "--strategy", "default")["strategy"] == "default"  # a way out for one call
    assert invoke(runner, "strategy", "use", "default").stdout.startswith("account default: mine -> default")
    assert decide(runner, "--dry-run")["strategy"] == "default"


# ---- A/B tests -----------------------------------------------------------------------------------------

AB_CONFIG = """
[ab]
split = {split}
[[ab.arms]]
name = "a"
model = "fake/model-a"
[[ab.arms]]
name = "b"
model = "fake/model-b"
strategy = "mine"
"""


def rederived_arm(decision_id: str, split: float) -> str:
    """The documented rule, written out independently: the first 8 bytes of SHA-256(id) / 2**64 < split."""
    fraction = int.from_bytes(hashlib.sha256(decision_id.encode()).digest()[:8], "big") / 2**64
    return "a" if fraction < split else "b"


def test_the_arm_fraction_is_uniform_and_the_split_holds_over_many_ids() -> None:
    ab = ABTest.model_validate({"split": 0.3, "arms": [{"name": "x", "model": "m"}, {"name": "y", "model": "n"}]})
    ids = [new_decision_id(1_790_000_000_000 + i) for i in range(20_000)]
    first = sum(ab.arm_index(i) == 0 for i in ids) / len(ids)
    assert abs(first - 0.3) < 0.015  # about 4.6 standard deviations
    assert all(0 <= arm_fraction(i) < 1 for i in ids[:100])
    assert [ab.arm_index(i) for i in ids[:50]] == [ab.arm_index(i) for i in ids[:50]]


def test_ab_arms_split_the_decisions_and_record_their_model_and_strategy(
    env: Path, user_dir: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    split = 0.5
    config = write_config(env.parent, AB_CONFIG.format(split=split))
    outs = []
    for _ in range(40):
        result = runner.invoke(app, ["--config", str(config), "decide", "--dry-run", "--json"])
        assert result.exit_code == 0, result.output
        outs.append(json.loads(result.stdout))
    counts = Counter(o["arm"] for o in outs)
    # Binomial(40, 0.5): mean 20, standard deviation 3.2; this band fails about once in 10,000 runs.
    assert 8 <= counts["a"] <= 32 and counts["a"] + counts["b"] == 40
    assert [r["model"] for r in fake_llm.requests] == [o["model"] for o in outs]  # the model each arm named
    for out in outs:
        assert out["arm"] == rederived_arm(out["decision_id"], split)
        assert (out["model"], out["strategy"]) == (
            ("fake/model-a", "default") if out["arm"] == "a" else ("fake/model-b", "mine")
        )
    record = show(runner, next(o["decision_id"] for o in outs if o["arm"] == "b"))
    assert record["arm"] == "b" and record["prompt"]["system"].startswith(MARKER)
    assert record["equity_usd"] == pytest.approx(10_000)
    rows = history(runner)
    assert {r["decision_id"]: r["arm"] for r in rows} == {o["decision_id"]: o["arm"] for o in outs}


def test_an_explicit_model_or_strategy_decides_outside_the_ab_test(
    env: Path, user_dir: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    config = write_config(env.parent, AB_CONFIG.format(split=0.5))
    for flag, value in (("--model", "fake/model-c"), ("--strategy", "mine")):
        result = runner.invoke(app, ["--config", str(config), "decide", "--dry-run", "--json", flag, value])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["arm"] is None
        assert f"A/B test off for this decision: {flag} given" in result.stderr
        assert any(f"{flag} given" in n for n in out["notes"])
    assert [r["model"] for r in fake_llm.requests] == ["fake/model-c", "fake/model"]


def test_ab_compares_the_arms_over_their_common_period(
    env: Path, user_dir: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    config = write_config(env.parent, AB_CONFIG.format(split=0.5))

    def run(*args: str) -> dict[str, Any]:
        result = runner.invoke(app, ["--config", str(config), "decide", "--json", *args])
        assert result.exit_code in (0, 1), result.output
        out: dict[str, Any] = json.loads(result.stdout)
        return out

    empty = runner.invoke(app, ["--config", str(config), "strategy", "ab", "--json"])
    assert empty.exit_code == 0 and json.loads(empty.stdout)["arms"] == []
    assert "no common period yet: no decision recorded by arm a, b" in json.loads(empty.stdout)["note"]
    outs = [run("--dry-run") for _ in range(12)]
    fake_llm.push(error(401, "invalid key"))  # refused, not retried: a model error for whichever arm comes next
    outs.append(run("--dry-run"))
    mark = fake_aster.mark("BTCUSDT")
    buy = asset("BTCUSDT", "buy", allocation_usd=500, leverage=2, tp_price=round(mark * 1.04, 1),
                sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(answer(decision(buy, asset("ETHUSDT"))))
    outs.append(run())  # executed on the paper account
    assert outs[-1]["execution"] == "executed" and outs[-2]["outcome"] == "model_error"
    run("--dry-run", "--model", "fake/model-c")  # outside the test: left out of the comparison
    rows = {r["decision_id"]: r for r in history(runner)}
    arms = {o["decision_id"]: rows[o["decision_id"]]["arm"] for o in outs}
    assert set(arms.values()) == {"a", "b"}, "both arms decided (fails about once in 8,000 runs)"

    result = runner.invoke(app, ["--config", str(config), "strategy", "ab", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    firsts = {arm: min(rows[i]["created_at"] for i, a in arms.items() if a == arm) for arm in "ab"}
    assert got["period"]["start"] == max(firsts.values())
    assert [a["arm"] for a in got["arms"]] == ["a", "b"]
    for arm in got["arms"]:
        mine = [rows[i] for i, a in arms.items() if a == arm["arm"] and rows[i]["created_at"] >= got["period"]["start"]]
        records = [show(runner, r["decision_id"]) for r in mine]
        assert arm["decisions"] == len(mine)
        assert arm["models"] == [f"fake/model-{arm['arm']}"]
        assert arm["model_errors"] == sum(r["outcome"] == "model_error" for r in mine)
        assert arm["executed"] == sum(r["execution"] in ("executed", "partial") for r in records)
        assert arm["dry_runs"] == sum(r["dry_run"] for r in records)
        statuses = [a["status"] for r in mine for a in r["assets"]]
        assert arm["asset_decisions"] == len(statuses)
        assert arm["accepted_share"] == pytest.approx(statuses.count("accepted") / len(statuses))
        assert arm["mean_latency_ms"] == pytest.approx(sum(r["latency_ms"] for r in mine) / len(mine))
        costs = [r["cost_usd"] for r in mine if r["cost_usd"] is not None]
        assert arm["cost_usd"] == pytest.approx(sum(costs))
        assert arm["cost_per_decision_usd"] == pytest.approx(sum(costs) / len(costs))
    assert sum(a["model_errors"] for a in got["arms"]) <= 1
    assert "stats --by arm" in got["note"]
    table = runner.invoke(app, ["--config", str(config), "strategy", "ab"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "model cost USD" in table.stdout and "PnL per arm" in table.stdout
    later = runner.invoke(app, ["--config", str(config), "strategy", "ab", "--json", "--since", "2999-01-01"])
    assert all(a["decisions"] == 0 for a in json.loads(later.stdout)["arms"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[ab.arms]]\nname = "a"\nmodel = "m"\n', "ab.arms"),
        ('split = 1\n[[ab.arms]]\nname = "a"\nmodel = "m"\n[[ab.arms]]\nname = "b"\nmodel = "n"\n', "ab.split"),
        ('[[ab.arms]]\nname = "a"\nmodel = "m"\n[[ab.arms]]\nname = "a"\nmodel = "n"\n', "both named 'a'"),
        ('[[ab.arms]]\nname = "a"\n[[ab.arms]]\nname = "b"\nmodel = "n"\n', "names neither a model nor a strategy"),
        ('[[ab.arms]]\nname = "a"\nmodle = "m"\n[[ab.arms]]\nname = "b"\nmodel = "n"\n', "'ab.arms.0.modle'"),
    ],
)
def test_a_bad_ab_table_is_refused_naming_the_key(clean_env: Path, runner: CliRunner, body: str, expected: str) -> None:
    config = write_config(clean_env.parent, "[ab]\n" + body)
    result = runner.invoke(app, ["--config", str(config), "config", "show"])
    assert result.exit_code == 2 and expected in result.stderr and str(config) in result.stderr


def test_an_arm_whose_strategy_does_not_load_is_named(
    env: Path, user_dir: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    config = write_config(env.parent, AB_CONFIG.format(split=0.01).replace('"mine"', '"gone"'))
    for _ in range(5):  # with split 0.01 nearly every decision goes to arm b, whose strategy is missing
        result = runner.invoke(app, ["--config", str(config), "decide", "--dry-run"])
        if result.exit_code == 2:
            break
    assert result.exit_code == 2
    assert "A/B arm 'b'" in result.stderr and "unknown strategy 'gone'" in result.stderr
