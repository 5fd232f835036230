"""SIP on the wire: messages, digest auth, SDP, RTP statistics, and the outgoing call against
a tiny fake UAS on 127.0.0.1 (the caller side is the real transport, and for failures the
real CallSession: its speech models are never touched)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import warnings

import numpy as np
import pytest

from callers.media import Clock, OutgoingAudioTrack, Playout
from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession
from callers.transport import Target
from callers.transports import TransportEvents, make_transport
from callers.transports.sip import message as sipmsg
from callers.transports.sip import sdp
from callers.transports.sip.rtp import (
    PCMA,
    PCMU,
    ReceiveStats,
    RtpPacket,
    alaw_decode,
    alaw_encode,
)

USER_ENV, PASSWORD_ENV = "CALLFLEET_TEST_SIP_USER", "CALLFLEET_TEST_SIP_PASSWORD"
PASSWORD = "s1p-s3cret-77f0"

INVITE = (
    "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKabc;rport\r\n"
    "f: <sip:alice@127.0.0.1>;tag=1928\r\n"
    "t: <sip:bob@127.0.0.1:5070>\r\n"
    "i: a84b4c76e66710@127.0.0.1\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Subject: a folded\r\n  header\r\n"
    "c: application/sdp\r\n"
    "l: 4\r\n\r\nv=0\r\nignored"
).encode()


# --- messages ----------------------------------------------------------------------------

def test_parse_reads_compact_and_folded_headers_and_cuts_the_body_at_its_length():
    m = sipmsg.parse(INVITE)
    assert m.is_request and m.method == "INVITE" and m.uri == "sip:bob@127.0.0.1:5070"
    assert m.call_id == "a84b4c76e66710@127.0.0.1" and m.cseq == (314159, "INVITE")
    assert m.tag("From") == "1928" and m.tag("To") is None
    assert m.header("subject") == "a folded header"
    assert m.body == b"v=0\r"


def test_response_copies_the_transaction_headers_adds_our_tag_and_round_trips():
    request = sipmsg.parse(INVITE)
    ok = sipmsg.response(request, 200, "OK", to_tag="xyz", body=b"v=0\r\n")
    again = sipmsg.parse(ok.to_bytes())
    assert again.status == 200 and again.reason == "OK" and again.method == "INVITE"
    assert again.tag("To") == "xyz" and again.tag("From") == "1928"
    assert again.header("Via") == request.header("Via") and again.body == b"v=0\r\n"
    assert again.header("Content-Length") == "5"


@pytest.mark.parametrize("data", [b"", b"HTTP/1.1 200 OK\r\n\r\n", b"\xff\xfe\x00",
                                  b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"])
def test_garbage_is_a_parse_error_not_a_crash(data):
    with pytest.raises(sipmsg.SipParseError):
        sipmsg.parse(data)


def test_digest_matches_the_rfc_2617_example():
    # RFC 2617 3.5: Mufasa / "Circle Of Life", qop=auth
    assert sipmsg.digest_response(
        username="Mufasa", password="Circle Of Life", realm="testrealm@host.com",
        method="GET", uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth", nc="00000001", cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"
    challenge = sipmsg.parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = sipmsg.authorization(challenge, username="Mufasa", password="Circle Of Life",
                                 method="GET", uri="/dir/index.html", cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth," in value and "nc=00000001" in value and 'opaque="5ccc069c' in value
    with pytest.raises(sipmsg.DigestUnsupported):
        sipmsg.authorization({**challenge, "algorithm": "SHA-512-256"}, username="u",
                             password="p", method="INVITE", uri="sip:x")


def test_sip_uris_need_a_host_and_a_port_in_range():
    assert sipmsg.parse_uri("sip:agent@127.0.0.1:5070") == sipmsg.SipUri("agent", "127.0.0.1",
                                                                          5070)
    assert sipmsg.parse_uri("sip:127.0.0.1").port == 5060
    for bad in ("http://127.0.0.1", "sip:@:5060", "sip:a@h:0", "sips:a@h:5061"):
        with pytest.raises(ValueError):
            sipmsg.parse_uri(bad)


# --- SDP --------------------------------------------------------------------------------

def test_offer_lists_the_configured_law_first_and_the_answer_follows_the_offerers_order():
    offer = sdp.parse(sdp.offer("127.0.0.1", 40000, "pcma"))
    assert offer.payload_types == [PCMA, PCMU, sdp.TELEPHONE_EVENT]
    assert (offer.address, offer.port, offer.direction) == ("127.0.0.1", 40000, "sendrecv")
    text, pt = sdp.answer(offer, "127.0.0.1", 41000)
    assert pt == PCMA and sdp.parse(text).payload_types == [PCMA, sdp.TELEPHONE_EVENT]


def test_hold_offers_are_answered_with_the_matching_direction():
    for offered, answered in (("sendonly", "recvonly"), ("inactive", "inactive")):
        held = sdp.parse(sdp.build("127.0.0.1", 4000, [PCMU], direction=offered))
        assert not held.receives or offered == "recvonly"
        assert sdp.parse(sdp.answer(held, "127.0.0.1", 5000)[0]).direction == answered


def test_an_sdp_without_g711_or_without_audio_is_refused():
    with pytest.raises(sdp.SdpError):
        sdp.choose_codec(sdp.parse(sdp.build("127.0.0.1", 4000, [18])))
    with pytest.raises(sdp.SdpError):
        sdp.parse("v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 4000 RTP/AVP 96\r\n")


# --- RTP --------------------------------------------------------------------------------

def test_alaw_matches_the_g711_reference_both_ways():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = np.arange(-32768, 32768, 7, dtype=np.int32).astype(np.int16)
    assert alaw_encode(pcm) == audioop.lin2alaw(pcm.tobytes(), 2)
    codes = bytes(range(256))
    assert alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)


def test_rtp_packets_round_trip_and_skip_csrcs_extensions_and_padding():
    p = RtpPacket(PCMA, 65535, 123456, 0xDEADBEEF, b"\x01" * 160, marker=True)
    assert RtpPacket.parse(p.to_bytes()) == p
    raw = bytearray(p.to_bytes())
    raw[0] |= 0x10 | 0x20 | 1  # one CSRC, an extension, padding
    body = bytes(raw[:12]) + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXT!" + b"\x01" * 160 + b"\x00\x03"
    assert RtpPacket.parse(body).payload == b"\x01" * 159
    with pytest.raises(ValueError):
        RtpPacket.parse(b"\x00" * 20)


def test_jitter_is_rfc3550s_running_estimate_of_transit_differences():
    steady = ReceiveStats()
    for i in range(100):
        steady.on_packet(i, i * 160, 10.0 + i * 0.020)
    assert steady.jitter_ms == pytest.approx(0.0, abs=1e-6)
    wobbly = ReceiveStats()  # every other packet 5 ms late: |D| = 5 ms each time
    for i in range(300):
        wobbly.on_packet(i, i * 160, 10.0 + i * 0.020 + (0.005 if i % 2 else 0.0))
    assert wobbly.jitter_ms == pytest.approx(5.0, abs=0.01)


def test_loss_out_of_order_and_duplicate_packets_are_counted_across_the_sequence_wrap():
    stats = ReceiveStats()
    order = [65533, 65534, 65535, 0, 2, 1, 3, 3, 6]  # 1 out of order, 3 duplicated, 4, 5 lost
    statuses = [stats.on_packet(s, i * 160, i * 0.02) for i, s in enumerate(order)]
    assert statuses[5] == "out_of_order" and statuses[7] == "duplicate"
    assert (stats.expected, stats.received, stats.lost, stats.out_of_order) == (10, 8, 2, 1)
    assert stats.summary()["packet_loss_pct"] == 20.0


# --- a fake UAS on loopback ---------------------------------------------------------------

class FakeUas(asyncio.DatagramProtocol):
    """Answers INVITEs as told: `final` status (with 100 Trying first), `ring` (180 and
    nothing more), `auth` (401 with a qop=auth challenge, then 200 for the right digest),
    `answer` (200 with an SDP; then plays `tone_packets` of RTP and sends BYE if `bye`)."""

    def __init__(self, mode: str, *, final: int = 486, law: int = PCMA, tone_packets: int = 0,
                 bye: bool = False, reinvite: str | None = None) -> None:
        self.mode, self.final, self.law = mode, final, law
        self.tone_packets, self.bye, self.reinvite = tone_packets, bye, reinvite
        self.received: list[sipmsg.SipMessage] = []
        self.rtp_from_caller: list[tuple[float, RtpPacket]] = []
        self.transport = None
        self.rtp_sock: socket.socket | None = None
        self.peer = None
        self.invite: sipmsg.SipMessage | None = None
        self.tasks: set[asyncio.Task] = set()
        self.responses: list[sipmsg.SipMessage] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def _send(self, message: sipmsg.SipMessage) -> None:
        self.transport.sendto(message.to_bytes(), self.peer)

    def datagram_received(self, data, addr) -> None:
        m = sipmsg.parse(data)
        self.received.append(m)
        self.peer = addr
        if not m.is_request:
            self.responses.append(m)
            return
        if m.method == "INVITE" and self.invite is not None and m.tag("To"):
            return  # our own re-INVITE's echo: never happens; kept simple
        if m.method == "INVITE":
            self._invite(m)
        elif m.method == "ACK" and self.mode == "answer" and m.cseq[1] == "ACK":
            if not any(r.method == "ACK" for r in self.received[:-1]):
                task = asyncio.ensure_future(self._media())
                self.tasks.add(task)
        elif m.method in ("BYE", "CANCEL"):
            self._send(sipmsg.response(m, 200, "OK", to_tag="uas1"))

    def _invite(self, m: sipmsg.SipMessage) -> None:
        self.invite = m
        if self.mode == "ring":
            self._send(sipmsg.response(m, 180, "Ringing", to_tag="uas1"))
        elif self.mode == "final":
            self._send(sipmsg.response(m, 100, "Trying"))
            self._send(sipmsg.response(m, self.final, "Nope", to_tag="uas1"))
        elif self.mode == "auth" and not self._authorized(m):
            self._send(sipmsg.response(m, 401, "Unauthorized", to_tag="uas1", headers=[(
                "WWW-Authenticate",
                'Digest realm="callfleet.test", nonce="n0nce42", qop="auth", algorithm=MD5')]))
        else:
            self._answer(m)

    def _authorized(self, m: sipmsg.SipMessage) -> bool:
        got = sipmsg.parse_challenge(m.header("Authorization") or "")
        if not got:
            return False
        want = sipmsg.digest_response(username="alice", password=PASSWORD, realm=got["realm"],
                                      method="INVITE", uri=got["uri"], nonce=got["nonce"],
                                      qop=got.get("qop"), nc=got.get("nc", ""),
                                      cnonce=got.get("cnonce", ""))
        return got["response"] == want and got["username"] == "alice"

    def _answer(self, m: sipmsg.SipMessage) -> None:
        offer = sdp.parse(m.body)
        self.offer = offer
        self.rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp_sock.bind(("127.0.0.1", 0))
        self.rtp_sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.rtp_sock, self._rtp_in)
        body = sdp.build("127.0.0.1", self.rtp_sock.getsockname()[1], [self.law])
        self._send(sipmsg.response(m, 100, "Trying"))
        self._send(sipmsg.response(m, 180, "Ringing", to_tag="uas1"))
        self._send(sipmsg.response(m, 200, "OK", to_tag="uas1", body=body.encode(), headers=[
            ("Contact", f"<sip:uas@127.0.0.1:{self.transport.get_extra_info('sockname')[1]}>"),
            ("Content-Type", "application/sdp")]))

    def _rtp_in(self) -> None:
        with contextlib.suppress(BlockingIOError):
            data = self.rtp_sock.recv(2048)
            self.rtp_from_caller.append((time.monotonic(), RtpPacket.parse(data)))

    async def _media(self) -> None:
        dest = (self.offer.address, self.offer.port)
        t = np.arange(160) / 8000
        for i in range(self.tone_packets):
            pcm = (8000 * np.sin(2 * np.pi * 300 * (t + i * 0.02))).astype(np.int16)
            self.rtp_sock.sendto(RtpPacket(self.law, 1000 + i, i * 160, 77, alaw_encode(pcm)
                                           ).to_bytes(), dest)
            await asyncio.sleep(0.02)
        if self.reinvite:
            self._in_dialog("INVITE", sdp.build("127.0.0.1", self.rtp_sock.getsockname()[1],
                                                [self.law], direction=self.reinvite))
            await asyncio.sleep(0.3)
        if self.bye:
            self._in_dialog("BYE")

    def _in_dialog(self, method: str, body: str = "") -> None:
        inv = self.invite
        contact = sipmsg.contact_uri(inv.header("Contact"))
        headers = [("Via", f"SIP/2.0/UDP 127.0.0.1:{self.transport.get_extra_info('sockname')[1]}"
                           f";branch={sipmsg.new_branch()}"),
                   ("From", f"{inv.header('To')};tag=uas1"), ("To", inv.header("From")),
                   ("Call-ID", inv.call_id), ("CSeq", f"7 {method}")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self._send(sipmsg.SipMessage(f"{method} {contact} SIP/2.0", headers, body.encode()))

    def methods(self) -> list[str]:
        return [m.method if m.is_request else f"{m.status}" for m in self.received]

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.rtp_sock is not None:
            asyncio.get_running_loop().remove_reader(self.rtp_sock)
            self.rtp_sock.close()
        self.transport.close()


@contextlib.asynccontextmanager
async def uas(mode: str, **kw):
    loop = asyncio.get_running_loop()
    transport, fake = await loop.create_datagram_endpoint(lambda: FakeUas(mode, **kw),
                                                          local_addr=("127.0.0.1", 0))
    try:
        yield fake, f"sip:bob@127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        fake.close()


async def place(url: str, **kw):
    session = CallSession(resolve_persona("cooperative-john"), 7,
                          Target(url, transport="sip", **kw),
                          CallerModels(stt=None, tts=None), call_id="t")
    began = time.monotonic()
    record = await session.run()
    took = time.monotonic() - began
    await asyncio.sleep(0.05)  # the last datagrams (an ACK, a CANCEL) reach the fake
    return record, took


@pytest.mark.parametrize("status", [403, 404, 486, 503])
async def test_final_error_responses_are_named_failures_and_acked(status):
    async with uas("final", final=status) as (fake, url):
        record, took = await place(url)
    assert (record.status, record.failure_reason) == ("failed", f"sip_{status}")
    assert took < 3
    ack = next(m for m in fake.received if m.method == "ACK")
    assert sipmsg.parse(ack.to_bytes()).header("Via").split("branch=")[1].split(";")[0] == \
        fake.invite.header("Via").split("branch=")[1].split(";")[0]  # same transaction
    assert record.transport["kind"] == "sip"
    assert record.transport["agent_call_id"] == fake.invite.call_id
    assert record.transport["sip_exchange"][:3] == ["> INVITE", "< 100 INVITE",
                                                   f"< {status} INVITE"]


async def test_digest_challenge_is_answered_and_the_password_never_shows(monkeypatch, caplog):
    monkeypatch.setenv(USER_ENV, "alice")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    async with uas("auth") as (fake, url):
        async with Caller(Target(url, transport="sip", auth_username_env=USER_ENV,
                                 auth_password_env=PASSWORD_ENV)) as caller:
            pass
    assert [m for m in fake.methods() if m != "200"][:4] == ["INVITE", "ACK", "INVITE", "ACK"]
    assert 'qop=auth' in fake.received[2].header("Authorization")
    record_text = json.dumps(caller.transport.describe())
    assert PASSWORD not in record_text and PASSWORD not in caplog.text
    assert caller.transport.describe()["sip_exchange"][-2:] == ["> BYE", "< 200 BYE"]


async def test_wrong_password_is_sip_auth_failed(monkeypatch):
    monkeypatch.setenv(USER_ENV, "alice")
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    async with uas("auth") as (fake, url):
        record, took = await place(url, auth_username_env=USER_ENV,
                                   auth_password_env=PASSWORD_ENV)
    assert record.failure_reason == "sip_auth_failed" and took < 3
    assert fake.methods().count("INVITE") == 2  # one retry with credentials, then give up


async def test_a_target_that_only_rings_is_sip_no_answer_and_is_cancelled():
    async with uas("ring") as (fake, url):
        record, took = await place(url, signaling_timeout_s=1.0)
    assert record.failure_reason == "sip_no_answer" and 0.9 < took < 3
    assert "CANCEL" in fake.methods()


async def test_a_refused_port_is_sip_unreachable_at_once():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    record, took = await place(f"sip:bob@127.0.0.1:{port}")
    assert record.failure_reason == "sip_unreachable" and took < 3


class Caller:
    """One transport with the pieces a CallSession gives it, and what it reported."""

    def __init__(self, target: Target) -> None:
        self.clock = Clock()
        self.track = OutgoingAudioTrack(Playout(), self.clock)
        self.messages: list[tuple[str, str]] = []
        self.transport = make_transport(target, self.clock, self.track, TransportEvents(
            message=lambda label, m: self.messages.append((label, m)),
            end=lambda kind, **detail: None))
        self.heard: list[tuple[float, np.ndarray]] = []
        self.done = asyncio.Event()

    async def __aenter__(self) -> Caller:
        await self.transport.connect(3.0)
        self._listener = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        async for t_ms, frame in self.transport.incoming():
            self.heard.append((t_ms, frame))
        self.done.set()

    async def __aexit__(self, *exc) -> None:
        self.track.stop()
        await self.transport.close()
        self._listener.cancel()
        await asyncio.gather(self._listener, return_exceptions=True)


async def test_answered_call_carries_rtp_both_ways_and_the_agents_bye_ends_it():
    async with uas("answer", tone_packets=40, bye=True) as (fake, url):
        async with Caller(Target(url, transport="sip", codec="pcmu")) as caller:
            await asyncio.wait_for(caller.done.wait(), 5)
            stats = await caller.transport.network_stats()
            sent = list(fake.rtp_from_caller)
    assert caller.transport.media_end() == ("hangup", {"by": "agent", "how": "bye"})
    assert len(caller.heard) == 40 and all(f.size == 320 for _, f in caller.heard)
    assert np.abs(np.concatenate([f for _, f in caller.heard])).max() > 4000  # the tone
    assert stats["rtp_received"] == 40 and stats["rtp_lost"] == 0 and stats["rtp_late"] == 0
    assert stats["jitter_ms"] is not None and stats["jitter_ms"] < 10
    # the agent answered PCMA although we preferred PCMU: we send what it chose, every 20 ms
    assert {p.payload_type for _, p in sent} == {PCMA} and len(sent) >= 35
    gaps = np.diff([t for t, _ in sent]) * 1000
    assert 18 < float(np.median(gaps)) < 22
    assert [p.sequence - sent[0][1].sequence for _, p in sent] == list(range(len(sent)))
    described = caller.transport.describe()
    assert described["codec"] == "PCMA"
    exchange = described["sip_exchange"]
    assert exchange[:5] == ["> INVITE", "< 100 INVITE", "< 180 INVITE", "< 200 INVITE", "> ACK"]
    assert "< BYE" in exchange and "> 200 BYE" in exchange and "> BYE" not in exchange


@pytest.mark.parametrize(("offered", "answered", "holds"), [("sendonly", "recvonly", 0),
                                                             ("inactive", "inactive", 1)])
async def test_reinvite_to_hold_is_answered_and_we_stop_sending_without_failing(offered,
                                                                                answered, holds):
    async with uas("answer", tone_packets=10, reinvite=offered) as (fake, url):
        async with Caller(Target(url, transport="sip")) as caller:
            await asyncio.sleep(0.9)
            answer = next(r for r in fake.responses if r.method == "INVITE")
            count, heard = len(fake.rtp_from_caller), len(caller.heard)
            await asyncio.sleep(0.4)
            assert len(fake.rtp_from_caller) == count  # on hold: nothing sent
            if holds:  # the agent sends nothing either: silence stands in for its audio
                assert len(caller.heard) - heard >= 15
    assert answer.status == 200 and sdp.parse(answer.body).direction == answered
    assert caller.transport.reinvites == 1 and caller.transport.holds == holds
    assert "BYE" in fake.methods()  # we hung up at the end
