"""`callfleet impair`: check the options (one-line errors), run a relay, print its counts every
few seconds and once more when it stops (Ctrl-C, SIGTERM or --duration)."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import signal

from callers.errors import ConfigError
from callers.inputs import excerpt
from orchestration.impair import Impairment, start_relay


def parse_address(flag: str, text: str | None, *, listen: bool) -> tuple[str, int]:
    """HOST:PORT with an IPv4 literal. A listening address must be loopback or private: the
    relay is for rehearsals, never a service on a public interface."""
    if text is None:
        raise ConfigError(f"{flag} HOST:PORT is required")
    host, sep, port_text = text.rpartition(":")
    try:
        address = ipaddress.IPv4Address(host)
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{flag} {excerpt(text)}: expected IPV4:PORT, e.g. 127.0.0.1:40000") \
            from None
    if not sep or not (0 if listen else 1) <= port <= 65535:
        raise ConfigError(f"{flag} {excerpt(text)}: expected a port from "
                          f"{0 if listen else 1} to 65535")
    if address.is_unspecified or address.is_multicast:
        raise ConfigError(f"{flag} {host}: expected one loopback or private address, not "
                          "0.0.0.0 or multicast")
    if listen and not (address.is_loopback or address.is_private):
        raise ConfigError(f"{flag} {host}: a public address; the relay listens only on "
                          "loopback (127.0.0.0/8) or private addresses")
    return str(address), port


def _number(flag: str, text: str | None, default: float | None = 0.0, *,
            low: float = 0.0, high: float = math.inf, above_low: bool = False) -> float | None:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or value > high or (above_low and value == low):
        bound = f"above {low:g}" if above_low else f"from {low:g}"
        upper = f" to {high:g}" if math.isfinite(high) else " or more" if not above_low else ""
        raise ConfigError(f"{flag} {excerpt(text)}: expected a number {bound}{upper}")
    return value


def impairment_from_args(args) -> Impairment:
    """The Impairment the flags ask for; ConfigError (one line) for any bad value."""
    blackhole = None
    if args.blackhole is not None:
        start, sep, end = args.blackhole.partition(":")
        try:
            a, b = float(start), float(end)
        except ValueError:
            a = b = math.nan
        if not (sep and 0 <= a < b < math.inf):
            raise ConfigError(f"--blackhole {excerpt(args.blackhole)}: expected START:END "
                              "seconds after the relay starts, 0 <= START < END (e.g. 20:60)")
        blackhole = (a, b)
    seed = _number("--seed", args.seed, 1, high=2**32 - 1)
    if seed != int(seed):
        raise ConfigError(f"--seed {excerpt(args.seed)}: expected a whole number")
    if args.burst is not None and args.loss is None:
        raise ConfigError("--burst needs --loss (the long-run loss its bursts add up to)")
    try:
        impairment = Impairment(
            loss_pct=_number("--loss", args.loss, high=100),
            burst=_number("--burst", args.burst, None, low=1),
            delay_ms=_number("--delay-ms", args.delay_ms, high=60_000),
            jitter_ms=_number("--jitter-ms", args.jitter_ms, high=60_000),
            reorder_pct=_number("--reorder", args.reorder, high=100),
            duplicate_pct=_number("--duplicate", args.duplicate, high=100),
            blackhole=blackhole,
            reset_at_s=_number("--reset-at", args.reset_at, None, above_low=True),
            seed=int(seed))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if args.tcp and impairment.packet_only:
        raise ConfigError(f"--{' --'.join(impairment.packet_only)}: UDP only (TCP delivers every "
                          "byte in order); with --tcp use --delay-ms, --jitter-ms, --blackhole, "
                          "--reset-at")
    if args.udp and impairment.reset_at_s is not None:
        raise ConfigError("--reset-at: TCP only (UDP has no connection to reset)")
    return impairment


def run_impair(args) -> int:
    if args.udp == args.tcp:
        raise ConfigError("give one of --udp or --tcp")
    listen = parse_address("--listen", args.listen, listen=True)
    upstream = parse_address("--to", args.to, listen=False)
    impairment = impairment_from_args(args)
    every = _number("--stats-every", args.stats_every, 5.0, above_low=True)
    duration = _number("--duration", args.duration, None, above_low=True)
    return asyncio.run(_serve("tcp" if args.tcp else "udp", listen, upstream, impairment,
                              every, duration))


async def _serve(kind: str, listen, upstream, impairment: Impairment, every: float,
                 duration: float | None) -> int:
    try:
        relay = await start_relay(kind, listen, upstream, impairment)
    except OSError as e:
        raise ConfigError(f"--listen {listen[0]}:{listen[1]}: cannot listen "
                          f"({e.strerror or e})") from None
    host, port = relay.address
    print(f"callfleet impair: {kind} {host}:{port} -> {upstream[0]}:{upstream[1]} "
          f"({describe(impairment)})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                print(stats_line(relay), flush=True)
    finally:
        await relay.close()
    print(stats_line(relay, final=True), flush=True)
    return 0


def describe(imp: Impairment) -> str:
    parts = [f"loss {imp.loss_pct:g}%" + (f" in bursts of {imp.burst:g}" if imp.burst else ""),
             f"delay {imp.delay_ms:g}±{imp.jitter_ms:g} ms", f"reorder {imp.reorder_pct:g}%",
             f"duplicate {imp.duplicate_pct:g}%"]
    if imp.blackhole:
        parts.append(f"blackhole {imp.blackhole[0]:g}-{imp.blackhole[1]:g} s")
    if imp.reset_at_s is not None:
        parts.append(f"reset at {imp.reset_at_s:g} s")
    return ", ".join(parts + [f"seed {imp.seed}"])


def stats_line(relay, final: bool = False) -> str:
    elapsed = relay.loop.time() - relay.started
    extra = (f"; connections {relay.connections}, resets {relay.resets}"
             if relay.kind == "tcp" else "")
    return (f"{'final' if final else 'stats'} t={elapsed:.1f}s  "
            + "; ".join(s.line() for s in relay.stats.values()) + extra)
