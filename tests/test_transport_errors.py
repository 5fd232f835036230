"""Signaling failures end a call with one exact reason, quickly, and never leak the token.

Real aiohttp servers on 127.0.0.1 play broken agents; the caller side is the real CallSession
(its speech models are never touched: every call here fails before media connects).
"""

import contextlib
import json
import socket
import time

import pytest
from aiohttp import web
from aiortc import RTCSessionDescription

from callers.errors import CallFailed, ConfigError
from callers.loopback import candidate_addresses, is_loopback_url, keep_loopback_candidates
from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession
from callers.transport import Target, make_signaling

TOKEN_ENV = "CALLFLEET_TEST_WHIP_TOKEN"
TOKEN = "s3cret-whip-token-7f1d2c"  # a value that could only appear in output by leaking


@pytest.fixture(scope="module")
def persona():
    return resolve_persona("cooperative-john")


@contextlib.asynccontextmanager
async def serve(handler, path="/offer", methods=("POST",)):
    """An aiohttp server on a free 127.0.0.1 port; yields the URL of `path`."""
    app = web.Application()
    for method in methods:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, path + "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def place_call(persona, url, signaling="json-offer", **target_kwargs):
    session = CallSession(
        persona, 7, Target(url, signaling=signaling, **target_kwargs),
        models=CallerModels(stt=None, tts=None), call_id="t",
    )
    began = time.monotonic()
    record = await session.run()
    return record, time.monotonic() - began


def answer_with(status, text="", content_type="text/plain", headers=None):
    async def handler(request):
        await request.read()
        return web.Response(status=status, text=text, content_type=content_type,
                            headers=headers or {})

    return handler


# --- json-offer failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [(503, "signaling_http_503"), (404, "signaling_http_404")]
)
async def test_json_offer_http_error_fails_call_with_status_reason(persona, status, reason):
    async with serve(answer_with(status, "nope")) as url:
        record, took = await place_call(persona, url)
    assert record.status == "failed"
    assert record.failure_reason == reason
    assert took < 15
    assert record.call_id == "t" and record.target == url
    assert record.duration_s > 0
    # The offer was made on loopback only (local target): nothing else to leak.
    assert set(record.transport["local_candidates"]) == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html>this is not json</html>", "text/html"),
        (json.dumps({"type": "answer", "answer": "v=0"}), "application/json"),
        (json.dumps(["v=0"]), "application/json"),
        (json.dumps({"type": "answer", "sdp": "hello"}), "application/json"),
    ],
    ids=["garbage-text", "json-without-sdp", "json-not-an-object", "sdp-not-an-sdp"],
)
async def test_json_offer_unusable_answer_fails_call_as_bad_answer(persona, body, content_type):
    async with serve(answer_with(200, body, content_type)) as url:
        record, took = await place_call(persona, url)
    assert record.status == "failed"
    assert record.failure_reason == "signaling_bad_answer"
    assert record.failure_detail
    assert took < 15


async def test_unreachable_target_fails_call_as_unreachable(persona):
    port = closed_port()
    record, took = await place_call(persona, f"http://127.0.0.1:{port}/offer")
    assert record.status == "failed"
    assert record.failure_reason == "signaling_unreachable"
    assert f"127.0.0.1:{port}" in (record.failure_detail or "")
    assert took < 15


async def test_failed_call_record_is_plain_json(persona):
    async with serve(answer_with(503)) as url:
        record, _ = await place_call(persona, url)
    data = json.loads(json.dumps(record.to_dict()))
    assert data["status"] == "failed"
    assert data["failure_reason"] == "signaling_http_503"
    assert data["turns"] == [] and data["audio"] is None


# --- WHIP ---------------------------------------------------------------------------------


async def test_whip_201_without_location_fails_call_as_bad_answer(persona):
    async with serve(answer_with(201, "v=0\r\n", "application/sdp")) as url:
        record, took = await place_call(persona, url, signaling="whip")
    assert record.status == "failed"
    assert record.failure_reason == "signaling_bad_answer"
    assert "Location" in (record.failure_detail or "")
    assert took < 15


async def test_whip_http_error_fails_call_with_status_reason(persona):
    async with serve(answer_with(503)) as url:
        record, _ = await place_call(persona, url, signaling="whip")
    assert record.failure_reason == "signaling_http_503"


async def test_whip_sends_bearer_token_and_sdp_and_deletes_resource_without_leaking_it(
    persona, monkeypatch
):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    seen = []

    async def handler(request):
        body = await request.text()
        seen.append((request.method, request.path, request.headers.get("Authorization"),
                     request.headers.get("Content-Type"), body))
        if request.method == "DELETE":
            return web.Response(status=200)
        # A Location but a body that is not an SDP: fails after the resource exists.
        return web.Response(status=201, text="not an sdp", headers={"Location": "/offer/res-1"})

    async with serve(handler, methods=("POST", "DELETE")) as url:
        record, took = await place_call(persona, url, signaling="whip", token_env=TOKEN_ENV)

    assert record.failure_reason == "signaling_bad_answer"
    assert took < 15
    post, delete = seen
    assert post[0] == "POST" and post[2] == f"Bearer {TOKEN}"
    assert post[3].startswith("application/sdp")
    assert post[4].startswith("v=0")
    # Hang-up deletes the resource named by Location, with the same credentials.
    assert delete[:3] == ("DELETE", "/offer/res-1", f"Bearer {TOKEN}")
    assert TOKEN not in json.dumps(record.to_dict())


