"""Hostile or broken agents (issue 13, point 3): every one ends in a failed CallRecord with a
named reason (callers/errors.py), in bounded time: never a crash, a hang or a lost record.

Broken signaling and WebSocket agents are aiohttp (or raw asyncio) servers on 127.0.0.1; agents
that misbehave once media flows are real aiortc peers on loopback (ICE gathers only 127.0.0.1:
callers/loopback.py) behind a json-offer endpoint. The caller side is the real CallSession with
short SessionLimits and signaling timeouts, and a stub STT/TTS (tests/fake_transport.py). The
report's escaping of whatever the agent controls is checked in headless Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import re
import time

import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

from callers.agent_messages import MAX_MESSAGES, AgentMessages
from callers.errors import FAILURE_REASONS
from callers.loopback import keep_loopback_candidates, loopback_only
from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession, SessionLimits
from callers.transport import MAX_ANSWER_BYTES, MAX_REDIRECTS, Target, make_signaling
from evaluation.scoring import score_call
from evaluation.understanding import score_understanding
from tests.fake_transport import FakeSTT, FakeTTS, tone
from tests.test_transport_errors import answer_with, serve

TOKEN_ENV = "CALLFLEET_TEST_HOSTILE_TOKEN"
TOKEN = "hostile-t0ken-5e1f"
OFFER = RTCSessionDescription(sdp="v=0\r\n", type="offer")
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"  # an SDP, if not a usable one


@pytest.fixture(scope="module")
def persona():
    return resolve_persona("cooperative-john")


def named(reason: str | None) -> bool:
    """A reason from the fixed vocabulary (or one of its <prefix>_<code> families)."""
    return reason in FAILURE_REASONS or bool(
        reason and re.fullmatch(r"(signaling_http|ws_handshake_http|sip)_\d{3}", reason))


async def call(persona, url, *, limits=SessionLimits(connect_timeout_s=5.0), models=None,
               **target_kwargs):
    target_kwargs.setdefault("signaling_timeout_s", 2.0)
    session = CallSession(persona, 7, Target(url, **target_kwargs),
                          models or CallerModels(stt=None, tts=None), call_id="hostile",
                          limits=limits)
    began = time.monotonic()
    record = await asyncio.wait_for(session.run(), 60)  # a hang fails here, not the suite
    took = time.monotonic() - began
    data = json.loads(json.dumps(record.to_dict()))  # the record is plain JSON, always
    assert data["status"] == "failed" and named(data["failure_reason"]), data["failure_reason"]
    assert data["failure_reason"] != "caller_error", data["failure_detail"]
    return data, took


# --- signaling: what comes back is not an SDP answer ----------------------------------------

HTML = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(("signaling", "status", "headers", "reason"), [
    ("json-offer", 200, {}, "signaling_bad_answer"),
    ("whip", 201, {"Location": "/offer/r1"}, "signaling_bad_answer"),
    ("whip", 200, {}, "signaling_http_200"),  # WHIP answers 201 Created, nothing else
])
async def test_html_error_page_is_a_bad_answer(persona, signaling, status, headers, reason):
    async with serve(answer_with(status, HTML, "text/html", headers),
                     methods=("POST", "DELETE")) as url:
        record, took = await call(persona, url, signaling=signaling)
    assert record["failure_reason"] == reason and took < 5
    if reason == "signaling_bad_answer":
        assert "text/html" in record["failure_detail"]


@pytest.mark.parametrize("signaling", ["json-offer", "whip"])
@pytest.mark.parametrize("sdp", [
    "", "   ", "v=0\r\n", "v=0\r\ngarbage\r\n", "v=0\r\nm=audio x y z\r\n",
    SDP + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n",
], ids=["empty", "blank", "bare-v0", "garbage", "bad-m-line", "no-ice-credentials"])
async def test_empty_or_invalid_sdp_is_a_bad_answer(persona, signaling, sdp):
    if signaling == "json-offer":
        handler = answer_with(200, json.dumps({"type": "answer", "sdp": sdp}), "application/json")
    else:
        handler = answer_with(201, sdp, "application/sdp", {"Location": "/offer/r1"})
    async with serve(handler, methods=("POST", "DELETE")) as url:
        record, took = await call(persona, url, signaling=signaling)
    assert record["failure_reason"] == "signaling_bad_answer", record["failure_detail"]
    assert took < 5


@pytest.mark.parametrize("sdp", [None, 42, ["v=0"], {"v": 0}])
async def test_json_offer_sdp_field_of_the_wrong_type_is_a_bad_answer(persona, sdp):
    body = json.dumps({"type": "answer", "sdp": sdp})
    async with serve(answer_with(200, body, "application/json")) as url:
        record, _ = await call(persona, url)
    assert record["failure_reason"] == "signaling_bad_answer"


GIGANTIC = 50 * 1024 * 1024


def gigantic(*, declare_length: bool, content_type: str, status: int = 200):
    """A handler that answers with 50 MB, and notes how much of it it got to write."""
    sent = {"bytes": 0, "finished": False}
    chunk = b"x" * (256 * 1024)

    async def handler(request):
        await request.read()
        response = web.StreamResponse(status=status, headers={
            "Content-Type": content_type, "Location": "/offer/r1"})
        if declare_length:
            response.content_length = GIGANTIC
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):
            while sent["bytes"] < GIGANTIC:
                await response.write(chunk)
                sent["bytes"] += len(chunk)
            sent["finished"] = True
        return response

    return handler, sent


@pytest.mark.parametrize("signaling", ["json-offer", "whip"])
@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_gigantic_answer_is_cut_off_at_its_bound_not_read_whole(
        persona, signaling, declare_length):
    status, content_type = (200, "application/json") if signaling == "json-offer" else (
        201, "application/sdp")
    handler, sent = gigantic(declare_length=declare_length, content_type=content_type,
                             status=status)
    async with serve(handler, methods=("POST", "DELETE")) as url:
        record, took = await call(persona, url, signaling=signaling, signaling_timeout_s=10.0)
        await asyncio.sleep(0.2)  # let the server notice the caller has gone
    assert record["failure_reason"] == "signaling_bad_answer"
    assert f"larger than {MAX_ANSWER_BYTES} bytes" in record["failure_detail"]
    assert took < 5  # refused, not read to its timeout
    assert not sent["finished"] and sent["bytes"] < GIGANTIC // 2


async def test_answer_that_drips_a_byte_at_a_time_ends_at_the_signaling_timeout(persona):
    async def handler(request):
        await request.read()
        whip = request.headers.get("Content-Type") == "application/sdp"
        response = web.StreamResponse(status=201 if whip else 200, headers={
            "Content-Type": "application/json", "Location": "/offer/r1"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):
            for _ in range(100_000):  # forever, for a caller
                await response.write(b" ")
                await asyncio.sleep(0.05)
        return response

    for signaling in ("json-offer", "whip"):
        async with serve(handler, methods=("POST", "DELETE")) as url:
            record, took = await call(persona, url, signaling=signaling,
                                      signaling_timeout_s=1.0)
        assert record["failure_reason"] == "signaling_timeout", signaling
        assert 0.9 < took < 4, (signaling, took)


@contextlib.asynccontextmanager
async def raw_server(on_connect):
    """A plain TCP server on 127.0.0.1 (for HTTP no aiohttp server would send); yields a URL."""
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/offer"
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        writers.clear()


writers: set = set()


@pytest.mark.parametrize("behaviour", ["silent", "drip-headers"])
async def test_server_that_accepts_and_never_finishes_its_headers_times_out(persona, behaviour):
    async def on_connect(reader, writer):
        writers.add(writer)
        await reader.read(1024)
        with contextlib.suppress(ConnectionError):
            if behaviour == "drip-headers":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + (
                        b"a" * 10_000):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)
            await asyncio.sleep(3600)

    async with raw_server(on_connect) as url:
        record, took = await call(persona, url, signaling_timeout_s=1.0)
    assert record["failure_reason"] == "signaling_timeout"
    assert took < 4


async def test_malformed_http_response_is_a_bad_answer(persona):
    async def on_connect(reader, writer):
        writers.add(writer)
        await reader.read(1024)
        writer.write(b"HTTP/1.1 two hundred\r\n\x00\x01garbage\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3600)

    async with raw_server(on_connect) as url:
        record, took = await call(persona, url, signaling_timeout_s=2.0)
    assert record["failure_reason"] == "signaling_bad_answer", record["failure_detail"]
    assert took < 4


# --- signaling: redirects (307/308 followed, at most MAX_REDIRECTS; nothing else) -----------

async def test_307_and_308_are_followed_with_the_offer_and_the_token_stays_on_its_origin(
        monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    seen = []

    async def handler(request):
        seen.append((request.method, request.path, request.host.split(":")[0],
                     request.headers.get("Authorization"), await request.text()))
        port = request.host.split(":")[1]
        if request.path == "/offer":
            return web.Response(status=307, headers={"Location": "/offer/step"})
        if request.path == "/offer/step":  # another origin: localhost is not 127.0.0.1
            return web.Response(status=308,
                                headers={"Location": f"http://localhost:{port}/offer/final"})
        return web.json_response({"type": "answer", "sdp": SDP}, headers={"X-Call-Id": "c-1"})

    async with serve(handler) as url:
        signaling = make_signaling(Target(url, token_env=TOKEN_ENV))
        try:
            answer = await signaling.exchange(RTCSessionDescription(sdp=SDP, type="offer"))
        finally:
            await signaling.hangup()
    assert answer.sdp == SDP and signaling.agent_call_id == "c-1"
    assert [(m, p, h) for m, p, h, _, _ in seen] == [
        ("POST", "/offer", "127.0.0.1"), ("POST", "/offer/step", "127.0.0.1"),
        ("POST", "/offer/final", "localhost")]
    assert all(json.loads(body)["sdp"] == SDP for *_, body in seen)  # the offer, every hop
    assert [auth for _, _, _, auth, _ in seen] == [f"Bearer {TOKEN}"] * 2 + [None]


async def test_whip_resource_is_resolved_against_where_the_redirect_led():
    deleted = []

    async def handler(request):
        if request.method == "DELETE":
            deleted.append(request.path)
            return web.Response(status=200)
        if request.path == "/offer":
            return web.Response(status=307, headers={"Location": "/offer/media-2/whip"})
        return web.Response(status=201, text=SDP, content_type="application/sdp",
                            headers={"Location": "res-9"})

    async with serve(handler, methods=("POST", "DELETE")) as url:
        signaling = make_signaling(Target(url, signaling="whip"))
        try:
            await signaling.exchange(RTCSessionDescription(sdp=SDP, type="offer"))
        finally:
            await signaling.hangup()
    assert deleted == ["/offer/media-2/res-9"]


@pytest.mark.parametrize("signaling", ["json-offer", "whip"])
async def test_redirect_loop_ends_after_the_bound(persona, signaling):
    hits = []

    async def handler(request):
        hits.append(request.path)
        return web.Response(status=307, headers={"Location": request.path})

    async with serve(handler) as url:
        record, took = await call(persona, url, signaling=signaling)
    assert record["failure_reason"] == "signaling_bad_redirect"
    assert "a loop" in record["failure_detail"]
    assert len(hits) == MAX_REDIRECTS + 1 and took < 5


@pytest.mark.parametrize(("status", "location", "why"), [
    (302, "/offer/x", "only 307/308"),
    (301, "/offer/x", "only 307/308"),
    (303, "/offer/x", "only 307/308"),
    (307, None, "without a Location"),
    (307, "http://192.0.2.7/offer", "may not send us elsewhere"),  # TEST-NET: never contacted
    (307, "ftp://127.0.0.1/offer", "not http(s)"),
])
async def test_redirect_we_do_not_follow_is_named(persona, status, location, why):
    hits = []

    async def handler(request):
        hits.append(request.path)
        return web.Response(status=status, headers={"Location": location} if location else {})

    async with serve(handler) as url:
        record, took = await call(persona, url)
    assert record["failure_reason"] == "signaling_bad_redirect"
    assert why in record["failure_detail"] and took < 5
    assert hits == ["/offer"]


# --- signaling: the wrong Content-Type (the body decides; failures name it) -----------------

async def test_json_answer_with_a_wrong_content_type_is_still_read():
    body = json.dumps({"type": "answer", "sdp": SDP})
    async with serve(answer_with(200, body, "text/plain")) as url:
        signaling = make_signaling(Target(url))
        try:
            answer = await signaling.exchange(OFFER)
        finally:
            await signaling.hangup()
    assert answer.sdp == SDP


@pytest.mark.parametrize(("signaling", "status", "body", "content_type"), [
    ("json-offer", 200, SDP, "application/sdp"),  # a WHIP answer to a json-offer caller
    ("whip", 201, json.dumps({"type": "answer", "sdp": SDP}), "application/json"),
])
async def test_answer_in_the_other_signalings_format_is_a_bad_answer_naming_its_type(
        persona, signaling, status, body, content_type):
    async with serve(answer_with(status, body, content_type, {"Location": "/offer/r"}),
                     methods=("POST", "DELETE")) as url:
        record, _ = await call(persona, url, signaling=signaling)
    assert record["failure_reason"] == "signaling_bad_answer"
    assert content_type in record["failure_detail"]


# --- media: a real aiortc agent that misbehaves once connected -------------------------------

class AgentTrack(MediaStreamTrack):
    """The agent's audio: 20 ms frames at 48 kHz, paced like aiortc's own tracks."""

    kind = "audio"

    def __init__(self, pcm16k: np.ndarray | None, loop: bool = True) -> None:
        super().__init__()
        self.pcm = np.repeat(pcm16k, 3) if pcm16k is not None else np.zeros(960, np.int16)
        self.loop = loop
        self.pts = 0
        self.start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        await asyncio.sleep(max(0.0, self.start + self.pts / 48_000 - time.monotonic()))
        i = self.pts % self.pcm.size if self.loop else self.pts
        chunk = self.pcm[i:i + 960] if i < self.pcm.size else np.zeros(0, np.int16)
        chunk = np.concatenate([chunk, np.zeros(960 - chunk.size, np.int16)])
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, self.pts, fractions.Fraction(
            1, 48_000)
        self.pts += 960
        return frame


@contextlib.asynccontextmanager
async def webrtc_agent(audio: str, messages=(), then_hangup=False):
    """A json-offer agent on 127.0.0.1. audio: "none" (no track at all), "silence" (a track of
    silence, forever), "speech" (voice-like sound, forever), "short" (one second of it, then
    silence). It sends `messages` on the caller's data channel once it opens."""
    pcs: list[RTCPeerConnection] = []

    async def offer(request):
        body = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)

        @pc.on("datachannel")
        def on_channel(channel):
            async def send_all():
                for message in messages:
                    channel.send(message)
                    await asyncio.sleep(0)
                if then_hangup:
                    await asyncio.sleep(2.0)
                    channel.send(json.dumps({"event": "hangup"}))
            task = asyncio.ensure_future(send_all())
            pcs.append(task)  # kept (and cancelled) with the peer connections

        if audio != "none":
            speech = tone(1.0) if audio in ("speech", "short") else None
            pc.addTrack(AgentTrack(speech, loop=audio != "short"))
        with loopback_only():
            await pc.setRemoteDescription(RTCSessionDescription(
                sdp=keep_loopback_candidates(body["sdp"]), type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"type": "answer", "sdp": pc.localDescription.sdp})

    try:
        async with serve(offer) as url:
            yield url
    finally:
        for item in pcs:
            if isinstance(item, RTCPeerConnection):
                await asyncio.wait_for(item.close(), 5)
            else:
                item.cancel()


