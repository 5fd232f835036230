"""WebSocket media streams on the wire: Twilio Media Streams (twilio-ws) and raw PCM (pcm-ws).

Tiny aiohttp WebSocket servers on 127.0.0.1 play the bot; the caller side is the real
transport (and, for failures, the real CallSession: its speech models are never touched).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
import warnings

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from callers.media import Clock, OutgoingAudioTrack, Playout
from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession
from callers.transport import Target
from callers.transports import TransportEvents, make_transport
from callers.transports.websocket import IncomingPlayout, mulaw_decode, mulaw_encode
from tests.test_playout import RATE, tone
from callers.media import utterance_from_pcm

TOKEN_ENV = "CALLFLEET_TEST_WS_TOKEN"
TOKEN = "ws-s3cret-token-91ab"


@contextlib.asynccontextmanager
async def bot(handler, path="/ws"):
    """An aiohttp WebSocket server on a free 127.0.0.1 port; yields its ws:// URL."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()


class Caller:
    """One transport with the pieces a CallSession gives it, and what it reported."""

    def __init__(self, target: Target) -> None:
        self.clock = Clock()
        self.playout = Playout()
        self.track = OutgoingAudioTrack(self.playout, self.clock)
        self.messages: list[tuple[float, str, str]] = []
        self.ended: list[tuple[str, dict]] = []
        self.transport = make_transport(target, self.clock, self.track, TransportEvents(
            message=lambda label, m: self.messages.append((self.clock.ms(), label, m)),
            end=lambda kind, **detail: self.ended.append((kind, detail))))
        self.heard: list[tuple[float, np.ndarray]] = []
        self._listener: asyncio.Task | None = None

    async def __aenter__(self) -> Caller:
        await self.transport.connect(5.0)
        self._listener = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        async for t_ms, frame in self.transport.incoming():
            self.heard.append((t_ms, frame))

    async def __aexit__(self, *exc) -> None:
        self.track.stop()
        await self.transport.close()
        self._listener.cancel()
        await asyncio.gather(self._listener, return_exceptions=True)


def twilio_target(url: str, **kw) -> Target:
    return Target(url, transport="twilio-ws", **kw)


async def read_json(ws, until, timeout_s=3.0) -> list[dict]:
    """Messages from the caller until until(messages) holds."""
    got: list[dict] = []
    async with asyncio.timeout(timeout_s):
        while not until(got):
            msg = await ws.receive()
            if msg.type != WSMsgType.TEXT:
                break
            got.append(json.loads(msg.data))
    return got


def media(pcm8k: np.ndarray, sid: str) -> str:
    return json.dumps({"event": "media", "streamSid": sid, "media": {
        "payload": base64.b64encode(mulaw_encode(pcm8k)).decode()}})


# --- mu-law ------------------------------------------------------------------------------

def test_mulaw_matches_the_g711_reference_both_ways():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the standard library's G.711 (removed in 3.13; here for checking)
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert mulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)
    every = bytes(range(256))
    assert mulaw_decode(every).tobytes() == audioop.ulaw2lin(every, 2)


# --- twilio-ws -----------------------------------------------------------------------------

async def test_twilio_stream_opens_with_connected_and_start_then_20ms_media_in_sequence():
    seen: list[dict] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seen.extend(await read_json(ws, lambda g: sum(m["event"] == "media" for m in g) >= 25))
        await ws.receive()  # the rest, until the caller closes
        return ws

    async with bot(handler) as url:
        target = twilio_target(url, custom_parameters=(("persona", "john"),),
                               account_sid="AC0123")
        async with Caller(target) as caller:
            while sum(m["event"] == "media" for m in seen) < 25:
                await asyncio.sleep(0.05)
            describe = caller.transport.describe()
    connected, start, *rest = seen
    assert connected["event"] == "connected" and connected["protocol"] == "Call"
    assert start["event"] == "start"
    body = start["start"]
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert body["customParameters"] == {"persona": "john"} and body["accountSid"] == "AC0123"
    assert body["callSid"].startswith("CA") and start["streamSid"].startswith("MZ")
    assert describe["agent_call_id"] == body["callSid"] and describe["kind"] == "twilio-ws"
    sequence = [int(m["sequenceNumber"]) for m in [start, *rest]]
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
    chunks = [m["media"] for m in rest]
    assert [int(c["chunk"]) for c in chunks] == list(range(1, len(chunks) + 1))
    assert [int(c["timestamp"]) for c in chunks] == [20 * i for i in range(len(chunks))]
    assert all(len(base64.b64decode(c["payload"])) == 160 for c in chunks)
    assert all(m["streamSid"] == start["streamSid"] for m in rest)


