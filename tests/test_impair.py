"""The network impairment relay (orchestration/impair): what it does to packets and streams on
loopback, measured by the receiver and compared with the relay's own counts; and its CLI."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.impair import Channel, Impairment, start_relay

LOOPBACK = ("127.0.0.1", 0)
HEADER = struct.Struct("!Id")  # sequence number, send time (monotonic s)
PAD = bytes(160)  # a G.711 20 ms payload's size
CALLFLEET = Path(sys.executable).with_name("callfleet")


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[int, float, float]] = []  # (seq, sent_s, arrived_s)

    def datagram_received(self, data: bytes, addr) -> None:
        seq, sent = HEADER.unpack_from(data)
        self.got.append((seq, sent, time.monotonic()))


async def udp_through(impairment: Impairment, n: int, *, batch: int = 20,
                      batch_gap_s: float = 0.002, settle_s: float = 0.25):
    """Send n numbered packets through a UDP relay to a receiver: (relay, up stats, received)."""
    loop = asyncio.get_running_loop()
    sink, receiver = await loop.create_datagram_endpoint(Receiver, local_addr=LOOPBACK)
    relay = await start_relay("udp", LOOPBACK, sink.get_extra_info("sockname"), impairment)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for seq in range(n):
            sock.sendto(HEADER.pack(seq, time.monotonic()) + PAD, relay.address)
            if seq % batch == batch - 1:
                await asyncio.sleep(batch_gap_s)  # stay far below the socket buffers
        await asyncio.sleep(settle_s + (impairment.delay_ms + impairment.jitter_ms) / 1000)
    finally:
        sock.close()
        await relay.close()
        sink.close()
    stats = relay.stats["up"]
    assert stats.packets_in == n, "the kernel lost nothing before the relay"
    return relay, stats, receiver.got


def lost_runs(received_seqs: set[int], n: int) -> list[int]:
    """Lengths of the runs of consecutive missing sequence numbers."""
    runs, run = [], 0
    for seq in range(n):
        if seq in received_seqs:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return runs + ([run] if run else [])


def late_arrivals(got) -> int:
    """Packets that arrived after a higher sequence number (what RTP counts as out of order)."""
    late, highest = 0, -1
    for seq, _, _ in got:
        if seq < highest:
            late += 1
        highest = max(highest, seq)
    return late


# --- UDP -----------------------------------------------------------------------------------


async def test_random_loss_is_near_the_rate_and_the_relay_and_receiver_agree():
    n = 2000
    _, stats, got = await udp_through(Impairment(loss_pct=5, seed=1), n)
    seqs = {seq for seq, _, _ in got}
    receiver_lost = n - len(seqs)
    assert len(got) == len(seqs) == stats.forwarded
    assert receiver_lost == stats.dropped["loss"] == stats.dropped_total
    assert 4.0 <= 100 * receiver_lost / n <= 6.0
    assert stats.bytes_forwarded == stats.forwarded * (HEADER.size + len(PAD))
    assert max(lost_runs(seqs, n)) <= 3  # independent losses rarely come in runs


async def test_bursty_loss_has_the_configured_mean_burst_length_and_the_same_long_run_loss():
    n = 3000
    _, stats, got = await udp_through(Impairment(loss_pct=5, burst=3, seed=2), n)
    seqs = {seq for seq, _, _ in got}
    runs = lost_runs(seqs, n)
    assert sum(runs) == stats.dropped["loss"]
    assert 3.5 <= 100 * sum(runs) / n <= 6.5
    assert 2.0 <= statistics.mean(runs) <= 4.0, runs
    _, _, random_got = await udp_through(Impairment(loss_pct=5, seed=2), n)
    random_runs = lost_runs({seq for seq, _, _ in random_got}, n)
    assert statistics.mean(random_runs) < 1.5 < statistics.mean(runs)


async def test_delay_and_jitter_as_measured_by_the_receiver():
    n = 400
    imp = Impairment(delay_ms=100, jitter_ms=30, seed=3)
    _, stats, got = await udp_through(imp, n, batch=1, batch_gap_s=0.002)
    delays_ms = [1000 * (arrived - sent) for _, sent, arrived in got]
    assert len(got) == stats.forwarded == n
    assert 90 <= statistics.median(delays_ms) <= 110
    assert min(delays_ms) >= 69  # 100 - 30, less a clock read's worth
    # 100 + 30 at most, plus the event loop's lateness (a loaded machine adds some)
    assert statistics.quantiles(delays_ms, n=20)[-1] <= 135 and max(delays_ms) <= 200
    # uniform on [-30, +30]: standard deviation 30 / sqrt(3) = 17.3 ms
    assert 14 <= statistics.stdev(delays_ms) <= 21
    # jitter far larger than the 2 ms spacing reorders packets by itself
    assert late_arrivals(got) > n // 5
    # The relay's own jitter figure: RFC 3550's over how long it held each packet (E|U1 - U2|
    # = 2 * 30 / 3 for this uniform draw), as the receiver sees it in arrival order.
    seen = 0.0
    for before, after in itertools.pairwise(delays_ms):
        seen += (abs(after - before) - seen) / 16
    assert 14 <= stats.transit_jitter_ms <= 28 and abs(stats.transit_jitter_ms - seen) <= 3


async def test_no_impairment_forwards_everything_in_order_at_once():
    n = 500
    _, stats, got = await udp_through(Impairment(), n)
    assert [seq for seq, _, _ in got] == list(range(n))
    assert stats.forwarded == n and stats.dropped_total == stats.duplicated == 0
    assert statistics.median(1000 * (a - s) for _, s, a in got) < 20


async def test_duplicates_are_counted_and_arrive():
    n = 2000
    _, stats, got = await udp_through(Impairment(duplicate_pct=5, seed=4), n)
    seqs = [seq for seq, _, _ in got]
    assert set(seqs) == set(range(n))
    assert len(seqs) - n == stats.duplicated
    assert 4.0 <= 100 * stats.duplicated / n <= 6.0


async def test_blackhole_drops_everything_in_its_window_and_nothing_outside():
    n = 900  # ~1 s at 20 packets per 20 ms
    imp = Impairment(blackhole=(0.3, 0.6))
    relay, stats, got = await udp_through(imp, n, batch=20, batch_gap_s=0.02)
    received = {seq for seq, _, _ in got}
    sent_at = {seq: sent - relay.started for seq, sent, _ in got}
    # the relay judges by arrival, a moment after sending: a 20 ms margin at the end
    assert all(not 0.3 <= t < 0.58 for t in sent_at.values())
    missing = set(range(n)) - received
    assert len(missing) == stats.dropped["blackhole"] == stats.dropped_total > 100
    # every missing packet lies in one contiguous run: the window, nothing outside it
    assert max(missing) - min(missing) + 1 == len(missing)
    before = max((t for s, t in sent_at.items() if s < min(missing)), default=0)
    after = min(t for s, t in sent_at.items() if s > max(missing))
    assert 0.2 <= before < 0.3 and 0.58 <= after <= 0.7


async def test_reorder_happens_at_the_configured_rate_and_is_what_the_receiver_sees():
    n = 2000
    _, stats, got = await udp_through(Impairment(reorder_pct=5, seed=5), n)
    assert sorted(seq for seq, _, _ in got) == list(range(n))
    assert late_arrivals(got) == stats.reordered
    assert 4.0 <= 100 * stats.reordered / n <= 6.0


async def test_answers_come_back_to_the_client_impaired_with_their_own_random_numbers():
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=LOOPBACK)
    relay = await start_relay("udp", LOOPBACK, echo.get_extra_info("sockname"),
                              Impairment(loss_pct=20, seed=6))
    client, receiver = await loop.create_datagram_endpoint(Receiver, remote_addr=relay.address)
    try:
        for seq in range(500):
            client.sendto(HEADER.pack(seq, time.monotonic()))
            if seq % 20 == 19:
                await asyncio.sleep(0.002)
        await asyncio.sleep(0.2)
    finally:
        client.close()
        await relay.close()
        echo.close()
    up, down = relay.stats["up"], relay.stats["down"]
    assert down.packets_in == up.forwarded
    assert len(receiver.got) == down.forwarded == up.forwarded - down.dropped["loss"]
    assert up.dropped["loss"] > 60 and down.dropped["loss"] > 40


def test_the_same_seed_gives_the_same_fates_and_directions_differ():
    imp = Impairment(loss_pct=10, burst=2, jitter_ms=20, delay_ms=50, reorder_pct=3, seed=7)

    def fates(seed_imp, name):
        channel = Channel(seed_imp, name)
        return [(f.drop, round(f.delay_s, 9), f.reorder) for f in
                (channel.decide(100, 0.0) for _ in range(300))]

    assert fates(imp, "up") == fates(imp, "up")
    assert fates(imp, "up") != fates(imp, "down")
    other = Impairment(loss_pct=10, burst=2, jitter_ms=20, delay_ms=50, reorder_pct=3, seed=8)
    assert fates(imp, "up") != fates(other, "up")


# --- TCP -----------------------------------------------------------------------------------


async def echo_server():
    resets: list[BaseException] = []

    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError as e:
            resets.append(e)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, *LOOPBACK)
    return server, server.sockets[0].getsockname()[:2], resets


async def test_tcp_relays_bytes_intact_both_ways_with_the_added_delay():
    server, address, _ = await echo_server()
    relay = await start_relay("tcp", LOOPBACK, address, Impairment(delay_ms=50, jitter_ms=10))
    payload = os.urandom(300_000)
    try:
        reader, writer = await asyncio.open_connection(*relay.address)
        started = time.monotonic()
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"ping"
        rtt_ms = 1000 * (time.monotonic() - started)
        writer.write(payload)
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
        writer.close()
    finally:
        await relay.close()
        server.close()
    assert echoed == payload
    assert 80 <= rtt_ms <= 160  # 50 ± 10 ms each way
    up, down = relay.stats["up"], relay.stats["down"]
    assert up.bytes_forwarded == down.bytes_forwarded == len(payload) + 4
    assert up.bytes_in == up.bytes_forwarded and up.dropped_total == 0


async def test_tcp_reset_at_resets_the_client_connection_at_about_that_time():
    server, address, upstream_resets = await echo_server()
    relay = await start_relay("tcp", LOOPBACK, address, Impairment(reset_at_s=0.5))
    try:
        reader, writer = await asyncio.open_connection(*relay.address)
        opened = time.monotonic()
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 2) == b"hello"
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 3)
        reset_after = time.monotonic() - opened
        writer.close()
        await asyncio.sleep(0.05)
    finally:
        await relay.close()
        server.close()
    assert 0.45 <= reset_after <= 0.7
    assert relay.resets == relay.connections == 1
    assert len(upstream_resets) == 1  # the agent's side is reset too


async def test_tcp_blackhole_stalls_the_stream_until_it_ends_and_loses_nothing():
    server, address, _ = await echo_server()
    relay = await start_relay("tcp", LOOPBACK, address, Impairment(blackhole=(0.0, 0.4)))
    try:
        reader, writer = await asyncio.open_connection(*relay.address)
        writer.write(b"during")
        assert await asyncio.wait_for(reader.readexactly(6), 2) == b"during"
        stalled_until = time.monotonic() - relay.started
        writer.write(b"after")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.readexactly(5), 2) == b"after"
        after_ms = 1000 * (time.monotonic() - started)
        writer.close()
    finally:
        await relay.close()
        server.close()
    assert 0.4 <= stalled_until <= 0.5
    assert after_ms < 50
    assert relay.stats["up"].stalled == 1


# --- SIP media through a relay --------------------------------------------------------------


async def test_reference_agent_sip_media_crosses_a_relay_both_ways_as_the_caller_measures():
    import numpy as np

    from callers.transports.sip import sdp
    from callers.transports.sip.message import parse
    from callers.transports.sip.rtp import RtpStream
    from reference_agent.sip_media import SipAgentMedia, SipListener

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(LOOPBACK)
        agent_rtp_port = probe.getsockname()[1]
    relay = await start_relay("udp", LOOPBACK, ("127.0.0.1", agent_rtp_port),
                              Impairment(loss_pct=10, seed=9))
    sip_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip_socket.bind(LOOPBACK)
    listener = await SipListener.start(None, sip_socket, rtp_port=agent_rtp_port,
                                       rtp_advertise=relay.address)
    caller = RtpStream(lambda pcm, arrival: None)
    await caller.open("127.0.0.1")
    offer = sdp.offer("127.0.0.1", caller.port)
    invite = parse((
        "INVITE sip:agent@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKimpair\r\n"
        "From: <sip:caller@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\n"
        "Call-ID: impair-1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:9>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n{offer}"
    ).encode())
    media = SipAgentMedia(listener, invite, ("127.0.0.1", 9), sdp.parse(offer))
    frame = np.zeros(160, np.int16)
    try:
        await media.answer()
        answer = sdp.parse(media._ok.body)
        assert (answer.address, answer.port) == relay.address
        assert media.rtp.port == agent_rtp_port and media.rtp.remote is None
        caller.remote = (answer.address, answer.port)
        for i in range(600):
            caller.send(frame)
            media.rtp.send(frame)  # nowhere until the caller's first packet came through
            if i % 10 == 9:
                await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
    finally:
        media.ended = True
        media._stop_media()
        caller.close()
        listener.close()
        await relay.close()
    up, down = relay.stats["up"], relay.stats["down"]
    assert media.rtp.remote != ("127.0.0.1", caller.port)  # latched onto the relay
    assert media.rtp.stats.received == up.forwarded and caller.stats.received == down.forwarded
    assert down.packets_in == media.rtp.sent > 500  # every agent packet went via the relay
    for measured, stats in ((media.rtp.stats, up), (caller.stats, down)):
        relay_pct = 100 * stats.dropped["loss"] / stats.packets_in
        assert abs(measured.summary()["packet_loss_pct"] - relay_pct) <= 1.0
        assert 7 <= relay_pct <= 13


# --- the command line ----------------------------------------------------------------------

GOOD = ["impair", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9"]


@pytest.mark.parametrize("argv, says", [
    (["impair", "--listen", "0.0.0.0:5000", "--to", "127.0.0.1:9", "--udp"], "0.0.0.0"),
    (["impair", "--listen", "8.8.8.8:5000", "--to", "127.0.0.1:9", "--udp"], "public"),
    (["impair", "--listen", "localhost:5000", "--to", "127.0.0.1:9", "--udp"], "IPV4:PORT"),
    (["impair", "--listen", "127.0.0.1:70000", "--to", "127.0.0.1:9", "--udp"], "port"),
    (["impair", "--listen", "127.0.0.1:0", "--udp"], "--to"),
    ([*GOOD], "--udp or --tcp"),
    ([*GOOD, "--udp", "--tcp"], "--udp or --tcp"),
    ([*GOOD, "--udp", "--loss", "101"], "--loss"),
    ([*GOOD, "--udp", "--loss", "five"], "--loss"),
    ([*GOOD, "--udp", "--loss", "nan"], "--loss"),
    ([*GOOD, "--udp", "--loss", "5", "--burst", "0.5"], "--burst"),
    ([*GOOD, "--udp", "--burst", "3"], "--burst needs --loss"),
    ([*GOOD, "--udp", "--loss", "60", "--burst", "1"], "impossible"),
    ([*GOOD, "--udp", "--jitter-ms", "-1"], "--jitter-ms"),
    ([*GOOD, "--udp", "--blackhole", "60:20"], "--blackhole"),
    ([*GOOD, "--udp", "--blackhole", "20"], "--blackhole"),
    ([*GOOD, "--udp", "--reset-at", "3"], "TCP only"),
    ([*GOOD, "--tcp", "--loss", "5"], "UDP only"),
    ([*GOOD, "--tcp", "--reset-at", "0"], "--reset-at"),
    ([*GOOD, "--udp", "--seed", "1.5"], "--seed"),
    ([*GOOD, "--udp", "--stats-every", "0"], "--stats-every"),
])
def test_impair_bad_options_are_one_line_errors_exit_2(argv, says, capsys):
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("callfleet: error: ") and says in err[0], err


def test_impair_help_lists_the_impairments(capsys):
    with pytest.raises(SystemExit) as info:
        main(["impair", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--listen", "--to", "--loss", "--burst", "--delay-ms", "--jitter-ms",
                 "--reorder", "--duplicate", "--blackhole", "--reset-at", "--seed"):
        assert flag in out


def test_impair_command_relays_and_prints_its_counts_at_exit():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(LOOPBACK)
    sink.settimeout(0.5)
    to = "127.0.0.1:%d" % sink.getsockname()[1]
    proc = subprocess.Popen([str(CALLFLEET), *GOOD[:3], "--to", to, "--udp", "--loss", "50",
                             "--seed", "1", "--duration", "1.5", "--stats-every", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("callfleet impair: udp 127.0.0.1:"), first
        port = int(first.split()[3].rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for seq in range(40):
                client.sendto(HEADER.pack(seq, 0.0), ("127.0.0.1", port))
        got = 0
        try:
            while True:
                sink.recv(100)
                got += 1
        except TimeoutError:
            pass
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        sink.close()
    assert proc.returncode == 0, err
    final = out.strip().splitlines()[-1]
    assert final.startswith("final ") and "up: in 40 " in final
    assert f"forwarded {got} " in final and 5 < got < 35
    assert "stats " in out  # the periodic line
