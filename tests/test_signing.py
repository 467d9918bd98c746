"""Request signing against published vectors, and the nonce source under threads and clock corrections.

V3 vectors: every case of nautilus_trader's ``crates/adapters/aster/test_data/signing_vectors.json`` (commit 3b22ded),
also quoted in section 2.1 of ../shared/reference/asterdex-api.md. V1 vector: the venue's V1 docs (section 2.4).
eth_account signs deterministically (RFC 6979), so each signature must match byte for byte.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from llmtrader.exchange.signing import (
    V3_CHAIN_IDS,
    NonceSource,
    signer_address,
    v1_signature,
    v1_signed_body,
    v3_signature,
    v3_signed_body,
)

# A test-only key published with the vectors; it holds nothing.
KEY = "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"
ADDRESS = "0xb67f9a782d3678a0bac50c22eacbb4924fe9d4cf"
ADDRESS_CHECKSUMMED = "0xb67f9a782D3678a0BAC50C22eacbb4924Fe9D4cF"
TAIL = f"user={ADDRESS}&signer={ADDRESS}"
BUILDER = "builder=0x1F5877C19e3777Cfd15F9d57253eA4aA5254Ec39&feeRate=0.001"

# (label, chain id, signed string, signature)
V3_VECTORS = [
    (
        "createOrder limit sell",
        1666,
        f"nonce=1777576052926000&{TAIL}&symbol=ASTERUSDT&side=SELL&type=LIMIT&quantity=10&price=1&timeInForce=GTC&{BUILDER}",
        "0xe05f62222f2085b7ce86a88a4c4a57d436dd365192ad016b230bb9705de1ce5e"
        "0f5804332c317ba85c6aa55328defbe54382a1b27ee48e0d8bd82647c625709e1b",
    ),
    (
        "createOrder limit buy",
        1666,
        f"nonce=1777576052929000&{TAIL}&symbol=ASTERUSDT&side=BUY&type=LIMIT&quantity=10&price=0.7&timeInForce=GTC&{BUILDER}",
        "0xe15d9e06fca66f9cdf69bc71779ad84948ef364719b005e2690632a3fcdf5aab"
        "61567383dafb0796c428496801ac693f28903cea24d10c5b6f742286d226b4e81c",
    ),
    (
        "createOrder market buy",
        1666,
        f"nonce=1777576052934000&{TAIL}&symbol=ASTERUSDT&side=BUY&type=MARKET&quantity=10&{BUILDER}",
        "0xb16d40eb4a1bdde74afca53c220a981b071fbb1dcdf13c5fe7e91eb945296ce8"
        "5634061f04a856cd81a4379ae4bba27846953c1a4af59a5f6fbdd2935383df751b",
    ),
    (
        "cancelOrder by orderId",
        1666,
        f"symbol=BTCUSDT&orderId=123&nonce=1776835698495000&{TAIL}",
        "0x58c6ef7cdcfc73e13433bea7ad34e76f74c6c17e5856bc43acbc4178cde4d4c2"
        "225672e536c3bb40c824107c16b338390696c4cbde8c054410b3c84293a52b6e1b",
    ),
    (
        "cancelOrder by origClientOrderId",
        1666,
        f"symbol=BTCUSDT&origClientOrderId=123&nonce=1776835698498000&{TAIL}",
        "0x1627c2ef1e7ca140d189582d790c044163c3af4541cf82dd0ff253e2712a6d35"
        "528d7eb7c5dc3c186dc421faf6b8d481a088ba3e08149a8b0f7de5192b48c9791c",
    ),
    (
        "cancelAllOrders",
        1666,
        f"symbol=BTCUSDT&nonce=1776835698486000&{TAIL}",
        "0x628b33a6b2807325a7631d754385fb169bf6d8a8fe10643ecdddad68de5544dc"
        "37aadd801a61f08d8674df6f4993897f7c682f859e77feac470a046c2cd8ee7f1b",
    ),
    (
        "fetchBalance",
        1666,
        f"nonce=1776872065013000&{TAIL}",
        "0x940797301fe43103c0b059e3ec1d768bd82de10cfc4440a397e921f50b79b17e"
        "3ed0e9a1261bd4514e35ddd72c5bec9fe8e9ddac1a73d2c21d25e2eec1b7293c1b",
    ),
    (
        "fetchOrder",
        1666,
        f"symbol=BTCUSDT&orderId=1917641&nonce=1776835698444000&{TAIL}",
        "0x707fcac497bdd8bb33e3e34c8839925336867907d958e82b764f6249ca097a68"
        "6416c812030dad5bf94f34b697a810e8373b86073db8753a0643403dfe8c8a341b",
    ),
    (
        "fetchOpenOrders",
        1666,
        f"symbol=BTCUSDT&nonce=1776835698463000&{TAIL}",
        "0x902f5d2d0a5f10bc2c3acc0499f56d3af79e49d9481006f11380f52debf2dc68"
        "7e2520abe1ac0748704dedb36a2cd466ba83cdf1da49b9b17ce82aa6ea77064d1c",
    ),
    (
        "fetchPositions",
        1666,
        f"nonce=1776859493009000&{TAIL}",
        "0xb64323e751356f4bdb44eed302e0de347848025c69b331bafe7626cfd2063fc5"
        "69c9c82175ec26ddd113c77f0f67af24740a18ad19bd0a907f56830cc82422051c",
    ),
    (
        "fetchTradingFee",
        1666,
        f"symbol=BTCUSDT&nonce=1776835698438000&{TAIL}",
        "0x597affdca0156279cabdadb36c2a256cff68fc4526f07fa7060d21f049651afa"
        "3ed616706963a28469d7fdf15b14cf29372f6eea9aae81f58e7aecf7422aac601c",
    ),
    (
        "fetchMyTrades",
        1666,
        f"symbol=BTCUSDT&startTime=1750400269888&limit=1&nonce=1776835698405000&{TAIL}",
        "0x995176ccb2af12a7332a21f6993e36245d34c7d227938d433ded316a09598b20"
        "1fb31b442908002d9d37faec63a766a72cbd714b4a010cfc12dd973edc6a65fc1b",
    ),
    (
        "fetchPositionMode",
        1666,
        f"nonce=1776835698423000&{TAIL}",
        "0x428d1aeffbdfa8972b526d81bca470247e10f89234682c9b5944c9412185b559"
        "49ecb40f072806e9c59e8f7f2569379d8385e7e33cd525b3677178333bf8c9561c",
    ),
    (
        "cancelOrders percent-encoded list",
        1666,
        f"symbol=ETHUSDT&orderIdList=%5B17338441758%5D&nonce=1776804445707000&{TAIL}",
        "0xd9815a0c53f5c2172f10a2445301cdfd440fd9ab95e1e2079ecb8cb46af56647"
        "2b01af3e725f7f17ece0285feb90748ca38cda03385f95ca4af073a56d956c551c",
    ),
    (
        "testnet chain id domain separation",
        714,
        f"nonce=1776872065013000&{TAIL}",
        "0x4edd8c8693cf3f154a92a3a584d72557cf3e34ca04e607907a4a1c643149d087"
        "3978b00ca945525b4c10bb7bc10ba683f45c0b1a97807cd784db1c1a2a6bc8b61c",
    ),
]
# The vectors whose business parameters come first, in the order v3_signed_body writes.
APPENDED_LAST = [v for v in V3_VECTORS if v[2].endswith(TAIL) and not v[2].startswith("nonce=")]

V1_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
V1_QUERY = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
)
V1_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"

MALFORMED_KEYS = [
    "0x1234",  # too short
    KEY + "00",  # too long
    "0x" + "g" * 64,  # not hex
    " " + KEY,  # stray whitespace
    KEY + "\n",
    "0x" + "00" * 32,  # zero is no key
    "0x" + "ff" * 32,  # above the curve order
    "",
]


def spec_typed_data(message: str, chain_id: int) -> dict[str, Any]:
    """The typed data as section 2.1 of the reference writes it, built apart from the module under test."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Message": [{"name": "msg", "type": "string"}],
        },
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x0000000000000000000000000000000000000000",
        },
        "message": {"msg": message},
    }


