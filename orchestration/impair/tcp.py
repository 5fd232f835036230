"""The TCP impairment relay: each accepted connection gets its own connection upstream; bytes are
delayed (in order), stalled by a blackhole, and the pair is reset (RST) at reset_at_s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

from orchestration.impair.model import Channel, Impairment

log = logging.getLogger(__name__)

CHUNK = 65536
LINGER_0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


class TcpRelay:
    """Byte streams from clients to upstream ("up") and back ("down"); the stats add up over
    all connections."""

    kind = "tcp"

    def __init__(self, upstream: tuple[str, int], impairment: Impairment) -> None:
        if impairment.packet_only:
            raise ValueError(f"{', '.join(impairment.packet_only)}: UDP only (TCP delivers every "
                             "byte in order; use delay, jitter, blackhole or reset)")
        self.upstream = upstream
        self.impairment = impairment
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.up = Channel(impairment, "up", stream=True)
        self.down = Channel(impairment, "down", stream=True)
        self.connections = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, listen: tuple[str, int], upstream: tuple[str, int],
                    impairment: Impairment) -> TcpRelay:
        relay = cls(upstream, impairment)
        relay._server = await asyncio.start_server(relay._handle, listen[0], listen[1])
        relay.started = relay.loop.time()
        return relay

    @property
    def address(self) -> tuple[str, int]:
        return self._server.sockets[0].getsockname()[:2]

    @property
    def stats(self) -> dict:
        return {"up": self.up.stats, "down": self.down.stats}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as e:
            log.info("impair relay: upstream %s:%s refused: %s", *self.upstream, e)
            _reset(writer)
            return
        writers = (writer, up_writer)
        self._open.update(writers)
        pumps = [asyncio.create_task(self._pump(reader, up_writer, self.up), name="impair-up"),
                 asyncio.create_task(self._pump(up_reader, writer, self.down),
                                     name="impair-down")]
        timer = None
        if self.impairment.reset_at_s is not None:
            timer = self.loop.call_later(self.impairment.reset_at_s, self._reset, writers, pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            if timer is not None:
                timer.cancel()
            for w in writers:
                self._open.discard(w)
                w.close()

    def _reset(self, writers, pumps) -> None:
        self.resets += 1
        for pump in pumps:
            pump.cancel()
        for w in writers:
            _reset(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    channel: Channel) -> None:
        """Read, stamp each chunk with when it may go, and let a sender write it then."""
        queue: asyncio.Queue = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer, channel), name="impair-send")
        last_due = 0.0
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                now = self.loop.time()
                fate = channel.decide(len(data), now - self.started)
                due = max(last_due, now + fate.delay_s)  # a stream keeps its order
                if fate.stall_until_s is not None:
                    due = max(due, self.started + fate.stall_until_s)
                last_due = due
                queue.put_nowait((due, data))
            queue.put_nowait(None)
            await sender
        finally:
            sender.cancel()

    async def _send(self, queue: asyncio.Queue, writer: asyncio.StreamWriter,
                    channel: Channel) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            writer.write(data)
            channel.sent(len(data))
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                return
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()  # pass the half-close on

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._open):
            w.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: the peer sees ECONNRESET, as when a middlebox drops the connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    writer.transport.abort()