def stub_models():
    return CallerModels(stt=FakeSTT(), tts=FakeTTS())


@pytest.mark.parametrize("audio", ["none", "silence"])
async def test_agent_that_connects_and_never_speaks_is_no_agent_audio(persona, audio):
    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=1.5, max_call_s=20.0)
    async with webrtc_agent(audio) as url:
        record, took = await call(persona, url, limits=limits, models=stub_models())
    assert record["failure_reason"] == "no_agent_audio"
    assert set(record["transport"]["remote_candidates"]) == {"127.0.0.1"}
    assert "connected" in [e["kind"] for e in record["events"]]
    assert 1.5 < took < 8


async def test_agent_that_talks_forever_ends_at_the_calls_max_duration(persona):
    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=3.0, max_call_s=2.5)
    async with webrtc_agent("speech") as url:
        record, took = await call(persona, url, limits=limits, models=stub_models())
    assert record["failure_reason"] == "call_timeout"
    kinds = [e["kind"] for e in record["events"]]
    assert "agent_speech_start" in kinds  # it did talk: it just never stopped
    assert 2.5 < took < 10


HOSTILE_MESSAGES = [
    "not json at all {",
    "[" * 50_000 + "]" * 50_000,  # nested past any recursion limit
    json.dumps([1, 2, 3]),
    json.dumps({"label": "rtvi-ai", "type": ["bot-output"], "data": {"text": "x"}}),
    json.dumps({"label": "rtvi-ai", "type": {"a": 1}}),
    json.dumps({"label": "rtvi-ai", "type": "bot-output", "data": "not an object"}),
    json.dumps({"label": "rtvi-ai", "type": "user-transcription", "data": {"text": 12345}}),
    json.dumps({"entities": ["a", "list"]}),
    json.dumps({"entities": None}),
    json.dumps({"event": ["hangup"]}),
    json.dumps({"type": "signalling", "message": "peerLeft"}),
    '{"entities": {"first_name": NaN, "amount": Infinity}}',
    json.dumps({"entities": {"first_name": {"nested": [1, {"deeper": True}]},
                             "last_name": ["Smith"], "amount": True,
                             "card_last4": "<img src=x onerror=alert(1)>" * 100}}),
    b"\x00\xff binary",
    "x" * 60_000,
]


