"""With ``[accounts.*]`` tables, an account without an interval of its own decides at its strategy's interval
(swing: every 4h), as a single account does; an interval given anywhere (the top level, its table) wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtrader.config.accounts import settings_for_account
from llmtrader.config.load import load_settings
from llmtrader.cycle.scheduler import cycle_interval


def interval_of(tmp_path: Path, text: str, account: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return cycle_interval(settings_for_account(load_settings(path, None, environ={}), account, environ={}))


@pytest.mark.usefixtures("clean_env")
def test_an_account_on_swing_decides_every_4h_unless_an_interval_is_given(tmp_path: Path) -> None:
    accounts = '[accounts.a]\nstrategy = "swing"\n[accounts.b]\nstrategy = "swing"\ninterval = "30m"\n'
    assert interval_of(tmp_path, accounts, "a") == "4h"
    assert interval_of(tmp_path, accounts, "b") == "30m"
    assert interval_of(tmp_path, 'interval = "2h"\n' + accounts, "a") == "2h"
    single = 'strategy = "swing"\n'
    assert interval_of(tmp_path, single, "default") == "4h"
