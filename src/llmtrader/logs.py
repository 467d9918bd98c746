"""Logging with structlog: readable lines on a terminal, JSON lines elsewhere, and no secret in either.

Every record, ours and those of libraries (httpx logs request URLs, APScheduler logs job errors), goes
through the standard library's logging to one set of handlers, and through :class:`Redactor` just before
it is rendered. structlog is imported only when logging is configured or a logger is made, so importing
this module (for :func:`redact`) stays cheap and read-only commands never load it.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TextIO

from llmtrader.core.formatting import safe_text
from llmtrader.core.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    is_secret_name,
    redact,
)
from llmtrader.errors import ConfigError
from llmtrader.privatefiles import make_private_dirs, private_opener

if TYPE_CHECKING:
    import logging

    from structlog.stdlib import BoundLogger
    from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = ("debug", "info", "warning", "error", "critical")
# Libraries that log every request or job run at INFO; the cycle summary says what matters.
CHATTY_LIBRARIES = ("httpx", "httpx2", "httpcore", "openai", "apscheduler")  # httpx2: the model client's HTTP
# The name our handlers carry, so that reconfiguring replaces exactly them.
_HANDLER_NAME = "llmtrader"


class Redactor:
    """A structlog processor: masks secrets in every value of the event dict, recursively.

    Values that are not JSON types become text first (``str`` for numbers, dates and paths, ``repr``
    otherwise), so a renderer never calls a ``__repr__`` the redaction did not see.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values too (secrets are only ever added: a value once secret stays masked)."""
        known = set(self.secrets) | {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        self.secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._value(key, value) for key, value in event_dict.items()}

    def _value(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and is_secret_name(key) and value is not None and not _is_number(value):
            return MASK
        return self._clean(value)

    def _clean(self, value: Any) -> Any:
        if value is None or _is_number(value):
            return value
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, Mapping):
            return {str(k): self._value(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._clean(item) for item in value]
        if isinstance(value, (Decimal, dt.date, dt.time, PurePath, uuid.UUID)):
            return redact(str(value), self.secrets)
        if isinstance(value, Enum):
            return self._clean(value.value)
        if isinstance(value, BaseException):
            return redact(f"{type(value).__name__}: {value}", self.secrets)
        return redact(repr(value), self.secrets)


def _is_number(value: object) -> bool:
    return isinstance(value, (bool, int, float)) and not isinstance(value, Enum)


# One per process: loggers made before configure_logging() (at import time) redact the same way after it.
_REDACTOR = Redactor()


def _private_file_handler(path: Path) -> logging.Handler:
    """A handler appending to ``path``, created readable by its owner only, reopened after logrotate moves it."""
    import logging.handlers

    class PrivateFileHandler(logging.handlers.WatchedFileHandler):
        def _open(self) -> Any:  # where logging opens the file, also when it reopens it after a rotation
            return open(self.baseFilename, self.mode, encoding=self.encoding, opener=private_opener)

    return PrivateFileHandler(path, mode="a", encoding="utf-8")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _structlog_chain() -> list[Processor]:
    """What every event of ours goes through before it is handed to the standard library."""
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.filter_by_level,
        *_common_chain(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        # Render the traceback now, as text, so the redactor sees it (and no renderer prints locals).
        structlog.processors.format_exc_info,
        _REDACTOR,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


def _common_chain() -> list[Processor]:
    import structlog

    return [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, _timestamp]


def _timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """UTC ISO time; a library record keeps its own creation time, so the stream and the file agree."""
    record = event_dict.get("_record")
    when = dt.datetime.fromtimestamp(record.created, dt.UTC) if record is not None else dt.datetime.now(dt.UTC)
    event_dict["timestamp"] = when.isoformat().replace("+00:00", "Z")
    return event_dict


@functools.cache
def _bound_logger_class() -> type[BoundLogger]:
    import structlog

    class RedactedTracebackLogger(structlog.stdlib.BoundLogger):
        """``exception()`` hands the standard library an error without ``exc_info``: the traceback is
        already in the event, redacted, and any other handler would print the raw one."""

        def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
            kw.setdefault("exc_info", True)
            return self._proxy_to_logger("error", event, *args, **kw)

    return RedactedTracebackLogger


def _configure_structlog() -> None:
    import structlog

    structlog.configure(
        processors=_structlog_chain(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_bound_logger_class(),
        # Off, so that reconfiguring (and structlog.testing.capture_logs in tests) reaches loggers made
        # at import time; the cost is microseconds per event, at a few events per cycle.
        cache_logger_on_first_use=False,
    )


def _ensure_structlog() -> None:
    import structlog

    if not structlog.is_configured():
        _configure_structlog()


def _terminal_safe(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Text values without control characters, for the readable renderer: it prints strings as they are,
    and log events quote model answers and venue messages (JSON lines escape them instead)."""
    return {key: safe_text(value) if isinstance(value, str) else value for key, value in event_dict.items()}