async def test_malformed_data_channel_messages_never_crash_the_call_and_it_still_grades(
        persona):
    flood = [json.dumps({"seq": i}) for i in range(MAX_MESSAGES)]
    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=5.0, max_call_s=15.0)
    async with webrtc_agent("short", HOSTILE_MESSAGES + flood, then_hangup=True) as url:
        record, took = await call(persona, url, limits=limits, models=stub_models())
    assert record["failure_reason"] in ("remote_hangup_early", "goal_not_met")
    assert took < 12
    assert any(e["kind"] == "hangup" and e.get("by") == "agent" for e in record["events"])
    # Kept, bounded; the wrong-shaped state is the last one carrying an entities object.
    assert len(record["agent_messages"]) == MAX_MESSAGES
    # Every message arrived and was read (the hangup after the flood, too): only kept is capped.
    assert record["transport"]["agent_messages_dropped"] == len(HOSTILE_MESSAGES) + 1
    assert record["agent_state"]["entities"]["last_name"] == ["Smith"]
    assert "agent_message_unreadable" not in [e["kind"] for e in record["events"]]
    graded = score_call(json.loads(json.dumps(record)))
    assert graded["metrics"] and "task" in graded


def test_agent_state_of_the_wrong_shape_grades_without_raising():
    messages = AgentMessages("auto")
    for message in HOSTILE_MESSAGES:
        messages.receive("agent-state", message, 1.0)  # never raises
    expected = {"first_name": {"type": "name", "value": "John"},
                "amount": {"type": "money", "value": "75"},
                "last_name": {"type": "name", "value": "Smith"}}
    turns = [{"speaker": "agent", "text": "So that is John Smith, 75 dollars.",
              "start_ms": 0, "end_ms": 1}]
    for state in ({"entities": {"first_name": float("nan"), "amount": float("inf"),
                                "last_name": {"x": 1}}},
                  {"entities": {"first_name": ["John"], "amount": True, "last_name": None}},
                  {"entities": "John"}, ["not", "a", "dict"], "text", None):
        result = score_understanding(expected, state, turns)
        assert set(result["correct"]) <= set(expected)
        assert all(isinstance(v, str) for v in result["understood"].values())


