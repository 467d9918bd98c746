"""Builds the ports (store, market data, decision client, clock) in one place, never at import time."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from urllib.parse import urlparse

from llmtrader.config.settings import Settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.filters import SymbolRules
from llmtrader.core.strategy import Strategy
from llmtrader.core.times import Clock, SystemClock
from llmtrader.cycle.services import Arm, CycleCache, Services
from llmtrader.errors import ConfigError, CredentialsError
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.exchange.base import Exchange, MarketData
from llmtrader.llm.port import DecisionClient
from llmtrader.storage.store import Store
from llmtrader.storage.venue_history import StoredVenueHistory

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
BASELINE_NOTE = (
    "no model credentials (OPENROUTER_API_KEY or LLM_API_KEY): decisions come from the built-in "
    "'baseline' rules, not from an LLM"
)


def build_client(settings: Settings, *, model_explicit: bool) -> tuple[DecisionClient, str | None]:
    """The decision client for the configured model, and a note when it fell back to baseline.

    In paper mode without model credentials, the baseline client is used (and said so); in live mode,
    or when the model was named on the command line, missing credentials are an error.
    """
    from llmtrader.llm.baseline import BaselineClient

    if settings.is_baseline:
        return BaselineClient(), None
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    if key is None and (urlparse(settings.llm_base_url).hostname or "") in LOCAL_HOSTS:
        key = "local"  # local servers (Ollama, vLLM) want a non-empty key but check none
    if key is None:
        if settings.trading_mode == "paper" and not model_explicit:
            return BaselineClient(), BASELINE_NOTE
        raise ConfigError(
            f"model {settings.llm_model!r} needs an API key: set OPENROUTER_API_KEY (or LLM_API_KEY) "
            "in the environment, or use --model baseline"
        )
    from llmtrader.core.redact import secrets_of
    from llmtrader.llm.openai_client import OpenAIDecisionClient

    client = OpenAIDecisionClient(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=key,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        max_reasks=settings.llm_max_reasks,
        retry_max_wait_s=settings.llm_retry_max_wait_s,
        prices=settings.llm_prices,
        secrets=secrets_of(settings),
    )
    return client, None


def build_exchange(
    settings: Settings, store: Store, market: AsterMarketData, services: Callable[[], Services]
) -> Exchange:
    """The paper account (the default), or the live venue, which needs TRADING_MODE=live and credentials."""
    from llmtrader.cycle.snapshot import get_rules

    async def rules() -> dict[str, SymbolRules]:
        return await get_rules(services())

    if settings.trading_mode == "live":
        credentials = settings.venue_credentials()
        if credentials is None:
            raise CredentialsError(
                "live trading needs venue credentials in the environment: ASTERDEX_USER, ASTERDEX_SIGNER and "
                "ASTERDEX_SIGNER_PRIVATE_KEY (V3 API wallet), or ASTERDEX_API_KEY and ASTERDEX_API_SECRET (V1)"
            )
        from llmtrader.exchange.asterdex import AsterDexExchange
        from llmtrader.storage.bans import VenueBans

        return AsterDexExchange(
            market,
            credentials,
            rules=rules,
            timeout_s=settings.http_timeout_s,
            chain_id=settings.asterdex_chain_id,
            recv_window_ms=settings.asterdex_recv_window_ms,
            lookup_grace_s=settings.order_lookup_grace_s,
            bans=VenueBans(store, market.base_url),
            # The venue's history, synced before every decision whatever the strategy shows: the cooldown, the
            # minimum hold and the kill switches count the closes and transfers found there. Bounded, so that
            # a slow venue costs a cycle no more than this.
            history=StoredVenueHistory(store),
            account=settings.account,
            symbols=settings.assets,
            history_timeout_s=2 * settings.http_timeout_s,
            history_requests=20,
        )
    from llmtrader.exchange.paper import PaperExchange

    return PaperExchange(
        store,
        market,
        account=settings.account,
        balance=Decimal(str(settings.paper_balance_usd)),
        taker_fee=Decimal(str(settings.paper_taker_fee)),
        slippage_bps=Decimal(str(settings.paper_slippage_bps)),
        candle_interval=settings.paper_candle_interval,
        rules=rules,
        now_ms=lambda: services().clock.now_ms(),
    )


def build_arms(settings: Settings, default: tuple[DecisionClient, str | None] | None) -> tuple[Arm, ...]:
    """The A/B arms of ``settings.ab``, each with its client: its own model's (baseline rules as in
    :func:`build_client`), or ``default`` (the configured model's client and note) when it names none."""
    assert settings.ab is not None
    arms = []
    for arm in settings.ab.arms:
        if arm.model is not None:
            client, note = build_client(settings.model_copy(update={"llm_model": arm.model}), model_explicit=False)
        else:
            assert default is not None
            client, note = default
        arms.append(Arm(arm.name, client, arm.strategy, (f"A/B arm {arm.name!r}: {note}",) if note else ()))
    return tuple(arms)


def build_services(
    settings: Settings,
    *,
    model_explicit: bool = False,
    strategy_override: str | None = None,
    clock: Clock | None = None,
    need_model: bool = True,
    store: Store | None = None,
    market: MarketData | None = None,
    exchange: Exchange | None = None,
    client: DecisionClient | None = None,
    strategy: Strategy | None = None,
    cache: CycleCache | None = None,
) -> Services:
    """Every port one decision needs. Without ``need_model`` (positions, close, strategy show) no model
    client is configured and no model key is required.

    An A/B test ([ab] in the config) runs unless the model or the strategy was named for this call
    (``model_explicit``, ``strategy_override``): then no arm decides, and a note says so.

    A backtest gives its own parts (``store``, ``market``, ``exchange``, ``client``, ``clock`` and the
    ``strategy`` fixed for the run, and its ``cache``: the history it read, the candle lines it rendered): what is
    given is used as it is, and no A/B arm is built beside a given client. The caller closes a store it gave.
    Without a ``cache``, the process keeps what every process keeps (a :class:`~llmtrader.cycle.services.CycleCache`).
    """
    if client is not None:
        return _services(settings, store, market, exchange, client, clock, (), (), strategy_override, strategy, cache)
    if strategy_override is not None:  # a bad --strategy fails before anything is built or printed
        load_strategy(strategy_override, settings.strategies_dir)
    ab = settings.ab if need_model else None
    explicit = [flag for flag, given in (("--model", model_explicit), ("--strategy", strategy_override)) if given]
    notes: list[str] = []
    arms: tuple[Arm, ...] = ()
    if ab is not None and not explicit:
        # Only when an arm names no model is the configured model's client needed.
        default = build_client(settings, model_explicit=False) if any(a.model is None for a in ab.arms) else None
        arms = build_arms(settings, default)
        client = arms[0].client  # unused: every decision goes to an arm
        notes = [n for a in arms for n in a.notes]
    elif need_model:
        client, note = build_client(settings, model_explicit=model_explicit)
        notes = [note] if note else []
        if ab is not None:
            notes.append(f"A/B test off for this decision: {' and '.join(explicit)} given (recorded with no arm)")
    else:
        from llmtrader.llm.baseline import BaselineClient

        client = BaselineClient()
    return _services(
        settings, store, market, exchange, client, clock, tuple(notes), arms, strategy_override, strategy, cache
    )


def _services(
    settings: Settings,
    store: Store | None,
    market: MarketData | None,
    exchange: Exchange | None,
    client: DecisionClient,
    clock: Clock | None,
    notes: tuple[str, ...],
    arms: tuple[Arm, ...],
    strategy_override: str | None,
    strategy: Strategy | None,
    cache: CycleCache | None,
) -> Services:
    """The services from the parts given, the missing ones built from the settings."""
    store = store if store is not None else Store(settings.db)
    if market is None:
        market = AsterMarketData(settings.asterdex_base_url, timeout_s=settings.http_timeout_s)
    built: list[Services] = []
    if exchange is None:
        assert isinstance(market, AsterMarketData)  # paper and live trade on the venue's market data
        try:
            exchange = build_exchange(settings, store, market, lambda: built[0])
        except BaseException:
            store.close()
            raise
    services = Services(
        settings=settings,
        store=store,
        market=market,
        exchange=exchange,
        client=client,
        clock=clock or SystemClock(),
        notes=notes,
        strategy_override=strategy_override,
        arms=arms,
        strategy=strategy,
        cache=CycleCache() if cache is None else cache,
    )
    built.append(services)
    return services


async def close_services(services: Services) -> None:
    await services.exchange.aclose()
    await services.market.aclose()
    clients = {id(c): c for c in (services.client, *(a.client for a in services.arms))}
    for client in clients.values():
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()
    services.store.close()
