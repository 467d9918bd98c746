"""The stored decisions behind ``llmtrader stats``, read in the form the figures of :mod:`llmtrader.core.stats`
take."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from llmtrader.core.stats import AssetRow, DecisionRow
from llmtrader.core.times import iso_utc, ms_of_iso

if TYPE_CHECKING:
    from llmtrader.storage.store import Store


DECISION_COLUMNS = (
    "id, created_at, model, outcome, strategy, arm, execution, dry_run, reasks, prompt_tokens, completion_tokens, "
    "cost_usd, latency_ms, model_latency_ms"
)


def _decision_row(r: Sequence[Any]) -> DecisionRow:
    return DecisionRow(
        id=r[0], created_ms=ms_of_iso(r[1]), model=r[2], outcome=r[3], strategy=r[4], arm=r[5], execution=r[6],
        dry_run=bool(r[7]), reasks=r[8] or 0, prompt_tokens=r[9] or 0, completion_tokens=r[10] or 0,
        cost_usd=r[11], latency_ms=r[12], model_latency_ms=r[13],
    )  # fmt: skip


def load_decisions(
    store: Store, account: str, mode: str, start_ms: int | None, also: Iterable[str] = ()
) -> tuple[list[DecisionRow], list[AssetRow]]:
    """The account's decisions in ``mode`` made at or after ``start_ms``, plus those with ids in ``also``
    (the decisions that opened the period's trades), with their asset rows."""
    conn = store.db.conn
    since = iso_utc(start_ms) if start_ms is not None else ""
    rows = {
        r[0]: _decision_row(r)
        for r in conn.execute(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE account = ? AND mode = ? AND created_at >= ? "
            "ORDER BY created_at",
            [account, mode, since],
        )
    }
    missing = sorted(set(also) - set(rows))
    for i in range(0, len(missing), 500):
        chunk = missing[i : i + 500]
        for r in conn.execute(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE account = ? AND id IN ({','.join('?' * len(chunk))})",
            [account, *chunk],
        ):
            rows[r[0]] = _decision_row(r)
    assets = [
        AssetRow(decision_id=r[0], symbol=r[1], action=r[2], status=r[3], confidence=r[4])
        for r in conn.execute(
            "SELECT a.decision_id, a.symbol, a.action, a.status, a.confidence FROM asset_decisions a "
            "JOIN decisions d ON d.id = a.decision_id WHERE d.account = ? AND d.mode = ? AND d.created_at >= ? "
            "ORDER BY a.id",
            [account, mode, since],
        )
    ]
    known = {a.decision_id for a in assets}
    extra = [i for i in missing if i in rows and i not in known]
    for i in range(0, len(extra), 500):
        chunk = extra[i : i + 500]
        assets.extend(
            AssetRow(decision_id=r[0], symbol=r[1], action=r[2], status=r[3], confidence=r[4])
            for r in conn.execute(
                "SELECT decision_id, symbol, action, status, confidence FROM asset_decisions "
                f"WHERE decision_id IN ({','.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
        )
    return sorted(rows.values(), key=lambda d: (d.created_ms, d.id)), assets