async def test_twilio_caller_speech_arrives_as_mulaw_at_8khz():
    payloads: list[bytes] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        got = await read_json(ws, lambda g: sum(m["event"] == "media" for m in g) >= 60)
        payloads.extend(base64.b64decode(m["media"]["payload"]) for m in got
                        if m["event"] == "media")
        await ws.receive()
        return ws

    async with bot(handler) as url, Caller(twilio_target(url)) as caller:
        caller.playout.say(utterance_from_pcm(tone(1.0), RATE, "tone"))
        while len(payloads) < 60:
            await asyncio.sleep(0.05)
    pcm = mulaw_decode(b"".join(payloads)).astype(np.float64)
    assert np.sqrt(np.mean(pcm[4000:] ** 2)) > 1000  # the tone, not silence


async def test_twilio_mark_is_echoed_once_the_audio_before_it_has_played():
    echoed: list[tuple[float, dict]] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        start = (await read_json(ws, lambda g: any(m["event"] == "start" for m in g)))[-1]
        sid = start["streamSid"]
        sent = time.monotonic()
        for _ in range(50):  # one second of audio in one burst, then a mark
            await ws.send_str(media(np.full(160, 4000, np.int16), sid))
        await ws.send_str(json.dumps({"event": "mark", "streamSid": sid,
                                      "mark": {"name": "after-1s"}}))
        for m in await read_json(ws, lambda g: any(x["event"] == "mark" for x in g)):
            if m["event"] == "mark":
                echoed.append((time.monotonic() - sent, m))
        await ws.receive()
        return ws

    async with bot(handler) as url, Caller(twilio_target(url)) as caller:
        while not echoed:
            await asyncio.sleep(0.05)
    (after_s, mark), = echoed
    assert mark["mark"] == {"name": "after-1s"} and mark["streamSid"].startswith("MZ")
    assert 0.9 <= after_s <= 1.5, after_s  # played in real time, not echoed on arrival
    stamps = [t for t, _ in caller.heard]
    # (the resampler holds back its last few samples: 49 whole frames or 50)
    assert len(stamps) in (49, 50) and np.allclose(np.diff(stamps), 20.0, atol=0.5)


async def test_twilio_clear_drops_queued_audio_and_echoes_its_marks():
    echoed: list[dict] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = (await read_json(ws, lambda g: any(m["event"] == "start" for m in g)))[-1][
            "streamSid"]
        for _ in range(150):  # three seconds queued
            await ws.send_str(media(np.full(160, 4000, np.int16), sid))
        await ws.send_str(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "end"}}))
        await asyncio.sleep(0.3)
        await ws.send_str(json.dumps({"event": "clear", "streamSid": sid}))
        echoed.extend(m for m in await read_json(ws, lambda g: any(x["event"] == "mark"
                                                                   for x in g))
                      if m["event"] == "mark")
        await ws.receive()
        return ws

    async with bot(handler) as url, Caller(twilio_target(url)) as caller:
        while not echoed:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        stats = await caller.transport.network_stats()
    assert [m["mark"]["name"] for m in echoed] == ["end"]
    assert 1 <= len(caller.heard) <= 75  # ~0.3 s heard of 3 s (more on a starved loop)
    assert len(caller.heard) + stats["receive_frames_cleared"] in (149, 150)  # nothing twice
    assert stats["clears_received"] == 1
    assert any('"clear"' in m for _, _, m in caller.messages)  # kept: when the bot barged out


async def test_twilio_stop_is_sent_when_the_caller_hangs_up_and_other_events_are_agent_messages():
    last: list[dict] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await read_json(ws, lambda g: any(m["event"] == "start" for m in g))
        await ws.send_str(json.dumps({"entities": {"first_name": "John"}}))
        await ws.send_str("not json")
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                last.append(json.loads(msg.data))
        return ws

    async with bot(handler) as url:
        async with Caller(twilio_target(url)) as caller:
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.1)
    assert last[-1]["event"] == "stop" and last[-1]["stop"]["callSid"].startswith("CA")
    assert [m for _, _, m in caller.messages][:2] == ['{"entities": {"first_name": "John"}}',
                                                      "not json"]
    assert (await caller.transport.network_stats())["bad_messages"] == 1


