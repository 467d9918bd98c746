"""The fake AsterDEX venue itself, over plain httpx, with signatures computed here (eth_account, hmac).

The product's client is tested against this fake, so the fake must hold the venue's rules: these tests pin
the ones the client relies on (authentication, nonces, filters, fills, faults, time paging).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from tests.fakes.aster import FakeAster, recover_signer, typed_message

# The signing vector of the reference (section 2.1): key, its address, one message and its signature.
VECTOR_KEY = "0xff3bdd43534543d421f05aec535965b5050ad6ac15345435345435453495e771"
VECTOR_ADDRESS = "0xb67f9a782d3678a0bac50c22eacbb4924fe9d4cf"
VECTOR_MSG = f"nonce=1776872065013000&user={VECTOR_ADDRESS}&signer={VECTOR_ADDRESS}"
VECTOR_SIG = (
    "0x940797301fe43103c0b059e3ec1d768bd82de10cfc4440a397e921f50b79b17e"
    "3ed0e9a1261bd4514e35ddd72c5bec9fe8e9ddac1a73d2c21d25e2eec1b7293c1b"
)
USER = "0x" + "ab" * 20
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def v3_sign(msg: str, key: str = VECTOR_KEY, chain_id: int = 1666) -> str:
    signed = Account.sign_message(encode_typed_data(full_message=typed_message(msg, chain_id)), private_key=key)
    return "0x" + bytes(signed.signature).hex()


class V3:
    """A minimal V3 caller: business params + nonce/user/signer, urlencoded, signed, sent as signed."""

    def __init__(self, fake: FakeAster, http: httpx.Client) -> None:
        self.fake, self.http, self.last_nonce = fake, http, 0

    def signed(self, params: dict[str, Any], nonce: int | None = None) -> str:
        if nonce is None:
            nonce = self.last_nonce = max(self.fake.clock() * 1000, self.last_nonce + 1)
        msg = urlencode({**params, "nonce": nonce, "user": USER, "signer": VECTOR_ADDRESS})
        return f"{msg}&signature={v3_sign(msg)}"

    def send(self, method: str, path: str, raw: str) -> httpx.Response:
        if method == "GET":
            return self.http.get(f"{path}?{raw}")
        return self.http.request(method, path, content=raw, headers=FORM)

    def __call__(self, method: str, path: str, **params: Any) -> httpx.Response:
        return self.send(method, path, self.signed(params))


@pytest.fixture
def venue(fake_aster: FakeAster) -> Iterator[tuple[FakeAster, V3]]:
    fake_aster.add_v3_account(USER, VECTOR_ADDRESS)
    fake_aster.set_mark("BTCUSDT", "100000")
    fake_aster.set_mark("ETHUSDT", "2000")
    with httpx.Client(base_url=fake_aster.base_url, timeout=5) as http:
        yield fake_aster, V3(fake_aster, http)


def market(**kw: Any) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01", **kw}


def test_the_fake_recovers_the_reference_vector() -> None:
    assert recover_signer(VECTOR_MSG, VECTOR_SIG).lower() == VECTOR_ADDRESS
    assert v3_sign(VECTOR_MSG) == VECTOR_SIG


def test_signed_market_order_fills_at_the_mark(venue: tuple[FakeAster, V3]) -> None:
    fake, call = venue
    reply = call("POST", "/fapi/v3/order", **market(newClientOrderId="e-1", newOrderRespType="RESULT"))
    assert reply.status_code == 200, reply.text
    order = reply.json()
    assert order["status"] == "FILLED" and order["avgPrice"] == "100000" and order["executedQty"] == "0.01"
    assert order["positionSide"] == "BOTH" and order["reduceOnly"] is False and order["newChainData"]["hash"]
    assert int(reply.headers["X-MBX-USED-WEIGHT-1M"]) >= 1 and reply.headers["X-MBX-ORDER-COUNT-1M"] == "1"
    assert fake.positions(USER) == {"BTCUSDT": Decimal("0.01")}
    assert fake.balance(USER) == Decimal(10_000) - Decimal("0.4")  # taker fee on 1000 USDT
    assert fake.applied_orders("e-1") == 1 and len(fake.nonces[VECTOR_ADDRESS]) == 1

    rows = {r["symbol"]: r for r in call("GET", "/fapi/v3/positionRisk").json()}
    assert rows["BTCUSDT"]["positionAmt"] == "0.01" and rows["BTCUSDT"]["entryPrice"] == "100000"
    assert rows["ETHUSDT"]["positionAmt"] == "0"  # every symbol, empty positions included
    trades = call("GET", "/fapi/v3/userTrades", symbol="BTCUSDT").json()
    assert [(t["side"], t["qty"], t["commission"]) for t in trades] == [("BUY", "0.01", "0.4")]

    # A close at a higher mark realizes the gain; ACK (the default) answers NEW as the venue does.
    fake.set_mark("BTCUSDT", "101000")
    ack = call("POST", "/fapi/v3/order", **market(side="SELL", reduceOnly="true")).json()
    assert ack["status"] == "NEW" and fake.orders[ack["orderId"]].status == "FILLED"
    assert fake.positions(USER) == {}
    assert fake.balance(USER) == Decimal(10_000) + 10 - Decimal("0.4") - Decimal("0.404")


def test_tampered_body_and_replayed_nonce_are_rejected(venue: tuple[FakeAster, V3]) -> None:
    fake, call = venue
    raw = call.signed(market(newClientOrderId="t-1"))
    tampered = call.send("POST", "/fapi/v3/order", raw.replace("quantity=0.01", "quantity=0.02"))
    assert tampered.status_code == 400
    assert tampered.json() == {"code": -1022, "msg": "Signature for this request is not valid."}
    assert fake.applied_orders("t-1") == 0 and len(fake.order_posts("t-1")) == 1

    assert call.send("POST", "/fapi/v3/order", raw).status_code == 200
    replay = call.send("POST", "/fapi/v3/order", raw)
    assert replay.json() == {"code": -4225, "msg": "Nonce Expired"} and fake.applied_orders("t-1") == 1
    stale = call.signed({}, nonce=(fake.clock() - 61_000) * 1000)
    assert call.send("GET", "/fapi/v3/balance", stale).json()["code"] == -4225


def test_v1_hmac_and_its_timestamp_window(venue: tuple[FakeAster, V3]) -> None:
    fake, _ = venue
    fake.add_v1_key("k1", "s3cret")
    fake.set_balance("k1", 1234)

    def v1(timestamp: int, key: str = "k1") -> httpx.Response:
        query = urlencode({"timestamp": timestamp, "recvWindow": 5000})
        signature = hmac.new(b"s3cret", query.encode(), hashlib.sha256).hexdigest()
        return httpx.get(
            f"{fake.base_url}/fapi/v2/balance?{query}&signature={signature}", headers={"X-MBX-APIKEY": key}
        )

    assert v1(fake.clock()).json()[0]["balance"] == "1234"
    assert v1(fake.clock() - 6_000).json() == {
        "code": -1021,
        "msg": "Timestamp for this request is outside of the recvWindow.",
    }
    assert v1(fake.clock(), key="nope").json()["code"] == -2015


def test_filters_and_margin_are_enforced(venue: tuple[FakeAster, V3]) -> None:
    fake, call = venue

    def code(**params: Any) -> int:
        return int(call("POST", "/fapi/v3/order", **params).json()["code"])

    limit = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}
    assert code(**limit, price="99000.05") == -1111  # tick 0.1
    assert code(**market(quantity="0.0015")) == -1111  # step 0.001
    assert code(**market(symbol="ETHUSDT", quantity="0.001")) == -4164  # 2 USDT < 5
    assert code(**limit, price="106000") == -4016  # above mark x 1.05
    assert code(**market(side="SELL", reduceOnly="true")) == -2022  # no position
    assert code(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="100500", closePosition="true") == -2021
    assert code(**market(newClientOrderId="x" * 37)) == -4015
    fake.set_balance(USER, 10)
    assert code(**market()) == -2019  # 1000 USDT at 20x needs 50
    assert fake.orders == {}


def test_limit_rests_then_fills_when_the_mark_reaches_it(venue: tuple[FakeAster, V3]) -> None:
    fake, call = venue
    limit = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}
    assert call("POST", "/fapi/v3/order", **limit, price="99000", newClientOrderId="l-1").json()["status"] == "NEW"
    assert call("POST", "/fapi/v3/order", **limit, price="99000", newClientOrderId="l-1").json()["code"] == -4116
    assert [o.client_order_id for o in fake.open_orders(USER)] == ["l-1"]
    fake.set_mark("BTCUSDT", "98900")
    got = call("GET", "/fapi/v3/order", symbol="BTCUSDT", origClientOrderId="l-1").json()
    assert got["status"] == "FILLED" and got["avgPrice"] == "99000"
    assert call("DELETE", "/fapi/v3/order", symbol="BTCUSDT", origClientOrderId="l-1").json()["code"] == -2011
    assert call("GET", "/fapi/v3/order", symbol="BTCUSDT", origClientOrderId="nope").json() == {
        "code": -2013,
        "msg": "Order does not exist.",
    }


def test_reject_order_then_a_stop_that_closes_the_position(venue: tuple[FakeAster, V3]) -> None:
    fake, call = venue
    assert call("POST", "/fapi/v3/order", **market(newOrderRespType="RESULT")).json()["status"] == "FILLED"
    fake.reject_order({"type": "STOP_MARKET"}, -2019, "Margin is insufficient.")
    stop = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "stopPrice": "99000", "closePosition": "true"}
    rejected = call("POST", "/fapi/v3/order", **stop, newClientOrderId="sl-1")
    assert rejected.status_code == 400 and rejected.json()["code"] == -2019
    assert fake.applied_orders("sl-1") == 0 and len(fake.order_posts("sl-1")) == 1

    assert call("POST", "/fapi/v3/order", **stop, newClientOrderId="sl-1").json()["status"] == "NEW"
    fake.set_mark("BTCUSDT", "98000")
    order = next(o for o in fake.orders.values() if o.client_order_id == "sl-1")
    assert (order.status, order.orig_type, order.avg_price) == ("FILLED", "STOP_MARKET", Decimal("99000"))
    assert fake.positions(USER) == {} and fake.fills(USER)[-1].realized_pnl == Decimal("-10")


def test_faults_after_apply_leave_the_order_in_place(venue: tuple[FakeAster, V3]) -> None:
    fake, call = venue
    fake.fail("/fapi/v3/order", 503, code=-1006, msg="Unexpected response", method="POST", after_apply=True)
    reply = call("POST", "/fapi/v3/order", **market(newClientOrderId="f-1"))
    assert reply.status_code == 503 and reply.json()["code"] == -1006
    found = call("GET", "/fapi/v3/order", symbol="BTCUSDT", origClientOrderId="f-1").json()
    assert found["status"] == "FILLED" and fake.applied_orders("f-1") == 1

    fake.stall("/fapi/v3/order", 0.3, method="POST")
    with pytest.raises(httpx.ReadTimeout):
        call.http.request(
            "POST", "/fapi/v3/order", content=call.signed(market(newClientOrderId="f-2")), headers=FORM, timeout=0.1
        )
    assert fake.applied_orders("f-2") == 1


def test_klines_and_funding_page_by_time(fake_aster: FakeAster) -> None:
    with httpx.Client(base_url=fake_aster.base_url) as http:
        newest = http.get("/fapi/v3/klines", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 10}).json()
        start, end = newest[2][0], newest[5][0]
        window = {"symbol": "BTCUSDT", "interval": "1h", "startTime": start, "endTime": end}
        assert [r[0] for r in http.get("/fapi/v3/klines", params=window).json()] == [r[0] for r in newest[2:6]]
        capped = http.get("/fapi/v3/klines", params={**window, "limit": 2}).json()
        assert [r[0] for r in capped] == [start, newest[3][0]]
        # Never beyond the open candle, and no 1m data: -1120.
        late = http.get("/fapi/v3/klines", params={**window, "endTime": end + 10 * 86_400_000}).json()
        assert late[-1][0] == newest[-1][0] == fake_aster.open_candle("BTCUSDT", "1h")[0]
        assert http.get("/fapi/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}).json()["code"] == -1120

        latest = http.get("/fapi/v3/fundingRate", params={"symbol": "BTCUSDT", "limit": 5}).json()
        times = [r["fundingTime"] for r in latest]
        assert times == sorted(times) and times[-1] <= fake_aster.clock() and len(times) == 5
        page = http.get("/fapi/v3/fundingRate", params={"symbol": "BTCUSDT", "startTime": times[1], "limit": 2})
        assert [r["fundingTime"] for r in page.json()] == times[1:3]
        assert set(latest[0]) == {"symbol", "fundingRate", "fundingTime", "markPrice"}
        info = http.get("/fapi/v3/fundingInfo", params={"symbol": "BTCUSDT"}).json()
        assert [(i["symbol"], i["fundingIntervalHours"]) for i in info] == [("BTCUSDT", 8)]
