"""The reference agent over SIP: a UDP listener (a small UAS) that answers each INVITE with a
new AgentCall, the same flows and fault knobs as its other endpoints.

INVITE -> 100 Trying, 180 Ringing, 200 OK with an SDP answer (PCMU or PCMA, the caller's
preference), retransmitted until the ACK. The Request-URI's user picks the flow
(`sip:card_dispute@...`; `agent` or none: the agent's default; any other name: 404). The
caller's RTP goes through callfleet's jitter buffer (in order, gaps filled, stamped at its
place on the stream's timeline); the agent's track goes out as one G.711 RTP
packet per 20 ms. Its state goes to the caller in SIP INFO (application/json, the same
{"entities": ...} as its data channel); it hangs up with BYE after its goodbye, and answers the
caller's BYE with 200. A re-INVITE is answered with its SDP (hold honoured).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import numpy as np

from callers.audio import STT_RATE, WIRE_RATE
from callers.transports.sip import sdp
from callers.transports.sip.dialog import T1_S, T2_S
from callers.transports.sip.message import (
    SipMessage,
    SipParseError,
    contact_uri,
    new_branch,
    new_tag,
    parse,
    parse_uri,
    response,
)
from callers.transports.sip.rtp import G711_RATE, RtpStream
from callers.transports.websocket import FrameResampler
from reference_agent.call import AgentCall, AgentKnobs, AgentMedia
from reference_agent.received_trace import HEADER as TRACEPARENT
from reference_agent.received_trace import record_call_start

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 32.0  # RFC 3261 timer H: no ACK for the 200 this long, the call is dropped
BYE_TIMEOUT_S = 2.0


def bind_ports(host: str, http_port: int, sip_port: int | None) -> tuple[int, socket.socket]:
    """(the HTTP port to serve, the SIP listener's bound UDP socket). Without sip_port the SIP
    port number is the HTTP port's (so `url: reference` finds it); with http_port 0, a number
    free for both TCP and UDP is picked."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((host, sip_port if sip_port is not None else http_port))
        except OSError:
            udp.close()
            if sip_port is not None or http_port:
                raise
            continue
        if sip_port is not None or http_port:
            return http_port, udp
        port = udp.getsockname()[1]
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                udp.close()
                continue
        return port, udp
    raise OSError("no port number free for both HTTP and SIP")


class SipListener(asyncio.DatagramProtocol):
    """Answers INVITEs; routes each later message to its call's SipAgentMedia by Call-ID.

    server: the AgentServer (its models, turn log, calls, and knobs_for_flow). rtp_port fixes
    every call's RTP port (so one call at a time: a second gets 486); rtp_advertise is the
    (host, port) the SDP answers name instead of our own, e.g. an impairment relay forwarding
    to rtp_port, and then we send our RTP back to wherever the caller's comes from."""

    def __init__(self, server, rtp_port: int | None = None,
                 rtp_advertise: tuple[str, int] | None = None) -> None:
        self.server = server
        self.rtp_port = rtp_port
        self.rtp_advertise = rtp_advertise
        self.transport: asyncio.DatagramTransport | None = None
        self.media: dict[str, SipAgentMedia] = {}
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    async def start(cls, server, sock: socket.socket, **rtp) -> SipListener:
        loop = asyncio.get_running_loop()
        _, listener = await loop.create_datagram_endpoint(lambda: cls(server, **rtp), sock=sock)
        return listener

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, message: SipMessage, addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(message.to_bytes(), addr)

    def datagram_received(self, data: bytes, addr) -> None:
        if not data.strip():
            return
        try:
            message = parse(data)
        except SipParseError as e:
            log.info("SIP: ignored a bad datagram from %s: %s", addr, e)
            return
        media = self.media.get(message.call_id)
        if media is not None:
            media.on_message(message, addr)
        elif message.is_request and message.method == "INVITE" and not message.tag("To"):
            self._invite(message, addr)
        elif message.is_request and message.method not in ("ACK",):
            self.send(response(message, 481, "Call/Transaction Does Not Exist"), addr)

    def _invite(self, message: SipMessage, addr) -> None:
        try:
            uri = parse_uri(message.uri)
            knobs = self.server.knobs_for_flow(None if uri.user in (None, "agent") else uri.user)
        except ValueError as e:
            self.send(response(message, 404, "Not Found", to_tag=new_tag(),
                               headers=[("Warning", f'399 callfleet "{str(e)[:120]}"')]), addr)
            return
        try:
            offer = sdp.parse(message.body)
            sdp.choose_codec(offer)
        except sdp.SdpError as e:
            self.send(response(message, 488, "Not Acceptable Here", to_tag=new_tag(),
                               headers=[("Warning", f'399 callfleet "{str(e)[:120]}"')]), addr)
            return
        media = SipAgentMedia(self, message, addr, offer)
        self.media[message.call_id] = media
        task = asyncio.create_task(self._answer(media, knobs), name="agent-sip-answer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, media: SipAgentMedia, knobs: AgentKnobs) -> None:
        call_id = media.invite.call_id
        server = self.server
        try:
            try:
                await media.answer()
            except OSError as e:  # the fixed RTP port is taken: by another call
                log.info("SIP call %s: RTP port busy (%s): 486", call_id, e)
                self.send(media._response(media.invite, 486, "Busy Here"), media.addr)
                return
            call = AgentCall(media, server.models, knobs, turn_log=server.turn_log,
                             call_id=call_id[:40])
            server.calls[call_id] = call
            record_call_start(server.turn_log, call.call_id, "sip",
                              media.invite.header_all(TRACEPARENT))
            call.listen()
            call.start()
            await call.ended.wait()
        finally:
            server.calls.pop(call_id, None)
            await asyncio.sleep(1.0)  # late retransmissions still find the dialog
            self.media.pop(call_id, None)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.transport is not None:
            self.transport.close()


class SipAgentMedia(AgentMedia):
    """One SIP call on the agent's side: the dialog (we are the UAS) and its RTP stream."""

    kind = "sip"

    def __init__(self, listener: SipListener, invite: SipMessage, addr,
                 offer: sdp.AudioDescription) -> None:
        self.listener = listener
        self.invite = invite
        self.addr = addr
        self.offer = offer
        self.host = listener.address[0]
        self.tag = new_tag()
        self.remote_target = contact_uri(invite.header("Contact") or "") or None
        self.cseq = 0
        self.call: AgentCall | None = None
        self.rtp = RtpStream(self._heard)
        self.frames: asyncio.Queue = asyncio.Queue()
        self._down = FrameResampler(WIRE_RATE, G711_RATE)
        self._up = FrameResampler(G711_RATE, STT_RATE)
        self._ok: SipMessage | None = None
        self.acked = asyncio.Event()
        self.ended = False
        self._bye_answered = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._sdp_version = 1

    # --- the dialog -----------------------------------------------------------------------

    async def answer(self) -> None:
        """100, 180, then 200 with our SDP, retransmitted until the ACK (timer G)."""
        self._send_response(self.invite, 100, "Trying")
        self._send_response(self.invite, 180, "Ringing")
        await self.rtp.open(self.host, self.listener.rtp_port or 0)
        self._apply(self.offer)
        answer, _ = sdp.answer(self.offer, *self._rtp_address, version=self._sdp_version)
        self._ok = self._response(self.invite, 200, "OK", body=answer)
        self._tasks.append(asyncio.create_task(self._until_acked(), name="agent-sip-200"))

    @property
    def _rtp_address(self) -> tuple[str, int]:
        """Where our SDP says to send RTP: ours, or the advertised relay's."""
        return self.listener.rtp_advertise or (self.host, self.rtp.port)

    def _apply(self, offer: sdp.AudioDescription) -> None:
        self.rtp.latch = self.listener.rtp_advertise is not None
        if not self.rtp.latch:
            self.rtp.remote = (offer.address, offer.port)
        self.rtp.payload_type = sdp.choose_codec(offer)
        self.rtp.sending = offer.receives

    async def _until_acked(self) -> None:
        interval, waited = T1_S, 0.0
        while not self.acked.is_set() and waited < ACK_TIMEOUT_S and not self.ended:
            self.listener.send(self._ok, self.addr)
            try:
                await asyncio.wait_for(self.acked.wait(), interval)
            except TimeoutError:
                waited += interval
                interval = min(interval * 2, T2_S)
        if not self.acked.is_set():
            log.info("SIP call %s: no ACK; dropped", self.invite.call_id)
            self._ended_by_caller()

    def _response(self, request: SipMessage, status: int, reason: str, body: str = "",
                  ) -> SipMessage:
        headers = [("Contact", f"<sip:agent@{self.host}:{self.listener.address[1]}>")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return response(request, status, reason, to_tag=self.tag, headers=headers,
                        body=body.encode())

    def _send_response(self, request: SipMessage, status: int, reason: str) -> None:
        self.listener.send(response(request, status, reason,
                                    to_tag=None if status == 100 else self.tag), self.addr)

    def on_message(self, message: SipMessage, addr) -> None:
        if not message.is_request:
            if message.method == "BYE" and message.status >= 200:
                self._bye_answered.set()
            return
        method = message.method
        if method == "INVITE" and not message.tag("To"):  # the INVITE again
            if self._ok is not None:
                self.listener.send(self._ok, addr)
        elif method == "INVITE":  # a re-INVITE from the caller
            try:
                offer = sdp.parse(message.body) if message.body else self.offer
                self._apply(offer)
            except sdp.SdpError:
                self.listener.send(self._response(message, 488, "Not Acceptable Here"), addr)
                return
            self._sdp_version += 1
            answer, _ = sdp.answer(offer, *self._rtp_address, version=self._sdp_version,
                                   supported=[self.rtp.payload_type])
            self.listener.send(self._response(message, 200, "OK", body=answer), addr)
        elif method == "ACK":
            if not self.acked.is_set():
                self.acked.set()
                self._tasks.append(asyncio.create_task(self._send_loop(), name="agent-rtp"))
        elif method == "BYE":
            self.listener.send(response(message, 200, "OK"), addr)
            self._ended_by_caller()
        elif method == "CANCEL":
            self.listener.send(response(message, 200, "OK"), addr)
            if not self.acked.is_set():
                self.listener.send(self._response(self.invite, 487, "Request Terminated"), addr)
                self._ended_by_caller()
        elif method in ("INFO", "OPTIONS"):
            self.listener.send(response(message, 200, "OK"), addr)
        else:
            self.listener.send(response(message, 501, "Not Implemented"), addr)

    def _ended_by_caller(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.frames.put_nowait(None)
        if self.call is not None:
            self.call.caller_hung_up()
        self._stop_media()

    def _request(self, method: str, body: bytes = b"", content_type: str | None = None
                 ) -> SipMessage:
        """A request of ours inside the dialog: From is the INVITE's To, with our tag."""
        self.cseq += 1
        headers = [("Via", f"SIP/2.0/UDP {self.host}:{self.listener.address[1]};"
                           f"branch={new_branch()}"),
                   ("Max-Forwards", "70"),
                   ("From", f"{self.invite.header('To')};tag={self.tag}"),
                   ("To", self.invite.header("From") or ""),
                   ("Call-ID", self.invite.call_id), ("CSeq", f"{self.cseq} {method}")]
        if content_type:
            headers.append(("Content-Type", content_type))
        uri = self.remote_target or f"sip:{self.addr[0]}:{self.addr[1]}"
        return SipMessage(f"{method} {uri} SIP/2.0", headers, body)

    # --- AgentMedia -----------------------------------------------------------------------

    def attach(self, call: AgentCall) -> None:
        self.call = call

    @property
    def connected(self) -> bool:
        return self.acked.is_set() and not self.ended

    def _heard(self, pcm8k: np.ndarray, heard_s: float) -> None:
        if self.call is not None and not self.ended:
            self.frames.put_nowait(((heard_s - self.call.clock.t0) * 1000,
                                    self._up.frame(pcm8k)))

    async def incoming(self, source, call: AgentCall):
        while True:
            item = await self.frames.get()
            if item is None:
                return
            yield item

    async def _send_loop(self) -> None:
        track = self.call.track
        while not self.ended:
            _, pcm48, _ = await track.paced_frame()
            self.rtp.send(self._down.frame(pcm48))

    def send_state(self, text: str) -> None:
        """The agent's state as SIP INFO (application/json). Its hang-up is the BYE itself."""
        if not self.connected or _is_hangup(text):
            return
        self.listener.send(self._request("INFO", text.encode(), "application/json"), self.addr)

    async def close(self) -> None:
        """Hang up: BYE (retransmitted until answered, at most BYE_TIMEOUT_S)."""
        if not self.ended and self.acked.is_set():
            self.ended = True
            bye = self._request("BYE")
            interval = T1_S
            loop = asyncio.get_running_loop()
            deadline = loop.time() + BYE_TIMEOUT_S
            while not self._bye_answered.is_set() and loop.time() < deadline:
                self.listener.send(bye, self.addr)
                try:
                    await asyncio.wait_for(self._bye_answered.wait(),
                                           min(interval, max(0.0, deadline - loop.time())))
                except TimeoutError:
                    interval *= 2
            self.frames.put_nowait(None)
        self.ended = True
        self._stop_media()

    def _stop_media(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.rtp.close()


def _is_hangup(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("event") == "hangup"


def sip_url(address: tuple[str, int], user: str = "agent") -> str:
    return f"sip:{user}@{address[0]}:{address[1]}"