# --- WebSocket media streams: what tests/test_ws_transports.py does not cover ---------------

@contextlib.asynccontextmanager
async def ws_agent(handler):
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()


def ws_handler(send):
    async def handler(request):
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sender = asyncio.create_task(send(ws))
        try:
            async for _ in ws:
                pass
        finally:
            sender.cancel()
        return ws

    return handler


SPEECH = tone(0.6)


@pytest.mark.parametrize("transport", ["pcm-ws", "twilio-ws"])
async def test_ws_malformed_messages_are_counted_and_the_call_goes_on(persona, transport):
    junk = ["not json {", "[1, 2]", '"a string"', "null", json.dumps({"event": ["media"]}),
            json.dumps({"event": "mark", "mark": "not-an-object"}),
            json.dumps({"event": "mark", "mark": {"name": 7}}),
            json.dumps({"event": "media", "media": "not-an-object"}),
            json.dumps({"event": "media", "media": {"payload": 12345}}),
            json.dumps({"type": ["clear"]}), "[" * 50_000 + "]" * 50_000]

    async def send(ws):
        for message in junk:
            await ws.send_str(message)
        if transport == "pcm-ws":
            await ws.send_bytes(b"\x01\x02\x03")  # odd length
        await asyncio.sleep(0.3)
        await ws.send_str(json.dumps({"event": "hangup"}))
        await asyncio.sleep(0.5)
        await ws.close()

    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=5.0, max_call_s=10.0)
    async with ws_agent(ws_handler(send)) as url:
        record, took = await call(persona, url, transport=transport, limits=limits,
                                  models=stub_models())
    # It hung up by message (the read loop survived every bad message before it).
    assert any(e["kind"] == "hangup" and e.get("by") == "agent" and "how" not in e
               for e in record["events"]), record["events"]
    assert record["failure_reason"] in ("remote_hangup_early", "ws_closed_early")
    assert "agent_message_unreadable" not in [e["kind"] for e in record["events"]]
    assert record["network"]["bad_messages"] >= (1 if transport == "pcm-ws" else 5)
    assert took < 5