# --- pcm-ws -------------------------------------------------------------------------------

async def test_pcm_stream_sends_20ms_binary_frames_continuously_and_the_hangup_message():
    frames: list[tuple[float, int]] = []
    texts: list[str] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                frames.append((time.monotonic(), len(msg.data)))
            elif msg.type == WSMsgType.TEXT:
                texts.append(msg.data)
        return ws

    async with bot(handler) as url:
        target = Target(url, transport="pcm-ws", hangup_message='{"type": "hangup"}')
        async with Caller(target):
            await asyncio.sleep(1.0)  # silence only: still sent
        await asyncio.sleep(0.1)
    assert 40 <= len(frames) <= 55 and {n for _, n in frames} == {640}
    assert texts == ['{"type": "hangup"}']


async def test_pcm_stream_at_8khz_sends_320_bytes_per_frame():
    sizes: list[int] = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                sizes.append(len(msg.data))
        return ws

    async with bot(handler) as url, Caller(Target(url, transport="pcm-ws", sample_rate=8000)):
        await asyncio.sleep(0.3)
    assert sizes and set(sizes) == {320}


async def test_pcm_clear_drops_queued_audio_and_agent_close_is_its_hangup():
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        pcm = np.full(16000 * 2, 3000, np.int16).astype("<i2").tobytes()
        await ws.send_bytes(pcm)  # two seconds at once
        await asyncio.sleep(0.2)
        await ws.send_str(json.dumps({"type": "clear"}))
        await asyncio.sleep(0.2)
        await ws.close()
        return ws

    async with bot(handler) as url, Caller(Target(url, transport="pcm-ws")) as caller:
        await asyncio.wait_for(caller._listener, 3.0)  # ends: the agent closed
        stats = await caller.transport.network_stats()
    # ~0.2 s heard of 2 s (more if this loop was starved), the rest dropped, nothing twice
    assert 1 <= len(caller.heard) <= 50, len(caller.heard)
    assert len(caller.heard) + stats["receive_frames_cleared"] == 100
    assert caller.transport.media_end()[0] == "hangup"
    assert caller.transport.media_end()[1]["by"] == "agent"


def test_incoming_playout_stamps_real_time_audio_on_arrival_and_late_audio_late():
    clock = Clock()
    p = IncomingPlayout(clock)
    loud = np.full(320, 3000, np.int16)
    p.push(loud, 1000.0)
    p.push(loud, 1021.0)  # 1 ms late: kept on its place
    p.push(loud, 1090.0)  # 50 ms late: heard no earlier than 20 ms before it arrived
    p.push(loud, 1500.0)  # after a pause: a new stream, on arrival
    assert [t for t, _ in p._queue] == [1000.0, 1020.0, 1070.0, 1500.0]


# --- failures, named, through the real CallSession ------------------------------------------

async def place(url: str, transport="pcm-ws", **kw):
    session = CallSession(resolve_persona("cooperative-john"), 7,
                          Target(url, transport=transport, **kw),
                          CallerModels(stt=None, tts=None), call_id="t")
    began = time.monotonic()
    record = await session.run()
    return record, time.monotonic() - began


@pytest.mark.parametrize("transport", ["pcm-ws", "twilio-ws"])
async def test_refused_handshake_is_named_with_its_status_and_the_token_never_logged(
        transport, monkeypatch, caplog):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    seen = {}

    async def handler(request):
        seen["auth"] = request.headers.get("Authorization")
        seen["x"] = request.headers.get("X-Tenant")
        return web.Response(status=403, text="forbidden")

    async with bot(handler) as url:
        record, took = await place(url, transport, token_env=TOKEN_ENV,
                                   headers=(("X-Tenant", "qa"),))
    assert (record.status, record.failure_reason) == ("failed", "ws_handshake_http_403")
    assert seen == {"auth": f"Bearer {TOKEN}", "x": "qa"}
    assert record.transport["kind"] == transport and took < 5
    assert TOKEN not in json.dumps(record.to_dict()) and TOKEN not in caplog.text


async def test_refused_port_is_ws_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    record, took = await place(f"ws://127.0.0.1:{port}/ws")
    assert record.failure_reason == "ws_unreachable" and took < 5


