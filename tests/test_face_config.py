"""`config show` names the file it read and where each value came from (file, environment, default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app


def test_config_show_names_the_file_and_each_source(
    clean_env: Path, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mine.toml"
    config.write_text('interval = "4h"\n')
    monkeypatch.setenv("LEVERAGE", "3")
    result = runner.invoke(app, ["--config", str(config), "config", "show"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"config file: {config}" in lines[0]
    row = {line.split("│")[1].strip(): line for line in lines if line.count("│") >= 3}
    assert "file" in row["interval"] and "env LEVERAGE" in row["leverage"] and "default" in row["llm_model"]