@pytest.mark.parametrize("transport", ["pcm-ws", "twilio-ws"])
async def test_ws_agent_that_never_speaks_is_no_agent_audio(persona, transport):
    async def send(ws):
        await asyncio.sleep(3600)

    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=1.0, max_call_s=10.0)
    async with ws_agent(ws_handler(send)) as url:
        record, took = await call(persona, url, transport=transport, limits=limits,
                                  models=stub_models())
    assert record["failure_reason"] == "no_agent_audio" and 1.0 < took < 5


@pytest.mark.parametrize("how", ["abort", "close"])
async def test_ws_agent_dying_mid_flow_is_connection_lost_not_a_hang_up(persona, how):
    """A killed agent's socket drops with no close frame (1006): not the agent hanging up."""
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(SPEECH.astype("<i2").tobytes())  # it said something first
        await asyncio.sleep(1.0)
        if how == "abort":
            request.transport.abort()  # as the kernel does for a SIGKILLed process
        else:
            await ws.close()  # a hang-up: a close frame
        return ws

    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=5.0, max_call_s=10.0)
    async with ws_agent(handler) as url:
        record, took = await call(persona, url, transport="pcm-ws", limits=limits,
                                  models=stub_models())
    lost = [e for e in record["events"] if e["kind"] == "connection_lost"]
    if how == "abort":
        assert record["failure_reason"] == "ws_connection_lost" and lost, record["events"]
        assert lost[0]["code"] == 1006
    else:
        assert record["failure_reason"] == "remote_hangup_early" and not lost
    assert took < 5


