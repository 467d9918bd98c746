"""/metrics in the Prometheus text format, computed from the store at each scrape (nothing kept in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from llmtrader.storage import web as q
from llmtrader.storage.reader import Connection

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings

CIRCUIT_STATES = ("closed", "open", "half_open")


def _num(value: Any) -> float:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0.0


class _StoreCollector(Collector):
    def __init__(self, settings: Settings, conn: Connection | None, accounts: list[str], now_ms: int) -> None:
        self.settings, self.conn, self.accounts, self.now_ms = settings, conn, accounts, now_ms

    def collect(self) -> Iterator[Metric]:
        from llmtrader.web.data import positions, status

        served = set(self.accounts)
        up = GaugeMetricFamily("llmtrader_serve_up", "1 while the server answers")
        up.add_metric([], 1)
        yield up
        rows = q.metric_rows(self.conn) if self.conn is not None else {}
        cycles = CounterMetricFamily("llmtrader_cycles", "Recorded cycles by outcome", labels=["account", "outcome"])
        for account, outcome, n in rows.get("cycles", []):
            if account in served:
                cycles.add_metric([account, outcome], n)
        yield cycles
        validation = CounterMetricFamily(
            "llmtrader_asset_decisions", "Asset decisions by validation status", labels=["account", "status"]
        )
        for account, st, n in rows.get("validation", []):
            if account in served:
                validation.add_metric([account, str(st)], n)
        yield validation
        tokens = CounterMetricFamily("llmtrader_model_tokens", "Model tokens spent", labels=["account", "kind"])
        cost = CounterMetricFamily("llmtrader_model_cost_usd", "Model spend in USD", labels=["account"])
        for account, prompt, completion, usd in rows.get("spend", []):
            if account in served:
                tokens.add_metric([account, "prompt"], prompt)
                tokens.add_metric([account, "completion"], completion)
                cost.add_metric([account], usd)
        yield tokens
        yield cost
        latency = HistogramMetricFamily(
            "llmtrader_model_latency_seconds", "Model latency of each decision", labels=["account"]
        )
        for account, *counts in rows.get("latency", []):
            if account not in served:
                continue
            *cumulative, total, total_s = counts
            buckets = [(str(b), int(n or 0)) for b, n in zip(q.LATENCY_BUCKETS_S, cumulative, strict=True)]
            latency.add_metric([account], [*buckets, ("+Inf", int(total))], float(total_s or 0))
        yield latency

        equity = GaugeMetricFamily("llmtrader_equity_usd", "Account equity at the last cycle", labels=["account"])
        last = GaugeMetricFamily(
            "llmtrader_last_cycle_timestamp_seconds", "Start of the account's last cycle", labels=["account"]
        )
        alive = GaugeMetricFamily(
            "llmtrader_alive", "1 when the last cycle is within two intervals", labels=["account"]
        )
        kill = GaugeMetricFamily("llmtrader_kill_switch", "1 while a kill switch is on", labels=["account", "switch"])
        circuit = GaugeMetricFamily("llmtrader_circuit_state", "The model circuit breaker", labels=["account", "state"])
        open_positions = GaugeMetricFamily(
            "llmtrader_open_positions", "Open positions at the last snapshot", labels=["account"]
        )
        exposure = GaugeMetricFamily(
            "llmtrader_exposure_usd", "Notional of the open positions at the last snapshot", labels=["account"]
        )
        from llmtrader.core.times import ms_of_iso

        for row in status(self.settings, self.conn, self.accounts, self.now_ms):
            name = row["account"]
            if row["equity_usd"] is not None:
                equity.add_metric([name], row["equity_usd"])
            if row["last_cycle"]:
                last.add_metric([name], ms_of_iso(row["last_cycle"]["started_at"]) / 1000)
            alive.add_metric([name], 1 if row["alive"] else 0)
            guards = row["guards"]
            kill.add_metric([name, "drawdown"], 1 if guards["drawdown"]["stopped"] else 0)
            kill.add_metric([name, "daily_loss"], 1 if guards["daily_loss"]["tripped"] else 0)
            kill.add_metric([name, "budget"], 1 if guards["budget"]["reached"] else 0)
            for state in CIRCUIT_STATES:
                circuit.add_metric([name, state], 1 if guards["circuit"]["state"] == state else 0)
            snap = positions(self.conn, name)
            open_positions.add_metric([name], len(snap["positions"]))
            notional = sum(abs(_num(p.get("size")) * _num(p.get("mark_price"))) for p in snap["positions"])
            exposure.add_metric([name], notional)
        yield from (equity, last, alive, kill, circuit, open_positions, exposure)


def render_metrics(settings: Settings, conn: Connection | None, accounts: list[str], now_ms: int) -> tuple[bytes, str]:
    """The exposition of one scrape, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(settings, conn, accounts, now_ms))
    return generate_latest(registry), CONTENT_TYPE_LATEST
