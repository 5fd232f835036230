"""A userspace network impairment relay (kernel netem is not available here): UDP and TCP
forwarding on loopback or private addresses with seeded loss (random or bursty), delay and
jitter, reordering, duplication, a timed blackhole and, for TCP, a reset; counted per direction.

`callfleet impair` runs one from the command line; tests start one with start_relay().
"""

from __future__ import annotations

from orchestration.impair.model import DROP_CAUSES, Channel, DirectionStats, Impairment
from orchestration.impair.tcp import TcpRelay
from orchestration.impair.udp import UdpRelay

__all__ = ["DROP_CAUSES", "Channel", "DirectionStats", "Impairment", "TcpRelay", "UdpRelay",
           "start_relay"]


async def start_relay(kind: str, listen: tuple[str, int], upstream: tuple[str, int],
                      impairment: Impairment | None = None) -> UdpRelay | TcpRelay:
    """A started relay ("udp" or "tcp"); its .address is where to send, .stats what it did.
    Close it with `await relay.close()`."""
    relay_class = {"udp": UdpRelay, "tcp": TcpRelay}[kind]
    return await relay_class.start(listen, upstream, impairment or Impairment())
