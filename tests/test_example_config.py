"""config.example.toml documents every setting and loads as it is."""

from __future__ import annotations

import re
from pathlib import Path

from llmtrader.config.file import ENV_ONLY
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def test_the_example_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    loaded = load_settings(EXAMPLE, environ={"LLMTRADER_DB": str(tmp_path / "x.db")})
    defaults = load_settings(None, environ={"LLMTRADER_DB": str(tmp_path / "x.db")})
    assert loaded == defaults


def test_the_example_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s?\[?([a-z_]+)[\]. ]*[=\"]", text, flags=re.MULTILINE))
    for name in Settings.model_fields:
        if name in ENV_ONLY:
            assert "OPENROUTER_API_KEY" in text
        else:
            assert name in documented, f"{name} is not documented in config.example.toml"