def _formatter(renderer: Processor, *, readable: bool = False) -> logging.Formatter:
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_common_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # library records with a traceback
            _REDACTOR,  # library records; ours were redacted already and pass unchanged
            *([_terminal_safe] if readable else []),
            renderer,
        ],
    )


def configure_logging(
    *,
    json: bool | None,
    log_file: Path | None,
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send all logging to ``stream`` (default: stderr) and optionally to a JSON-lines file.

    ``json``: None picks readable lines on a terminal and JSON lines otherwise; True forces JSON, False
    readable lines. The file always gets JSON lines, appended, and is created with mode 0600. ``secrets``
    are masked in everything logged from now on (they add to those given before). Calling it again
    replaces the handlers it installed, so output is never duplicated.
    """
    import logging

    import structlog

    name = level.lower()
    if name not in LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    out = sys.stderr if stream is None else stream
    _REDACTOR.add(secrets)
    _configure_structlog()
    reset_logging()

    json_renderer = structlog.processors.JSONRenderer()
    readable = not (json or (json is None and not _is_terminal(out)))
    if not readable:
        renderer: Processor = json_renderer
    else:
        colors = _is_terminal(out) and "NO_COLOR" not in os.environ
        # Tracebacks arrive as redacted text (format_exc_info above); print that text as it is.
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    stream_handler = logging.StreamHandler(out)
    stream_handler.setFormatter(_formatter(renderer, readable=readable))
    handlers: list[logging.Handler] = [stream_handler]
    if log_file is not None:
        path = log_file.expanduser()
        make_private_dirs(path.parent)
        file_handler = _private_file_handler(path)
        file_handler.setFormatter(_formatter(json_renderer))
        handlers.append(file_handler)

    root = logging.getLogger()
    for handler in handlers:
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    root.setLevel(name.upper())
    for library in CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(logging.NOTSET if name == "debug" else logging.WARNING)


def reset_logging() -> None:
    """Remove (and close) the handlers configure_logging() installed; others are left alone."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()


def get_logger(name: str) -> BoundLogger:
    """A structlog logger for module ``name``; it follows whatever configure_logging() set, even later."""
    import structlog

    _ensure_structlog()
    logger: BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def cycle_summary(logger: BoundLogger, **fields: Any) -> None:
    """Log the one summary line of a decision cycle: event ``cycle``; fields that are None are left out.

    Expected fields: account, outcome, duration_ms, decision_id, model, cost_usd, orders, and any others.
    An outcome that is an error or a rejection is logged as a warning, ``unprotected`` as an error, every
    other one as info.
    """
    present = {key: value for key, value in fields.items() if value is not None}
    outcome = str(present.get("outcome", "")).lower()
    if outcome == "unprotected":  # a position may be open without a stop-loss
        logger.error("cycle", **present)
    elif "error" in outcome or "reject" in outcome:
        logger.warning("cycle", **present)
    else:
        logger.info("cycle", **present)
