"""The live path keeps no memo of files it reads (issue 15, item 5): a strategy file or directory is read again
at every decision, so what is on disk is what decides, whatever its size and mtime say."""

from __future__ import annotations

import os
from pathlib import Path

from llmtrader.config.strategies import builtin_dir, load_strategy
from llmtrader.core.guards import strategy_digest


def _same_stat(path: Path, text: str) -> None:
    """Rewrite ``path`` with ``text`` (of the same length), its modification time put back as it was."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_an_edited_strategy_file_decides_even_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    text = (builtin_dir() / "default.toml").read_text().replace('name = "default"', 'name = "mine"')
    assert "min_confidence = 0.55" in text
    path.write_text(text)
    first = load_strategy("mine", tmp_path)
    assert first.limits.min_confidence == 0.55
    _same_stat(path, text.replace("min_confidence = 0.55", "min_confidence = 0.75"))
    again = load_strategy("mine", tmp_path)
    assert again.limits.min_confidence == 0.75
    assert strategy_digest(again) != strategy_digest(first)


def test_a_strategy_added_to_the_directory_is_found_even_if_its_mtime_did_not_move(tmp_path: Path) -> None:
    text = (builtin_dir() / "default.toml").read_text()
    (tmp_path / "one.toml").write_text(text.replace('name = "default"', 'name = "one"'))
    assert load_strategy("one", tmp_path).name == "one"
    before = tmp_path.stat()
    (tmp_path / "two.toml").write_text(text.replace('name = "default"', 'name = "two"'))
    os.utime(tmp_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert load_strategy("two", tmp_path).name == "two"
