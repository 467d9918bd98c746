"""Starting the server: the token rules, then uvicorn on the event loop."""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import TYPE_CHECKING

from llmtrader.errors import ConfigError

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings

TOKEN_ENV = "LLMTRADER_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_token(host: str, allow_control: bool) -> str | None:
    """The token from the environment (only there: never a flag, which `ps` would show), checked against
    the rules: any address but loopback needs one, and so does --allow-control."""
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{TOKEN_ENV} is too short: use at least {MIN_TOKEN_LENGTH} random characters")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host} is not a loopback address: set {TOKEN_ENV} (at least {MIN_TOKEN_LENGTH} random "
            "characters) to serve beyond this machine, or bind to 127.0.0.1"
        )
    if token is None and allow_control:
        raise ConfigError(f"--allow-control needs {TOKEN_ENV}: control actions are only taken with the token")
    return token


def served_accounts(settings: Settings, wanted: list[str] | None) -> list[str]:
    from llmtrader.config.accounts import account_names

    names = account_names(settings)
    for name in wanted or []:
        if name not in names:
            raise ConfigError(f"--account {name!r} is not configured; the config's accounts are {', '.join(names)}")
    return list(dict.fromkeys(wanted)) if wanted else names


def run_server(
    settings: Settings, *, host: str, port: int, accounts: list[str] | None, allow_control: bool, log_level: str
) -> None:
    """Serve until SIGINT or SIGTERM."""
    import uvicorn

    from llmtrader.core.redact import secrets_of
    from llmtrader.web.app import ServeConfig, create_app

    token = serve_token(host, allow_control)
    cfg = ServeConfig(
        settings=settings,
        accounts=served_accounts(settings, accounts),
        token=token,
        narrowed=bool(accounts),
        allow_control=allow_control,
        secrets=[*secrets_of(settings), *([token] if token else [])],
    )
    app = create_app(cfg)
    print(f"serving on http://{host}:{port} (Ctrl-C to stop)", file=sys.stderr)
    # An open live stream never ends by itself: on SIGTERM it gets 5 s, then the server exits anyway.
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False, server_header=False,
        timeout_graceful_shutdown=5,
    )  # fmt: skip