async def test_ws_agent_that_talks_forever_ends_at_the_calls_max_duration(persona):
    async def send(ws):
        speech = tone(1.0)
        began, sent = time.monotonic(), 0
        while True:  # real time, forever
            i = sent % speech.size
            await ws.send_bytes(speech[i:i + 320].astype("<i2").tobytes())
            sent += 320
            await asyncio.sleep(max(0.0, began + sent / 16_000 - time.monotonic()))

    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=3.0, max_call_s=2.0)
    async with ws_agent(ws_handler(send)) as url:
        record, took = await call(persona, url, transport="pcm-ws", limits=limits,
                                  models=stub_models())
    assert record["failure_reason"] == "call_timeout" and 2.0 < took < 6


# --- the report: nothing the agent controls can inject markup or script ---------------------

PWN = "document.title='pwned';document.documentElement.setAttribute('data-pwned','1')"
PAYLOADS = [
    f'<img src=x onerror="{PWN}">',
    f"</script><script>{PWN}</script>",
    f"\"'><svg onload=\"{PWN}\"></svg>",
    f"</textarea></title><iframe srcdoc=\"<script>parent.{PWN}</script>\"></iframe>",
    f"javascript:{PWN}",
]


def hostile_record(i: int, payload: str) -> dict:
    """A record whose every agent-controlled field carries payload: its state, transcripts, the
    call id it gave, what it says it heard and said, the text of its questions."""
    return {
        "call_id": f"call-{i}-{payload}", "persona": "cooperative-john", "seed": i,
        "status": "completed" if i % 2 else "failed",
        "failure_reason": None if i % 2 else "remote_hangup_early",
        "failure_detail": payload, "duration_s": 3.0, "concurrency_at_start": 1,
        "audio": payload, "target": payload,
        "transport": {"kind": "webrtc", "agent_call_id": payload},
        "agent_state": {"entities": {"first_name": payload, "last_name": payload},
                        "summary": payload},
        "agent_messages": [{"t_ms": 1.0, "channel": payload, "message": payload}],
        "facts": {"first_name": {"type": "name", "value": "John"},
                  "last_name": {"type": "name", "value": "Smith"}},
        "facts_given": ["first_name", "last_name"],
        "turns": [{"speaker": "agent", "text": payload, "start_ms": 0, "end_ms": 900},
                  {"speaker": "caller", "text": "John Smith", "start_ms": 1200,
                   "end_ms": 2000},
                  {"speaker": "agent", "text": f"So that is {payload}. Goodbye.",
                   "start_ms": 2600, "end_ms": 3000}],
        "events": [{"kind": "agent_speech_start", "t_ms": 0},
                   {"kind": "agent_speech_end", "t_ms": 900},
                   {"kind": "unrecognised_question", "t_ms": 900, "text": payload},
                   {"kind": "agent_heard", "t_ms": 1900, "text": payload},
                   {"kind": "agent_said", "t_ms": 2700, "text": payload},
                   {"kind": "caller_speech_start", "t_ms": 1200, "mode": "turn"},
                   {"kind": "caller_speech_end", "t_ms": 2000},
                   {"kind": "caller_turn_end", "t_ms": 2000},
                   {"kind": "agent_speech_start", "t_ms": 2600},
                   {"kind": "agent_speech_end", "t_ms": 3000},
                   {"kind": "hangup", "t_ms": 3000, "by": "agent"}],
    }


