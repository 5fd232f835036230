"""Network figures of a call from aiortc's getStats() (RTCP reports)."""

from __future__ import annotations

from aiortc import RTCPeerConnection
from aiortc.stats import RTCInboundRtpStreamStats, RTCRemoteInboundRtpStreamStats


async def network_stats(pc: RTCPeerConnection, clock_rate: int = 48_000) -> dict:
    """Jitter and loss of what we received, RTT from the agent's receiver reports."""
    report = await pc.getStats()
    out: dict = {"jitter_ms": None, "packet_loss_pct": None, "rtt_ms": None}
    for stats in report.values():
        if isinstance(stats, RTCInboundRtpStreamStats):
            # RTCP jitter is in RTP timestamp units of the codec's clock.
            out["jitter_ms"] = round(stats.jitter / clock_rate * 1000, 2)
            total = stats.packetsReceived + max(0, stats.packetsLost)
            out["packet_loss_pct"] = round(100 * max(0, stats.packetsLost) / total, 3) if total else None
            out["packets_received"] = stats.packetsReceived
        elif isinstance(stats, RTCRemoteInboundRtpStreamStats) and stats.roundTripTime is not None:
            out["rtt_ms"] = round(stats.roundTripTime * 1000, 2)
    return out