def recover(message: str, signature: str, chain_id: int) -> str:
    signable = encode_typed_data(full_message=spec_typed_data(message, chain_id))
    return str(Account.recover_message(signable, signature=bytes.fromhex(signature.removeprefix("0x"))))


class FakeClock:
    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def test_chain_ids() -> None:
    assert dict(V3_CHAIN_IDS) == {"mainnet": 1666, "testnet": 714}


def test_signer_address_of_the_vector_key() -> None:
    assert signer_address(KEY) == ADDRESS_CHECKSUMMED
    assert signer_address(KEY.removeprefix("0x")) == ADDRESS_CHECKSUMMED
    assert signer_address(KEY.upper().replace("0X", "0x")) == ADDRESS_CHECKSUMMED


@pytest.mark.parametrize(("label", "chain_id", "message", "signature"), V3_VECTORS, ids=[v[0] for v in V3_VECTORS])
def test_v3_signature_matches_vector(label: str, chain_id: int, message: str, signature: str) -> None:
    got = v3_signature(message, KEY, chain_id)
    assert got == signature
    assert len(got) == 132
    assert got[-2:] in ("1b", "1c")


def test_v3_signature_defaults_to_mainnet() -> None:
    _, _, message, signature = V3_VECTORS[6]
    assert v3_signature(message, KEY) == signature