def parsed_elements(dom: str) -> tuple[set[str], list[str]]:
    """Every tag name in a DOM, and every on* attribute any element has."""
    from html.parser import HTMLParser

    tags: set[str] = set()
    handlers: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.add(tag)
            handlers.extend(f"{tag} {name}" for name, _ in attrs if name.startswith("on"))

    Parser().feed(dom)
    return tags, handlers


async def test_report_escapes_everything_the_agent_controls_in_a_real_browser(tmp_path):
    import os
    import subprocess

    from evaluation.gates import apply_gates
    from evaluation.report_html import write_report
    from evaluation.summary import summarize
    from tests.test_report_html import CHROMIUM, chromium

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    records = [score_call(hostile_record(i, p)) for i, p in enumerate(PAYLOADS)]
    # The agent's state is what the report shows it understood.
    assert records[0]["understanding"]["understood"]["first_name"] == PAYLOADS[0]
    summary = apply_gates(summarize(records, run_id="hostile", target=PAYLOADS[1]))
    path = write_report(tmp_path, summary, records)
    html = path.read_text()
    for payload in PAYLOADS[:4]:
        assert payload not in html
    assert "onerror=" not in html.replace("onerror=&quot;", "")
    try:
        out = await asyncio.to_thread(chromium, ["--dump-dom", path.as_uri()],
                                      tmp_path / "profile", 60)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not render the report in 60 s")
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title == "callfleet run hostile", title  # no injected script ran
    assert not re.search(r"<html[^>]*data-pwned", dom)
    tags, handlers = parsed_elements(dom)
    assert not tags & {"img", "iframe"}  # no injected element exists
    assert handlers == []  # nor any event-handler attribute on any element
    assert dom.count("<script>") == 1  # the report's own, and only it
    assert re.search(r'<span id="shown-count"[^>]*>5 of 5 calls</span>', dom)  # its JS ran
    shown = re.findall(r'data-call-id="([^"]*)"', dom)
    assert len(shown) == len(PAYLOADS)


async def test_ws_message_over_the_size_bound_ends_the_call_named_with_its_close_code(persona):
    async def send(ws):
        await ws.send_bytes(bytes(5 * 1024 * 1024))  # over the caller's 4 MiB message bound

    limits = SessionLimits(connect_timeout_s=5.0, no_agent_audio_s=5.0, max_call_s=10.0)
    async with ws_agent(ws_handler(send)) as url:
        record, took = await call(persona, url, transport="pcm-ws", limits=limits,
                                  models=stub_models())
    # The caller's side of the socket closes it as 1009 (message too big): never read whole.
    assert record["failure_reason"] == "ws_closed_early" and took < 5
    assert record["transport"]["close_code"] == 1009
