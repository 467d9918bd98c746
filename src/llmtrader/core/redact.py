"""Redaction of secrets: known values and anything shaped like a credential, masked before text is printed,
logged or stored (pure)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


MASK = "**********"


# Shorter configured values would mask ordinary words and numbers all over the logs.
MIN_SECRET_LENGTH = 8


# A name that holds a credential: `api_key`, `apiKey`, `X-MBX-APIKEY`, `private_key`, `access_token`...
# but not `prompt_tokens` or `signer` (whole words only).
_SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "passphrase", "authorization", "signature", "token", "apikey", "privkey"}
)


_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")})


_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


_SECRET_NAME = (
    r"(?:[A-Za-z0-9]+[_-])*"
    r"(?:signature|api[_-]?key|apikey|secret|private[_-]?key|privkey|password|passwd|passphrase|token|authorization)"
)


# (pattern, replacement), applied in order after the known values are replaced.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # `Authorization: Bearer <token>` (RFC 6750 token characters; 8+ so that prose survives).
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {MASK}"),
    # `name='value'`, `"name": "value"`: reprs of dataclasses and dicts, JSON bodies.
    (re.compile(rf"(?i)\b({_SECRET_NAME})(['\"]?\s*[:=]\s*)(['\"])(.*?)\3"), rf"\1\2\3{MASK}\3"),
    # `signature=0x...&`, `apiKey=...`: query strings and unquoted assignments.
    (re.compile(rf"(?i)\b({_SECRET_NAME})=(?!['\"])[^&\s'\",;)#]+"), rf"\1={MASK}"),
    # Credentials in a URL: `https://user:password@host/` (refused in settings; a library may still log one).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@"), rf"\1{MASK}@"),
    # OpenAI-style keys: `sk-...`, `sk-or-v1-...`, `sk-ant-...`.
    (re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{16,}"), MASK),
    # A secp256k1 private key: 64 hex digits, with or without 0x (a longer hex run is not one).
    (re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z])"), MASK),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value, and anything shaped like a credential, replaced by a marker."""
    if not text:
        return text
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: one may contain another
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_name(name: str) -> bool:
    """True when a field or parameter name says its value is a credential."""
    words = [w.lower() for w in _WORD.findall(name)]
    return any(w in _SECRET_WORDS for w in words) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def secrets_of(settings: BaseModel) -> list[str]:
    """Every ``SecretStr`` value in the settings (nested ones too), as sent and as typed; short ones left out."""
    from pydantic import BaseModel, SecretStr

    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            for candidate in (raw, raw.strip(), raw.strip().removeprefix("0x")):
                if len(candidate) >= MIN_SECRET_LENGTH and candidate not in found:
                    found.append(candidate)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)

    walk(settings)
    return found