async def test_json_offer_also_sends_bearer_token(persona, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    auth = []

    async def handler(request):
        auth.append(request.headers.get("Authorization"))
        return web.Response(status=503)

    async with serve(handler) as url:
        record, _ = await place_call(persona, url, token_env=TOKEN_ENV)
    assert auth == [f"Bearer {TOKEN}"]
    assert TOKEN not in json.dumps(record.to_dict())


def test_target_with_unset_token_env_is_a_config_error(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    target = Target("https://agent.example/whip", signaling="whip", token_env=TOKEN_ENV)
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        target.token()
    monkeypatch.setenv(TOKEN_ENV, "")
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        target.token()


async def test_signaling_with_unset_token_env_raises_config_error_not_call_failed(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    # Nothing listens here: the error must come from the missing token, before any request.
    target = Target(f"http://127.0.0.1:{closed_port()}/whip", signaling="whip",
                    token_env=TOKEN_ENV)
    signaling = make_signaling(target)
    offer = RTCSessionDescription(sdp="v=0\r\n", type="offer")
    try:
        with pytest.raises(ConfigError) as info:
            await signaling.exchange(offer)
        assert not isinstance(info.value, CallFailed)
        assert TOKEN_ENV in str(info.value)
    finally:
        await signaling.hangup()


def test_unknown_signaling_is_a_config_error():
    with pytest.raises(ConfigError, match="json-offer or whip"):
        make_signaling(Target("http://127.0.0.1:1/x", signaling="sip"))


# --- loopback.py -------------------------------------------------------------------------

SDP = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2130706431 192.168.1.23 50000 typ host\r\n"
    "a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
    "a=candidate:3 1 udp 1694498815 203.0.113.9 50002 typ srflx raddr 0.0.0.0 rport 0\r\n"
    "a=candidate:4 1 udp 2130706431 127.0.0.2 50003 typ host\r\n"
    "a=candidate:5 1 udp 2130706431 abcd-1234.local 50004 typ host\r\n"
    "a=end-of-candidates\r\n"
)


def test_keep_loopback_candidates_drops_private_and_public_and_keeps_loopback():
    kept = keep_loopback_candidates(SDP)
    assert candidate_addresses(SDP) == [
        "192.168.1.23", "127.0.0.1", "203.0.113.9", "127.0.0.2", "abcd-1234.local",
    ]
    assert candidate_addresses(kept) == ["127.0.0.1", "127.0.0.2"]
    assert "192.168.1.23" not in kept and "203.0.113.9" not in kept and ".local" not in kept
    # Every non-candidate line survives, in order, with CRLF line ends.
    others = [line for line in SDP.split("\r\n") if not line.startswith("a=candidate")]
    assert [line for line in kept.split("\r\n") if not line.startswith("a=candidate")] == others
    assert kept.endswith("\r\n") and "\n" not in kept.replace("\r\n", "")


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/offer", True),
        ("http://127.8.9.10/offer", True),
        ("http://localhost:1234/whip", True),
        ("http://[::1]:8080/offer", True),
        ("https://agent.example.com/offer", False),
        ("http://192.168.1.23:8080/offer", False),
        ("http://10.0.0.5/offer", False),
        ("http://127.0.0.1.example.com/offer", False),
        ("not a url", False),
    ],
)
def test_is_loopback_url(url, local):
    assert is_loopback_url(url) is local
    assert Target(url).local is local


@pytest.mark.parametrize("body, headers, expected", [
    ({"sdp": "v=0\r\n", "type": "answer", "pc_id": "SmallWebRTCConnection#7"}, {},
     "SmallWebRTCConnection#7"),
    ({"sdp": "v=0\r\n", "type": "answer", "call_id": "abc"}, {"X-Call-Id": "hdr-1"}, "hdr-1"),
    ({"sdp": "v=0\r\n", "type": "answer", "call_id": "x" * 500}, {}, "x" * 128),
    ({"sdp": "v=0\r\n", "type": "answer", "call_id": {"nested": 1}}, {}, None),
])
async def test_json_offer_takes_the_agents_call_id_from_its_answer(body, headers, expected):
    async with serve(answer_with(200, json.dumps(body), "application/json", headers)) as url:
        signaling = make_signaling(Target(url))
        try:
            await signaling.exchange(RTCSessionDescription(sdp="v=0\r\n", type="offer"))
        finally:
            await signaling.hangup()
    assert signaling.agent_call_id == expected


async def test_whip_call_id_is_its_resource_location():
    async with serve(answer_with(201, "v=0\r\n", "application/sdp",
                                 {"Location": "/whip/sess-42"}), path="/whip",
                     methods=("POST", "DELETE")) as url:
        signaling = make_signaling(Target(url, signaling="whip"))
        try:
            await signaling.exchange(RTCSessionDescription(sdp="v=0\r\n", type="offer"))
        finally:
            await signaling.hangup()
    assert signaling.agent_call_id == "/whip/sess-42"
