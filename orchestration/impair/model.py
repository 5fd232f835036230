"""What an impairment relay does to each packet: the config, the per-direction statistics and
the seeded decision (drop, delay, reorder, duplicate) for one direction of traffic."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

# Why a packet was not forwarded (no_client: a UDP answer before any client had sent).
DROP_CAUSES = ("loss", "blackhole", "no_client")


@dataclass(frozen=True)
class Impairment:
    """What to do to the traffic, the same in both directions (each with its own Random).

    loss_pct: packets lost (UDP). burst: mean length of a run of lost packets; None is
    independent (Bernoulli) loss, a number >= 1 is a Gilbert-Elliott two-state chain with that
    mean burst and the same long-run loss. delay_ms + a uniform draw in [-jitter_ms, +jitter_ms]
    is each packet's delay (TCP keeps byte order: a chunk never overtakes the one before).
    reorder_pct: a packet is held back and sent just after the next one. duplicate_pct: a
    packet is sent twice. blackhole: (a, b) seconds after the relay started, everything
    arriving is dropped (UDP) or held until b (TCP: a stall, as TCP rides out an outage).
    reset_at_s: each TCP connection is reset (RST) this long after it was accepted.
    """

    loss_pct: float = 0.0
    burst: float | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder_pct: float = 0.0
    duplicate_pct: float = 0.0
    blackhole: tuple[float, float] | None = None
    reset_at_s: float | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("loss_pct", "reorder_pct", "duplicate_pct"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ValueError(f"{name} {value}: expected a percentage from 0 to 100")
        for name in ("delay_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)}: expected 0 or more")
        if self.burst is not None:
            if self.burst < 1:
                raise ValueError(f"burst {self.burst}: expected a mean burst length of 1 or more "
                                 "packets")
            if self._enter_bad() > 1:
                raise ValueError(f"loss {self.loss_pct}% with mean bursts of {self.burst} "
                                 "packets is impossible: lower the loss or lengthen the bursts")
        if self.blackhole is not None:
            a, b = self.blackhole
            if not 0 <= a < b:
                raise ValueError(f"blackhole {a}:{b}: expected START:END seconds with "
                                 "0 <= START < END")
        if self.reset_at_s is not None and self.reset_at_s <= 0:
            raise ValueError(f"reset_at_s {self.reset_at_s}: expected seconds above 0")

    def _enter_bad(self) -> float:
        """Gilbert-Elliott: P(good -> bad), so that the chain loses loss_pct in the long run
        (stationary P(bad) = p / (p + r), with r = 1 / burst the chance a burst ends)."""
        loss = self.loss_pct / 100
        if loss >= 1:
            return 2.0  # impossible: a burst that ends cannot lose everything
        return loss / (1 - loss) / self.burst

    @property
    def packet_only(self) -> list[str]:
        """The options set that only make sense for datagrams (TCP neither loses nor reorders)."""
        return [name for name, on in (("loss", self.loss_pct > 0), ("burst", self.burst),
                                      ("reorder", self.reorder_pct > 0),
                                      ("duplicate", self.duplicate_pct > 0)) if on]


@dataclass
class DirectionStats:
    """One direction's counts: a test compares them with what the receiver measured.

    forwarded counts original packets sent on; duplicated the extra copies (so the receiver
    gets forwarded + duplicated); dropped is by cause."""

    name: str
    packets_in: int = 0
    bytes_in: int = 0
    forwarded: int = 0
    bytes_forwarded: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_CAUSES, 0))
    duplicated: int = 0
    reordered: int = 0
    stalled: int = 0  # TCP chunks held by a blackhole
    # RFC 3550 jitter of the time the relay held each datagram, as it really went out (its
    # event loop's lateness included): what a receiver's jitter figure should show of it.
    transit_jitter_ms: float = 0.0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict:
        return {**asdict(self), "dropped_total": self.dropped_total}

    def line(self) -> str:
        causes = ", ".join(f"{k} {v}" for k, v in self.dropped.items())
        text = (f"{self.name}: in {self.packets_in} ({self.bytes_in} B), forwarded "
                f"{self.forwarded} ({self.bytes_forwarded} B), dropped {self.dropped_total} "
                f"({causes}), duplicated {self.duplicated}, reordered {self.reordered}")
        return text + (f", stalled {self.stalled}" if self.stalled else "")


@dataclass
class Fate:
    """What happens to one packet: dropped (cause) or sent after delay_s, maybe held back for
    reordering, maybe twice."""

    drop: str | None = None
    delay_s: float = 0.0
    stall_until_s: float | None = None  # a byte stream in a blackhole: held until then
    reorder: bool = False
    duplicate: bool = False


class Channel:
    """One direction's decisions, from its own Random seeded by (seed, direction).

    Every packet takes the same four draws whatever becomes of it, so packet k's loss, delay,
    reorder and duplication depend only on the seed and k, not on timing (the blackhole, which
    is timed, is applied after the draws)."""

    def __init__(self, impairment: Impairment, name: str, stream: bool = False) -> None:
        self.impairment = impairment
        self.stream = stream  # a byte stream (TCP) is never dropped: a blackhole stalls it
        self.stats = DirectionStats(name)
        self.rng = random.Random(f"{impairment.seed}:{name}")
        self._bad = False  # Gilbert-Elliott state
        self._enter_bad = impairment._enter_bad() if impairment.burst is not None else 0.0
        self._last_transit_s: float | None = None

    def decide(self, size: int, elapsed_s: float) -> Fate:
        """The fate of a packet of size bytes arriving elapsed_s after the relay started."""
        imp, stats = self.impairment, self.stats
        stats.packets_in += 1
        stats.bytes_in += size
        u_loss, u_jitter, u_reorder, u_dup = (self.rng.random() for _ in range(4))
        if imp.burst is None:
            lost = u_loss < imp.loss_pct / 100
        else:
            self._bad = (u_loss >= 1 / imp.burst) if self._bad else (u_loss < self._enter_bad)
            lost = self._bad
        delay_ms = max(0.0, imp.delay_ms + imp.jitter_ms * (2 * u_jitter - 1))
        fate = Fate(delay_s=delay_ms / 1000, reorder=u_reorder < imp.reorder_pct / 100,
                    duplicate=u_dup < imp.duplicate_pct / 100)
        if imp.blackhole is not None and imp.blackhole[0] <= elapsed_s < imp.blackhole[1]:
            if self.stream:
                fate.stall_until_s = imp.blackhole[1]
                stats.stalled += 1
                return fate
            fate.drop = "blackhole"
        elif lost:
            fate.drop = "loss"
        if fate.drop:
            stats.dropped[fate.drop] += 1
        return fate

    def sent(self, size: int, copies: int = 1, transit_s: float | None = None) -> None:
        """A packet went on; transit_s: how long the relay held it (datagrams)."""
        self.stats.forwarded += 1
        self.stats.bytes_forwarded += size
        self.stats.duplicated += copies - 1
        if transit_s is not None:
            if self._last_transit_s is not None:
                step_ms = abs(transit_s - self._last_transit_s) * 1000
                jitter = self.stats.transit_jitter_ms
                self.stats.transit_jitter_ms = round(jitter + (step_ms - jitter) / 16, 3)
            self._last_transit_s = transit_s