def test_v3_digest_vector() -> None:
    """The reference's digest for the balance vector, signed raw, gives the same signature as the typed data."""
    digest = bytes.fromhex("3008174b10b4cb5095b22099f3d4bb5d1f946510052cb62085409b7fd7945140")
    raw = Account.unsafe_sign_hash(digest, KEY)
    assert "0x" + bytes(raw.signature).hex() == v3_signature(f"nonce=1776872065013000&{TAIL}", KEY, 1666)


@pytest.mark.parametrize(
    ("label", "chain_id", "message", "signature"), APPENDED_LAST, ids=[v[0] for v in APPENDED_LAST]
)
def test_v3_signed_body_reproduces_vector(label: str, chain_id: int, message: str, signature: str) -> None:
    pairs = parse_qsl(message, keep_blank_values=True)
    names = [name for name, _ in pairs]
    business = pairs[: names.index("nonce")]
    nonce = int(dict(pairs)["nonce"])
    body = v3_signed_body(business, user=ADDRESS, signer=ADDRESS, private_key=KEY, nonce=nonce, chain_id=chain_id)
    assert body == f"{message}&signature={signature}"


def test_all_vectors_checked() -> None:
    assert len(V3_VECTORS) == 15
    assert [v[0] for v in APPENDED_LAST] == [
        "cancelOrder by orderId",
        "cancelOrder by origClientOrderId",
        "cancelAllOrders",
        "fetchOrder",
        "fetchOpenOrders",
        "fetchTradingFee",
        "fetchMyTrades",
        "cancelOrders percent-encoded list",
    ]


def test_v3_signed_body_order_encoding_and_recovery() -> None:
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("newClientOrderId", "a b!*'()/~"), ("quantity", "0.001")]
    body = v3_signed_body(
        params, user="0xUser", signer=ADDRESS_CHECKSUMMED, private_key=KEY, nonce=1_700_000_000_000_001, chain_id=714
    )
    signed, _, signature = body.rpartition("&signature=")
    # Insertion order, not sorted; quote_plus; nonce, user, signer after the business params; signature last.
    assert signed == (
        "symbol=BTCUSDT&side=BUY&newClientOrderId=a+b%21%2A%27%28%29%2F~&quantity=0.001"
        f"&nonce=1700000000000001&user=0xUser&signer={ADDRESS_CHECKSUMMED}"
    )
    assert body.count("&signature=") == 1
    assert len(signature) == 132
    assert signature == v3_signature(signed, KEY, 714)
    assert recover(signed, signature, 714) == ADDRESS_CHECKSUMMED
    # The chain id is part of what is signed: the same bytes do not verify on the other network.
    assert recover(signed, signature, 1666) != ADDRESS_CHECKSUMMED


def test_v3_signed_body_without_business_params() -> None:
    body = v3_signed_body([], user=ADDRESS, signer=ADDRESS, private_key=KEY, nonce=1776872065013000, chain_id=1666)
    assert body == f"{V3_VECTORS[6][2]}&signature={V3_VECTORS[6][3]}"


