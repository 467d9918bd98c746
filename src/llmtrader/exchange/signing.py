"""Request signing for AsterDEX: V3 EIP-712 (agent wallet) and the legacy V1 HMAC-SHA256.

The venue checks a signature against the exact query string or body it receives. So each ``*_signed_body``
function builds the string once, signs exactly those bytes, and returns them with ``&signature=…`` appended
last; the caller sends the returned string untouched (as the raw query or a form body), never a dict that an
HTTP library could re-encode. Parameters keep the caller's insertion order and are never sorted: the venue
accepts any order, and sorting would only open a gap between what is signed and what is sent. Every string is
encoded with ``urllib.parse.urlencode`` (``quote_plus``), as in the venue's own example.

eth_account is imported inside the functions that need it: the import takes most of a second, and
``llmtrader --help`` or a paper run should not pay for it.

Secrets (private keys, HMAC secrets) never appear in an exception message, an exception's context, or a repr.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

V3_MAINNET_CHAIN_ID: Final = 1666
V3_TESTNET_CHAIN_ID: Final = 714
V3_CHAIN_IDS: Final[Mapping[str, int]] = MappingProxyType(
    {"mainnet": V3_MAINNET_CHAIN_ID, "testnet": V3_TESTNET_CHAIN_ID}
)
V1_MAX_RECV_WINDOW_MS: Final = 60_000

_ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
_EIP712_TYPES: Final = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Message": [{"name": "msg", "type": "string"}],
}
# Names the signing functions append themselves; a caller passing one too would send it twice.
_V3_RESERVED: Final = frozenset({"nonce", "user", "signer", "signature"})
_V1_RESERVED: Final = frozenset({"recvWindow", "timestamp", "signature"})
_KEY_PATTERN: Final = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64}")
# Deliberately says nothing about the value: it is a secret.
_BAD_KEY: Final = "the private key is malformed: expected 32 bytes as 64 hex digits, optionally 0x-prefixed"


def _wall_us() -> int:
    return time.time_ns() // 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=8)  # deriving the account from the key costs ~2 ms per request
def _local_account(private_key: str) -> LocalAccount:
    from eth_account import Account

    if _KEY_PATTERN.fullmatch(private_key) is None:
        raise ValueError(_BAD_KEY)
    try:
        account: LocalAccount | None = Account.from_key(bytes.fromhex(private_key[-64:]))
    except ValueError:  # zero, or not below the curve order
        account = None
    # Raised outside the except block so that no chained exception rides along with it.
    if account is None:
        raise ValueError(_BAD_KEY)
    return account


def _v3_typed_data(message: str, chain_id: int) -> dict[str, Any]:
    return {
        "types": _EIP712_TYPES,
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": _ZERO_ADDRESS,
        },
        "message": {"msg": message},
    }


def _check_reserved(params: Sequence[tuple[str, str]], reserved: frozenset[str]) -> None:
    clash = sorted({name for name, _ in params} & reserved)
    if clash:
        raise ValueError(f"parameters {clash} are added by the signer; do not pass them")


def signer_address(private_key: str) -> str:
    """The checksummed address of a private key; ValueError (without the key) if it is malformed."""
    return _local_account(private_key).address


def v3_signature(message: str, private_key: str, chain_id: int = V3_MAINNET_CHAIN_ID) -> str:
    """The V3 EIP-712 signature of ``message`` as ``0x`` + 130 hex digits (r‖s‖v, v = 27 or 28)."""
    from eth_account.messages import encode_typed_data

    signable = encode_typed_data(full_message=_v3_typed_data(message, chain_id))
    signed = _local_account(private_key).sign_message(signable)
    # HexBytes.hex() lost its 0x prefix in hexbytes 1.0; the venue's examples send it.
    return "0x" + bytes(signed.signature).hex()


def v3_signed_body(
    params: Sequence[tuple[str, str]],
    *,
    user: str,
    signer: str,
    private_key: str,
    nonce: int,
    chain_id: int,
) -> str:
    """The V3 request string: ``params``, ``nonce``, ``user``, ``signer``, then ``&signature=0x…`` over all before it.

    The signature covers exactly the bytes before ``&signature=``, so send the result as it is. ``user`` and
    ``signer`` are sent as given (their letter case is part of what is signed).
    """
    _check_reserved(params, _V3_RESERVED)
    signed = urlencode([*params, ("nonce", str(nonce)), ("user", user), ("signer", signer)])
    return f"{signed}&signature={v3_signature(signed, private_key, chain_id)}"


def v1_signature(total_params: str, secret: str) -> str:
    """The V1 signature: hex HMAC-SHA256 of the query string followed by the body."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def v1_signed_body(
    params: Sequence[tuple[str, str]],
    *,
    secret: str,
    timestamp_ms: int,
    recv_window_ms: int = 5000,
) -> str:
    """The V1 request string: ``params``, ``recvWindow``, ``timestamp``, then ``&signature=`` over all before it.

    Send the whole string in one place (query or body) as it is: V1 signs the query and body concatenated.
    """
    if not 0 < recv_window_ms <= V1_MAX_RECV_WINDOW_MS:
        raise ValueError(f"recvWindow must be 1..{V1_MAX_RECV_WINDOW_MS} ms, not {recv_window_ms}")
    _check_reserved(params, _V1_RESERVED)
    signed = urlencode([*params, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))])
    return f"{signed}&signature={v1_signature(signed, secret)}"


class NonceSource:
    """Strictly increasing microsecond V3 nonces for one signer, safe to share between threads.

    The venue rejects a reused nonce and, once it holds its last 100, any nonce below the oldest of them, so
    the next nonce is never below the previous one plus one, even if the clock or the offset steps back.
    Keep one source per signer for the life of the process.
    """

    def __init__(self, now_us: Callable[[], int] = _wall_us) -> None:
        self._now_us = now_us
        self._lock = threading.Lock()
        self._offset_us = 0
        self._last = 0

    @property
    def offset_ms(self) -> int:
        """The current correction from local to server time, in milliseconds."""
        with self._lock:
            return self._offset_us // 1000

    def set_offset_ms(self, server_ms: int, local_ms: int) -> None:
        """Follow the server's clock: ``local_ms`` is the local time at which the server read ``server_ms``."""
        with self._lock:
            self._offset_us = (server_ms - local_ms) * 1000

    def next(self) -> int:
        """A nonce greater than every one this source has given: server-corrected epoch microseconds."""
        with self._lock:
            self._last = max(self._now_us() + self._offset_us, self._last + 1)
            return self._last
