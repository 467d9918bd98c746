"""`run` on a terminal: one readable line per cycle saying what was traded, held or vetoed, and why.

    12:00 main  traded BTCUSDT long 0.010 @ 117,224.3; held ETHUSDT; vetoed SOLUSDT (stop distance 0.4…)

The line is built from the cycle's result and its decision's stored rows (assets and orders), and fitted to
80 columns: reasons are cut first, between words, then whole parts are left off (``+N more``). A symbol, a
size or a price is never split. The full record is ``llmtrader show ID``. Not printed when stdout is not a
terminal: the log lines (stderr) stay what a journal and a pipe read.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len

from llmtrader.core.formatting import safe_text
from llmtrader.core.textfmt import at_precision, readable

if TYPE_CHECKING:
    from llmtrader.core.filters import SymbolRules
    from llmtrader.cycle.run import CycleResult
    from llmtrader.cycle.services import Services

WIDTH = 80
ELLIPSIS = "…"
# Order legs that change a position, and the word for one that filled (the entry says long or short).
_FILLING_LEGS = {"en": "traded", "cl": "closed", "ad": "added to", "rd": "reduced"}
_FAILED = ("rejected", "failed", "not_sent", "expired", "canceled")


@dataclass(frozen=True)
class Part:
    """One piece of the line: ``head`` is never split (a verb, a symbol, a size, a price); ``why`` is cut
    between words, or left off, when the line is too long."""

    head: str
    why: str = ""
    colon: bool = False  # "head: why" (a cycle that made no decision) rather than "head (why)"

    def text(self, why: str | None = None) -> str:
        said = self.why if why is None else why
        if not said:
            return self.head
        return f"{self.head}: {said}" if self.colon else f"{self.head} ({said})"


def cycle_line(
    result: CycleResult,
    record: Mapping[str, Any] | None,
    rules: Mapping[str, SymbolRules] | None = None,
    *,
    width: int = WIDTH,
) -> str:
    """The cycle's line: its time (UTC) and account, then what became of each asset of its decision
    (``record``: :func:`llmtrader.storage.reader.show`), or the cycle's outcome and reason when it made none;
    at most ``width`` columns. ``rules`` give each symbol's tick and step (sizes and prices at the venue's
    precision)."""
    when = datetime.fromtimestamp(result.started_ms / 1000, UTC).strftime("%H:%M")
    lead = f"{when} {safe_text(result.account, multiline=False)}  "
    parts = _asset_parts(record, rules or {}) if record is not None else []
    if result.unprotected:  # outranks everything else the cycle did
        symbols = ",".join(dict.fromkeys(result.unprotected))
        parts.insert(0, Part(f"UNPROTECTED {symbols}", "no stop-loss: close it by hand, llmtrader close"))
    if not parts:  # no decision, or one without assets (the model gave no usable answer)
        outcome = result.outcome.replace("_", " ")
        parts = [Part(outcome, _clean(result.reason or ""), colon=True)]
    return fit(lead, parts, width)


def fit(lead: str, parts: Sequence[Part], width: int = WIDTH) -> str:
    """``lead`` and ``parts`` joined by "; " in at most ``width`` columns: reasons cut between words (the
    first parts keep theirs longest), then the last parts left off as "+N more". A head is never cut: a line
    whose lead and first head alone are too long is returned whole."""
    full = lead + "; ".join(p.text() for p in parts)
    if cell_len(full) <= width:
        return full
    shown = list(parts)
    tail = ""
    while len(shown) > 1 and cell_len(lead + "; ".join(p.head for p in shown) + tail) > width:
        shown.pop()
        tail = f"; +{len(parts) - len(shown)} more"
    texts = [p.head for p in shown]
    for i, part in enumerate(shown):
        if not part.why:
            continue
        room = width - cell_len(lead + "; ".join(texts) + tail)
        words = part.why.split(" ")
        for n in range(len(words), 0, -1):
            said = " ".join(words[:n]) + ("" if n == len(words) else ELLIPSIS)
            candidate = part.text(said)
            if cell_len(candidate) - cell_len(part.head) <= room:
                texts[i] = candidate
                break
    return lead + "; ".join(texts) + tail


def _asset_parts(record: Mapping[str, Any], rules: Mapping[str, SymbolRules]) -> list[Part]:
    orders = record.get("orders") or []
    dry_run = record.get("execution") == "dry_run"
    parts: list[Part] = []
    for asset in record.get("assets") or []:
        symbol = safe_text(asset.get("symbol") or "?", multiline=False)
        action, status = str(asset.get("action") or ""), str(asset.get("status") or "")
        mine = [o for o in orders if o.get("symbol") == asset.get("symbol")]
        filled = [o for o in mine if o.get("leg") in _FILLING_LEGS and _positive(o.get("executed_qty"))]
        reasons = asset.get("reasons") or []
        if filled:
            parts.extend(_filled(symbol, o, rules.get(str(asset.get("symbol")))) for o in filled)
        elif status == "rejected" and action != "hold":
            parts.append(Part(f"vetoed {symbol}", _clean(reasons[0]) if reasons else ""))
        elif status == "declined":
            parts.append(Part(f"declined {symbol}"))
        elif action == "hold":
            parts.append(Part(f"held {symbol}"))
        elif dry_run:
            parts.append(Part(f"held {symbol}", f"dry run: would {action.replace('_', ' ')}"))
        else:
            failed = [o for o in mine if o.get("status") in _FAILED]
            if failed:
                venue = failed[0].get("venue_message") or failed[0].get("status") or ""
                parts.append(Part(f"failed {symbol}", _clean(str(venue))))
            elif mine:
                parts.append(Part(f"placed {symbol}", f"{action.replace('_', ' ')}, not filled yet"))
            else:
                parts.append(Part(f"held {symbol}", f"{action.replace('_', ' ')}: nothing to execute"))
    return _held_together(parts)


def _held_together(parts: list[Part]) -> list[Part]:
    """The plain holds as one part, where the first one was: "held ETHUSDT, SOLUSDT"."""
    held = [p.head.removeprefix("held ") for p in parts if p.head.startswith("held ") and not p.why]
    if len(held) < 2:
        return parts
    out: list[Part] = []
    for part in parts:
        if part.head.startswith("held ") and not part.why:
            if held:
                out.append(Part("held " + ", ".join(held)))
                held = []
            continue
        out.append(part)
    return out


def _filled(symbol: str, order: Mapping[str, Any], rule: SymbolRules | None) -> Part:
    request = order.get("request") or {}
    verb = _FILLING_LEGS[str(order.get("leg"))]
    side = ""
    if order.get("leg") == "en":
        side = " long" if request.get("side") == "BUY" else " short"
    size = _size(order.get("executed_qty"), rule)
    price = _price(order.get("avg_price"), rule)
    at = f" @ {price}" if price != "-" else ""
    return Part(f"{verb} {symbol}{side} {size}{at}")


def _positive(value: Any) -> bool:
    try:
        return value is not None and Decimal(str(value)) > 0
    except InvalidOperation:
        return False


def _size(value: Any, rule: SymbolRules | None) -> str:
    """A filled size at the symbol's step (as the venue wrote it when the step is unknown)."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return safe_text(value, multiline=False)
    return at_precision(number, rule.step_size) if rule is not None else safe_text(value, multiline=False)