@pytest.mark.parametrize("name", ["nonce", "user", "signer", "signature"])
def test_v3_signed_body_refuses_params_it_adds(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        v3_signed_body([(name, "1")], user=ADDRESS, signer=ADDRESS, private_key=KEY, nonce=1, chain_id=1666)


def test_v1_signature_matches_doc_vector() -> None:
    assert v1_signature(V1_QUERY, V1_SECRET) == V1_SIGNATURE


def test_v1_signed_body_matches_doc_vector() -> None:
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("quantity", "1"),
        ("price", "9000"),
        ("timeInForce", "GTC"),
    ]
    body = v1_signed_body(params, secret=V1_SECRET, timestamp_ms=1591702613943, recv_window_ms=5000)
    assert body == f"{V1_QUERY}&signature={V1_SIGNATURE}"
    assert v1_signed_body(params, secret=V1_SECRET, timestamp_ms=1591702613943) == body


@pytest.mark.parametrize("window", [0, -1, 60_001])
def test_v1_recv_window_bounds(window: int) -> None:
    with pytest.raises(ValueError, match="recvWindow"):
        v1_signed_body([], secret=V1_SECRET, timestamp_ms=1, recv_window_ms=window)


def test_v1_signed_body_refuses_params_it_adds() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        v1_signed_body([("timestamp", "1")], secret=V1_SECRET, timestamp_ms=1)


@pytest.mark.parametrize("bad", MALFORMED_KEYS)
def test_malformed_key_raises_without_echoing_it(bad: str) -> None:
    calls: list[Callable[[], str]] = [lambda: signer_address(bad), lambda: v3_signature("nonce=1", bad)]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        text = f"{info.value} {info.value!r}"
        assert "malformed" in str(info.value)
        if bad.strip():
            assert bad.strip() not in text
            assert bad.strip().removeprefix("0x")[:16] not in text
        assert info.value.__context__ is None
        assert info.value.__cause__ is None


def test_nonce_frozen_clock_still_increases() -> None:
    source = NonceSource(now_us=FakeClock(1_000_000))
    assert [source.next() for _ in range(3)] == [1_000_000, 1_000_001, 1_000_002]


def test_nonce_follows_clock_and_offset() -> None:
    clock = FakeClock(1_700_000_000_000_000)
    source = NonceSource(now_us=clock)
    assert source.next() == 1_700_000_000_000_000
    source.set_offset_ms(server_ms=1_700_000_000_500, local_ms=1_700_000_000_000)  # server 500 ms ahead
    assert source.offset_ms == 500
    assert source.next() == 1_700_000_000_500_000
    clock.now_us += 1_000
    assert source.next() == 1_700_000_000_501_000


def test_nonce_monotonic_after_backwards_offset() -> None:
    clock = FakeClock(1_700_000_000_000_000)
    source = NonceSource(now_us=clock)
    source.set_offset_ms(server_ms=1_700_000_002_000, local_ms=1_700_000_000_000)  # +2 s
    assert source.next() == 1_700_000_002_000_000
    source.set_offset_ms(server_ms=1_699_999_999_000, local_ms=1_700_000_000_000)  # -1 s: 3 s back
    assert source.offset_ms == -1000
    assert [source.next() for _ in range(3)] == [1_700_000_002_000_001, 1_700_000_002_000_002, 1_700_000_002_000_003]
    clock.now_us += 3_000_003  # the corrected clock reaches the last nonce: still one above it
    assert source.next() == 1_700_000_002_000_004
    clock.now_us += 10  # and passes it: the corrected clock again
    assert source.next() == 1_700_000_002_000_013


def test_nonce_monotonic_when_clock_steps_back() -> None:
    clock = FakeClock(5_000_000)
    source = NonceSource(now_us=clock)
    assert source.next() == 5_000_000
    clock.now_us = 4_000_000
    assert source.next() == 5_000_001


def test_nonce_default_clock_is_wall_microseconds() -> None:
    before = time.time_ns() // 1000
    nonce = NonceSource().next()
    after = time.time_ns() // 1000
    assert before <= nonce <= after


def test_nonce_unique_and_increasing_across_threads() -> None:
    source = NonceSource()
    threads, calls = 8, 1000
    results: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(out: list[int]) -> None:
        start.wait()
        for _ in range(calls):
            out.append(source.next())

    workers = [threading.Thread(target=work, args=(out,)) for out in results]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    everything = [nonce for out in results for nonce in out]
    assert len(everything) == threads * calls
    assert len(set(everything)) == threads * calls
    for out in results:
        assert all(a < b for a, b in itertools.pairwise(out))
    # The last nonce handed out is above every other one.
    assert source.next() > max(everything)
