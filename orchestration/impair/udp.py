"""The UDP impairment relay: one listening port; the last address that sent to it is the client;
everything goes on to one fixed upstream host:port and its answers come back to the client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from orchestration.impair.model import Channel, Impairment

log = logging.getLogger(__name__)

REORDER_WAIT_S = 0.1  # a held-back packet goes out at the latest this long after it was due


class _Direction:
    """Sends one direction's packets as its Channel decides: now, later, held back, twice."""

    def __init__(self, relay: UdpRelay, channel: Channel,
                 send: Callable[[bytes], None]) -> None:
        self.relay, self.channel, self._send = relay, channel, send
        # (data, its release timer, copies): at most one packet held back at a time
        self._held: tuple[bytes, asyncio.TimerHandle, int] | None = None

    def packet(self, data: bytes) -> None:
        loop = self.relay.loop
        arrived = loop.time()
        fate = self.channel.decide(len(data), arrived - self.relay.started)
        if fate.drop:
            return
        copies = 2 if fate.duplicate else 1
        due = arrived + fate.delay_s
        if fate.reorder and self._held is None:
            self.channel.stats.reordered += 1
            handle = loop.call_at(due + REORDER_WAIT_S, self._release)
            self._held = (data, handle, copies, arrived)
            return
        held, self._held = self._held, None
        if held is not None:
            held[1].cancel()
        if due <= loop.time():  # synchronously, so a packet arriving next cannot overtake
            self._out(data, copies, arrived, held)
        else:
            loop.call_at(due, self._out, data, copies, arrived, held)

    def _out(self, data: bytes, copies: int, arrived: float, held=None) -> None:
        for _ in range(copies):
            self._send(data)
        self.channel.sent(len(data), copies, self.relay.loop.time() - arrived)
        if held is not None:  # the packet held back goes right after this one
            self._out(held[0], held[2], held[3])

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._out(held[0], held[2], held[3])


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr) -> None:
        self.relay.client = addr
        self.relay.up.packet(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("impair relay (client side): %s", exc)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr) -> None:
        if self.relay.client is not None:
            self.relay.down.packet(data)
            return
        stats = self.relay.down.channel.stats  # no client has sent yet: nowhere to go
        stats.packets_in += 1
        stats.bytes_in += len(data)
        stats.dropped["no_client"] += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("impair relay (upstream side): %s", exc)


class UdpRelay:
    """Datagrams from a client to upstream ("up") and back ("down"), impaired both ways."""

    kind = "udp"

    def __init__(self, upstream: tuple[str, int], impairment: Impairment) -> None:
        self.upstream = upstream
        self.impairment = impairment
        self.client: tuple[str, int] | None = None
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self._listen: asyncio.DatagramTransport | None = None
        self._up_transport: asyncio.DatagramTransport | None = None
        self.up = _Direction(self, Channel(impairment, "up"), self._to_upstream)
        self.down = _Direction(self, Channel(impairment, "down"), self._to_client)

    @classmethod
    async def start(cls, listen: tuple[str, int], upstream: tuple[str, int],
                    impairment: Impairment) -> UdpRelay:
        relay = cls(upstream, impairment)
        relay._listen, _ = await relay.loop.create_datagram_endpoint(
            lambda: _Listener(relay), local_addr=listen)
        relay._up_transport, _ = await relay.loop.create_datagram_endpoint(
            lambda: _Upstream(relay), remote_addr=upstream)
        relay.started = relay.loop.time()
        return relay

    @property
    def address(self) -> tuple[str, int]:
        return self._listen.get_extra_info("sockname")[:2]

    @property
    def stats(self) -> dict:
        return {"up": self.up.channel.stats, "down": self.down.channel.stats}

    def _to_upstream(self, data: bytes) -> None:
        if self._up_transport is not None and not self._up_transport.is_closing():
            self._up_transport.sendto(data)

    def _to_client(self, data: bytes) -> None:
        if self._listen is not None and not self._listen.is_closing():
            self._listen.sendto(data, self.client)

    async def close(self) -> None:
        for transport in (self._listen, self._up_transport):
            if transport is not None:
                transport.close()
