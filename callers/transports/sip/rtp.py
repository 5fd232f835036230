"""RTP (RFC 3550) for one G.711 audio stream: packets, the A-law codec (mu-law is
callers.transports.websocket's), receive statistics (loss, out-of-order packets,
interarrival jitter), and a UDP endpoint that both callfleet and the reference agent use."""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from callers.transports.sip.jitter_buffer import JitterBuffer
from callers.transports.websocket import mulaw_decode, mulaw_encode

log = logging.getLogger(__name__)

RTP_VERSION = 2
G711_RATE = 8000
SAMPLES_20MS = 160
PCMU, PCMA, TELEPHONE_EVENT = 0, 8, 101


# --- G.711 A-law ---------------------------------------------------------------------------

_A_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def alaw_encode(pcm: np.ndarray) -> bytes:
    """16-bit linear PCM -> G.711 A-law bytes (on 13-bit magnitudes, as G.711 defines it)."""
    x = pcm.astype(np.int32) >> 3
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    x = np.where(negative, -x - 1, x)
    segment = np.searchsorted(_A_SEGMENT_ENDS, x, side="left")
    shift = np.maximum(segment, 1)
    value = np.where(segment >= 8, 0x7F,
                     (np.minimum(segment, 7) << 4) | ((x >> shift) & 0x0F))
    return (value ^ mask).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """G.711 A-law bytes -> 16-bit linear PCM."""
    a = np.frombuffer(data, np.uint8).astype(np.int32) ^ 0x55
    segment = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    t = np.where(segment > 1, t << np.maximum(segment - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


ENCODE = {PCMU: mulaw_encode, PCMA: alaw_encode}
DECODE = {PCMU: mulaw_decode, PCMA: alaw_decode}


# --- packets -------------------------------------------------------------------------------

@dataclass
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        return struct.pack("!BBHII", RTP_VERSION << 6,
                           (0x80 if self.marker else 0) | self.payload_type,
                           self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                           self.ssrc) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """ValueError for anything that is not an RTP version 2 packet."""
        if len(data) < 12 or data[0] >> 6 != RTP_VERSION:
            raise ValueError("not RTP v2")
        first, second, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        offset = 12 + 4 * (first & 0x0F)  # CSRCs
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                raise ValueError("truncated RTP extension")
            offset += 4 + 4 * struct.unpack("!H", data[offset + 2:offset + 4])[0]
        end = len(data)
        if first & 0x20 and end > offset:  # padding
            end -= data[-1]
        if end < offset:
            raise ValueError("truncated RTP packet")
        return cls(second & 0x7F, sequence, timestamp, ssrc, data[offset:end],
                   bool(second & 0x80))


# --- receive statistics --------------------------------------------------------------------

class ReceiveStats:
    """RFC 3550 A.1 (sequence accounting) and A.8 (interarrival jitter) from what arrives.

    on_packet() says "ok", "out_of_order" (older than a packet already received: the jitter
    buffer may still play it in its place) or "duplicate".
    """

    def __init__(self, clock_rate: int = G711_RATE) -> None:
        self.clock_rate = clock_rate
        self.received = 0
        self.out_of_order = 0
        self.duplicates = 0
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.jitter = 0.0  # in timestamp units, as RFC 3550 keeps it
        self._transit: float | None = None
        self.ssrc: int | None = None

    def on_packet(self, sequence: int, timestamp: int, arrival_s: float,
                  ssrc: int | None = None) -> str:
        if self.base_seq is None or (ssrc is not None and ssrc != self.ssrc):
            if self.base_seq is not None:  # a new source: start the accounting over
                log.info("RTP source changed: statistics start over")
            self.__init__(self.clock_rate)
            self.base_seq = self.max_seq = sequence
            self.ssrc = ssrc
            status = "ok"
        else:
            delta = (sequence - self.max_seq) & 0xFFFF
            if delta == 0:
                self.duplicates += 1
                return "duplicate"
            if delta < 0x8000:
                if sequence < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = sequence
                status = "ok"
            else:
                self.out_of_order += 1
                status = "out_of_order"
        self.received += 1
        transit = arrival_s * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16
        self._transit = transit
        return status

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000 / self.clock_rate

    def summary(self) -> dict[str, Any]:
        expected = self.expected
        return {"jitter_ms": round(self.jitter_ms, 2) if self.received > 1 else None,
                "packet_loss_pct": round(100 * self.lost / expected, 2) if expected else None,
                "rtp_received": self.received, "rtp_expected": expected, "rtp_lost": self.lost,
                "rtp_out_of_order": self.out_of_order, "rtp_duplicates": self.duplicates}


# --- the endpoint -------------------------------------------------------------------------

class RtpStream(asyncio.DatagramProtocol):
    """One side of a G.711 RTP stream on a local UDP port.

    send(pcm) sends 20 ms at 8 kHz to the remote (once set); on_audio(pcm8k, heard_s) gets
    the stream in order through a jitter buffer (each packet's audio, or silence for a gap),
    with the time.monotonic() second it is heard at (its place on the stream's timeline,
    callers.transports.sip.jitter_buffer). Packets from any address but the remote's host
    are ignored.
    """

    def __init__(self, on_audio: Callable[[np.ndarray, float], None]) -> None:
        self.on_audio = on_audio
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.payload_type = PCMU
        self.sending = True
        # Symmetric RTP: send to wherever the first packet came from (remote stays None until
        # then), as behind a NAT or a relay that the SDP does not name.
        self.latch = False
        self.stats = ReceiveStats()
        self.buffer = JitterBuffer(on_audio)
        self.sent = 0
        self.events_received = 0  # telephone-event packets (DTMF): counted, not played
        self.unknown_received = 0  # payload types we did not negotiate, or not RTP at all
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)

    async def open(self, host: str, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        return self.port

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1] if self.transport else 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, pcm8k: np.ndarray) -> None:
        """One 20 ms frame; the timestamp advances even when nothing is sent (on hold)."""
        if self.remote is not None and self.sending and self.transport is not None:
            packet = RtpPacket(self.payload_type, self._sequence, self._timestamp, self._ssrc,
                               ENCODE[self.payload_type](pcm8k), marker=self.sent == 0)
            self.transport.sendto(packet.to_bytes(), self.remote)
            self._sequence = (self._sequence + 1) & 0xFFFF
            self.sent += 1
        self._timestamp = (self._timestamp + pcm8k.size) & 0xFFFFFFFF

    def datagram_received(self, data: bytes, addr) -> None:
        if self.remote is not None and addr[0] != self.remote[0]:
            return
        arrival = time.monotonic()
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.unknown_received += 1
            return
        if self.latch and self.remote is None:
            self.remote = addr[:2]
        if packet.payload_type == TELEPHONE_EVENT:
            self.events_received += 1
            return
        if packet.payload_type not in DECODE:
            self.unknown_received += 1
            return
        source = self.stats.ssrc
        status = self.stats.on_packet(packet.sequence, packet.timestamp, arrival, packet.ssrc)
        if self.stats.ssrc != source and source is not None:
            self.buffer.reset()
        if status != "duplicate" and packet.payload:
            self.buffer.push(packet.sequence, packet.timestamp,
                             DECODE[packet.payload_type](packet.payload), arrival)

    def receive_summary(self) -> dict[str, Any]:
        """RFC 3550 figures, and what the jitter buffer made of the packets."""
        return {**self.stats.summary(), "rtp_late": self.buffer.late,
                "rtp_concealed": self.buffer.concealed}

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket: %s", exc)

    def close(self) -> None:
        self.buffer.close()
        if self.transport is not None:
            self.transport.close()
