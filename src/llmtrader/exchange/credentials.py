"""AsterDEX credentials: a V3 API (agent) wallet or a legacy V1 HMAC key; their reprs never show a secret."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class V3Credentials:
    """An API (agent) wallet: the main wallet ``user``, the agent ``signer`` and the signer's key."""

    user: str
    signer: str
    private_key: str

    def __repr__(self) -> str:  # the key must never reach a log or an error message
        return f"V3Credentials(user={self.user!r}, signer={self.signer!r}, private_key='**********')"


@dataclass(frozen=True)
class V1Credentials:
    """A legacy API key and its HMAC secret."""

    api_key: str
    secret: str

    def __repr__(self) -> str:
        return "V1Credentials(api_key='**********', secret='**********')"


Credentials = V3Credentials | V1Credentials
