"""``doctor``'s look at a model endpoint: its model list, asked with the key (no completion is requested)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ModelsProbe:
    """What ``GET <base_url>/models`` answered. ``error``: the class name of the HTTP error when no answer came;
    else ``status``, and for a 200 whose body is a JSON model list, the model ``ids`` (None: not such a body)."""

    error: str | None
    status: int | None
    ids: set[Any] | None


async def probe_models(base_url: str, api_key: str, timeout_s: float) -> ModelsProbe:
    """Ask the endpoint for its model list with the key."""
    url = f"{base_url}/models"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            resp = await client.get(url, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.HTTPError as exc:
        return ModelsProbe(type(exc).__name__, None, None)
    if resp.status_code != 200:
        return ModelsProbe(None, resp.status_code, None)
    try:
        ids = {m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)}
    except (ValueError, AttributeError):
        return ModelsProbe(None, resp.status_code, None)
    return ModelsProbe(None, resp.status_code, ids)


def listed_prices(base_url: str, api_key: str, models: Sequence[str]) -> dict[str, tuple[float, float]]:
    """USD per prompt and completion token of each of ``models`` the endpoint's model list prices
    (OpenRouter's ``pricing``); empty when the list cannot be read (it is optional)."""
    prices: dict[str, tuple[float, float]] = {}
    try:
        reply = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
        if reply.status_code == 200:
            for item in reply.json().get("data", []):
                pricing = item.get("pricing") if isinstance(item, dict) else None
                if item.get("id") in models and isinstance(pricing, dict):
                    prices[str(item["id"])] = (float(pricing["prompt"]), float(pricing["completion"]))
    except Exception:  # the list is optional: the price table, or "unknown", stands in
        pass
    return prices
