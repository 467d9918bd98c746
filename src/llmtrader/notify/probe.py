"""``llmtrader notify test``: a test message to each configured URL (or one given), each result reported."""

from __future__ import annotations

from pathlib import Path


def test_results(urls: list[str] | None, config_path: Path | None = None) -> list[dict[str, object]]:
    """Send the test message to ``urls`` (default: every account's NOTIFY_URLS); one result per URL, in order."""
    from llmtrader.config.accounts import all_account_settings
    from llmtrader.config.load import load_settings
    from llmtrader.core.redact import secrets_of
    from llmtrader.errors import ConfigError
    from llmtrader.notify.checks import unique_targets
    from llmtrader.notify.delivery import send
    from llmtrader.notify.messages import TEST_MESSAGE, finish
    from llmtrader.notify.targets import make_targets, url_problem, url_secrets

    settings = load_settings(config_path)
    accounts = all_account_settings(settings)
    targets = make_targets(urls, settings.notify) if urls else unique_targets(accounts)
    if not targets:
        raise ConfigError(
            "no notification URL: set NOTIFY_URLS (Apprise URLs separated by spaces, such as tgram://TOKEN/CHAT "
            "or json://host/path), or pass --url"
        )
    secrets = url_secrets(targets)
    for account in accounts.values():
        secrets += secrets_of(account)
    message = finish(TEST_MESSAGE, secrets)
    out: list[dict[str, object]] = []
    for t in targets:
        problem = url_problem(t.url)
        error = problem if problem is not None else send(t.url, message, settings.notify.timeout_s, secrets)
        out.append({"target": t.label, "ok": error is None, "error": error})
    return out
