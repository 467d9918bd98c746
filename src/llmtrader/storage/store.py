"""The SQLite store over sqlite-utils: migrated on open, WAL mode, one transaction per record."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmtrader.errors import StoreError
from llmtrader.storage import migrations
from llmtrader.storage.records import DecisionRecord, iso_utc


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


class Store:
    """The writer side of the store (readers use :mod:`llmtrader.storage.reader`)."""

    def __init__(self, path: Path) -> None:
        from sqlite_utils import Database

        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = Database(str(path))
            self.db.execute("PRAGMA busy_timeout = 5000")
            self.db.enable_wal()
            migrations.apply(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def record_decision(self, rec: DecisionRecord) -> None:
        """Write a decision with its asset rows and model calls, all or nothing."""
        created = iso_utc(rec.created_at_ms)
        row = {
            "id": rec.id,
            "created_at": created,
            "account": rec.account,
            "mode": rec.mode,
            "dry_run": int(rec.dry_run),
            "strategy": rec.strategy,
            "model": rec.model,
            "base_url": rec.base_url,
            "symbols": _json(rec.symbols),
            "outcome": rec.outcome,
            "error": rec.error,
            "as_of_ms": rec.as_of_ms,
            "marks": _json(rec.marks),
            "system_prompt": rec.system_prompt,
            "user_prompt": rec.user_prompt,
            "raw_response": rec.raw_response,
            "parsed": _json(rec.parsed),
            "parse_errors": _json(rec.parse_errors),
            "portfolio_rationale": rec.portfolio_rationale,
            "notes": _json(rec.notes),
            "response_format": rec.response_format,
            "reasks": rec.reasks,
            "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens,
            "cost_usd": rec.cost_usd,
            "model_latency_ms": rec.model_latency_ms,
            "latency_ms": rec.latency_ms,
        }
        assets = []
        for a in rec.assets:
            data = asdict(a)
            data.update(
                decision_id=rec.id,
                created_at=created,
                account=rec.account,
                reasons=_json(a.reasons),
                proposed=_json(a.proposed),
            )
            assets.append(data)
        calls = [{**asdict(c), "decision_id": rec.id} for c in rec.calls]
        try:
            with self.db.conn:
                self.db.table("decisions").insert(row)
                if assets:
                    self.db.table("asset_decisions").insert_all(assets)
                if calls:
                    self.db.table("llm_calls").insert_all(calls)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record decision {rec.id} in {self.path}: {exc}") from exc

    def cache_get(self, key: str, max_age_ms: int, now_ms: int) -> str | None:
        """A cached venue reply no older than ``max_age_ms``."""
        rows = list(
            self.db.query(
                "SELECT body FROM venue_cache WHERE key = ? AND fetched_at_ms >= ?",
                [key, now_ms - max_age_ms],
            )
        )
        return str(rows[0]["body"]) if rows else None

    def cache_put(self, key: str, body: str, now_ms: int) -> None:
        with self.db.conn:
            self.db.table("venue_cache").upsert({"key": key, "fetched_at_ms": now_ms, "body": body}, pk="key")
