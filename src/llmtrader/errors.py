"""The one exception tree of llmtrader.

Each class's docstring is the contract: what the caller does next. Vendor errors (httpx, openai,
sqlite) are translated at the adapter boundary and raised ``from`` their cause, so the user sees one
clear line and the traceback is kept for ``LLMTRADER_DEBUG=1``.
"""

from __future__ import annotations


class LLMTraderError(Exception):
    """Base of every error llmtrader raises on purpose. The CLI prints one line and exits non-zero.

    ``decision_id`` is set when the failure was recorded as a decision, so the user can look it up.
    """

    exit_code = 1
    decision_id: str | None = None


class ConfigError(LLMTraderError):
    """Bad configuration or command-line input. Nothing has run; fix the named setting. Exit code 2."""

    exit_code = 2


class StrategyError(ConfigError):
    """A strategy file is missing or invalid. Nothing has run; the message names the file and key."""


class UnknownSymbolError(ConfigError):
    """An asked-for symbol is not listed (or not trading) on the venue. Refused before any model call."""


class DataError(ConfigError):
    """A historical data file (candles, funding) is missing or malformed. Nothing has run; the message
    names the file and the line. Exit code 2."""


class VenueError(LLMTraderError):
    """The venue could not give what was asked. Reads were already retried; the cycle is skipped."""


class VenueUnavailable(VenueError):
    """The venue was unreachable, timed out or answered 5xx after bounded retries. Skip the cycle."""


class VenueRejected(VenueError):
    """The venue answered with an error code. Carries ``code`` and the venue's ``venue_message``."""

    def __init__(self, message: str, *, code: int | None = None, venue_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.venue_message = venue_message


class ModelError(LLMTraderError):
    """The decision model gave no usable answer after retries and re-asks.

    Recorded as a ``model_error`` outcome; no trade is made this cycle. ``calls`` holds the record of
    every call made (prompt tokens, raw answers, errors) so the audit trail is complete.
    """

    def __init__(self, message: str, *, calls: list[object] | None = None) -> None:
        super().__init__(message)
        self.calls: list[object] = list(calls or [])


class ModelTransientError(ModelError):
    """A temporary model failure (429, 5xx, timeout, an error body with HTTP 200). Retried with backoff."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelRequestRefused(ModelError):
    """The model endpoint refused the request itself (400, 401, 402, 403). Not retried."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StoreError(LLMTraderError):
    """The SQLite store cannot be opened or written. Stop: nothing may run without its audit trail."""


class NotFoundError(LLMTraderError):
    """A record asked for by id does not exist. Exit code 1 with the id named."""


class OrderOutcomeUnknown(VenueError):
    """An order request timed out or failed and the venue could not confirm whether the order exists.

    Never re-sent: execution treats the order as possibly live (protective orders are still placed),
    records it as ``unknown`` and reports the asset as partial, so the user checks ``positions``.
    """

    def __init__(self, message: str, *, client_order_id: str) -> None:
        super().__init__(message)
        self.client_order_id = client_order_id


class ExecutionNotStarted(VenueError):
    """A recorded decision's execution did not start: the account could not be read (again) right before the
    first order, so nothing was sent. The decision stays recorded (execution ``failed``) and the cycle ends as
    ``exchange_reject``. The venue's error is the cause (``__cause__``): same message and exit code."""

    def __init__(self, cause: VenueError) -> None:
        super().__init__(str(cause))
        self.exit_code = cause.exit_code
        self.decision_id = cause.decision_id


class VenueBanned(VenueRejected):
    """HTTP 418: the venue banned this IP for ignoring 429s. Trading on the account stops at once."""


class CredentialsError(ConfigError):
    """Live trading credentials are missing, partial or ambiguous. Nothing was sent. Exit code 2."""