async def test_tls_failure_is_named():
    # A plain-TCP server spoken to with wss://: the TLS handshake fails.
    server = await asyncio.start_server(lambda r, w: w.write(b"HTTP/1.1 200 OK\r\n\r\n"),
                                        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        record, took = await place(f"wss://127.0.0.1:{port}/ws")
    finally:
        server.close()
    assert record.failure_reason == "ws_tls_error", record.failure_reason
    assert took < 5


async def test_agent_that_closes_before_saying_anything_is_ws_closed_early():
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await asyncio.sleep(0.1)
        await ws.close()
        return ws

    async with bot(handler) as url:
        record, took = await place(url)
    assert record.failure_reason == "ws_closed_early" and took < 5
    assert any(e["kind"] == "hangup" and e["by"] == "agent" for e in record.events)


# --- run config: target.transport, validated up front ---------------------------------------

def _config(tmp_path, **target):
    from tests.test_config import write

    return write(tmp_path, target=target)


def test_reference_url_maps_to_the_agents_websocket_endpoint(tmp_path):
    from orchestration.config import load_run_config

    for transport, path in (("pcm-ws", "/pcm"), ("twilio-ws", "/twilio"), ("webrtc", "/offer")):
        target = load_run_config(_config(tmp_path, transport=transport)).target.to_target(
            "http://127.0.0.1:8080")
        assert target.transport == transport
        assert target.url == ("ws" if transport != "webrtc" else "http") + "://127.0.0.1:8080" + path


@pytest.mark.parametrize(("target", "message"), [
    ({"transport": "pcm-ws", "url": "http://a/x"}, "pcm-ws expects a ws:// or wss:// URL"),
    ({"transport": "webrtc", "url": "ws://a/x"}, "webrtc expects a http:// or https:// URL"),
    ({"transport": "carrier-pigeon"}, "target.transport"),
    ({"transport": "sip", "signaling": "whip"}, "signaling does not apply to transport sip"),
    ({"transport": "sip", "url": "http://a/x"}, "expected a sip:user@host[:port] URI"),
    ({"transport": "twilio-ws", "sample_rate": 8000}, "sample_rate does not apply to transport "
                                                      "twilio-ws"),
    ({"transport": "pcm-ws", "codec": "pcmu"}, "codec does not apply to transport pcm-ws"),
    ({"transport": "pcm-ws", "sample_rate": 16010}, "multiple of 50 Hz"),
    ({"transport": "pcm-ws", "ca_file": "/nonexistent/ca.pem"}, "no such file"),
])
def test_bad_transport_options_are_one_line_errors(tmp_path, target, message):
    from callers.errors import ConfigError
    from orchestration.config import load_run_config

    with pytest.raises(ConfigError) as e:
        load_run_config(_config(tmp_path, **target))
    assert message in str(e.value) and "\n" not in str(e.value)


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1, signed by itself (the CA bundle is the certificate)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callfleet test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_wss_verifies_the_certificate_and_trusts_a_configured_ca_bundle(tmp_path):
    import ssl

    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"wss://127.0.0.1:{runner.addresses[0][1]}/ws"
    try:
        untrusted, _ = await place(url)
        async with Caller(Target(url, transport="pcm-ws", ca_file=str(cert_file))) as caller:
            await asyncio.sleep(0.1)
            assert caller.transport.ws is not None and not caller.transport.ws.closed
    finally:
        await runner.cleanup()
    assert untrusted.failure_reason == "ws_tls_error"
    assert "certificate" in untrusted.failure_detail.lower()


async def test_twilio_bad_payloads_are_counted_never_a_crash():
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = (await read_json(ws, lambda g: any(m["event"] == "start" for m in g)))[-1][
            "streamSid"]
        await ws.send_str(json.dumps({"event": "media", "streamSid": sid,
                                      "media": {"payload": "%%% not base64 %%%"}}))
        await ws.send_str(json.dumps({"event": "media", "streamSid": sid}))
        await ws.send_str(json.dumps({"event": "mark", "streamSid": sid, "mark": {}}))
        await ws.send_bytes(b"\x00\x01")
        for _ in range(3):  # still heard after them
            await ws.send_str(media(np.full(160, 4000, np.int16), sid))
        async for _ in ws:
            pass
        return ws

    async with bot(handler) as url, Caller(twilio_target(url)) as caller:
        async with asyncio.timeout(3):
            while not caller.heard:
                await asyncio.sleep(0.02)
        stats = await caller.transport.network_stats()
    assert stats["bad_messages"] == 4