def _price(value: Any, rule: SymbolRules | None) -> str:
    """A fill price at the symbol's tick, with thousands separators: 117,224.3."""
    if value is None or not _positive(value):
        return "-"
    text = readable(Decimal(str(value)), rule.tick_size if rule is not None else None)
    whole, dot, decimals = text.partition(".")
    return f"{int(whole):,}{dot}{decimals}"


def _clean(text: str) -> str:
    """A reason on one line, without control characters, runs of spaces folded."""
    return " ".join(safe_text(text, multiline=False).split())


def terminal_reporter(width: int | None = None) -> Callable[[Services, CycleResult], None]:
    """What ``run`` gives the scheduler on a terminal: print each cycle's line (reads the decision's rows and
    the cached exchange rules from the store; never the venue)."""
    import typer

    from llmtrader.cycle.snapshot import cached_rules
    from llmtrader.errors import NotFoundError
    from llmtrader.storage.reader import show
    from llmtrader.storage.store import open_reader

    def report(services: Services, result: CycleResult) -> None:
        record = None
        if result.decision_id is not None:
            conn = open_reader(services.settings.db)
            if conn is not None:
                try:
                    record = show(conn, result.decision_id)
                except NotFoundError:  # not recorded (the store failed): the outcome alone
                    record = None
                finally:
                    conn.close()
        columns = width if width is not None else min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
        typer.echo(cycle_line(result, record, cached_rules(services), width=columns))

    return report
