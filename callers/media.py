"""Media in and out of a call, stamped on one monotonic clock: the outgoing 20 ms pacer and
playout (every transport), and aiortc's receive path (WebRTC)."""

from __future__ import annotations

import asyncio
import statistics
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callers.audio import FRAME_MS, STT_RATE, WIRE_RATE, StreamResampler
from callers.audio import samples_per_frame as spf

WIRE_FRAME = spf(WIRE_RATE)
STT_FRAME = spf(STT_RATE)
# aiortc's audio jitter buffer holds 4 packets (prefetch) before releasing one, so frames
# come out of recv() about 80 ms after they arrived. Received audio is stamped with when its
# RTP packet arrived (see received_frames); this assumed delay is the fallback for a track
# whose packet arrivals are unknown.
RECEIVE_BUFFER_MS = 80.0
# received_frames anchors the stream's own timeline (RTP timestamps) on our clock by the
# earliest arrival over this much of the stream: the least-delayed packet, not the first one.
ANCHOR_WINDOW_MS = 10_000.0
MAX_FILL_MS = 2_000.0  # a gap in the RTP timestamps up to this is filled with silence
# A packet can arrive later than the stream's schedule (anchor + its position) says: the
# sender handed it to the network late (its event loop was busy: that audio left late, and is
# heard late), or our event loop read it late (our lag, not the agent's). Lateness up to
# LATE_ALLOWANCE_MS is taken as ours and ignored; beyond it the audio is stamped no earlier
# than its arrival less the allowance, and that extra delay then relaxes by RELAX_MS per 20 ms
# (as an adaptive playout buffer catches up), so stamps keep rising 15 ms or more per frame.
LATE_ALLOWANCE_MS = 20.0
RELAX_MS = 5.0


class Clock:
    """Milliseconds since the call started, on time.monotonic()."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0


@dataclass
class Utterance:
    """Audio to send, at the wire rate and at 16 kHz (for the recording), with its voiced spans.

    Several spans are one utterance split by deliberate pauses (a hesitation): the Playout
    reports speech_end/pause_start and pause_end/speech_start around each pause.
    """

    text: str
    pcm48: np.ndarray
    pcm16: np.ndarray
    spans: list[tuple[int, int]]  # first and last voiced sample of each part, in pcm48 samples
    mode: str = "turn"  # "turn" | "barge_in" | "backchannel" | "prompt"
    turn_end: bool = True
    start_at_ms: float | None = None  # the first sample plays at this clock time, not earlier
    done: asyncio.Future | None = None
    played: int = 0
    start_ms: float | None = None
    end_ms: float | None = None
    interrupted: bool = False
    marks: list[tuple[int, str]] = field(init=False)  # (sample, event), in playing order
    next_mark: int = 0  # index into marks of the next one to report

    def __post_init__(self) -> None:
        self.marks = _marks(self.spans)

    @property
    def voiced(self) -> tuple[int, int]:
        return self.spans[0][0], self.spans[-1][1]

    def delay_start(self, samples: int) -> None:
        """Prepend silence (a sub-frame start offset) before anything has played."""
        pad16 = samples // (WIRE_RATE // STT_RATE)
        self.pcm48 = np.concatenate([np.zeros(samples, np.int16), self.pcm48])
        if self.pcm16.size:
            self.pcm16 = np.concatenate([np.zeros(pad16, np.int16), self.pcm16])
        self.spans = [(a + samples, b + samples) for a, b in self.spans]
        self.marks = _marks(self.spans)


def _marks(spans: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """(sample, event) for every voiced start and end, with the pauses between parts."""
    marks: list[tuple[int, str]] = []
    for i, (first, last) in enumerate(spans):
        if i:
            marks.append((first, "pause_end"))
        marks.append((first, "speech_start"))
        marks.append((last, "speech_end"))
        if i < len(spans) - 1:
            marks.append((last, "pause_start"))
    return marks


@dataclass
class Playout:
    """What the outgoing track plays next; reports voiced starts and ends on the clock.

    delay_ms is what the line adds after the Playout (a filter's delay), so reported times
    are when the audio leaves, not when it was mixed.
    """

    on_event: Callable[[str, float, Utterance], None] = lambda kind, t, u: None
    queue: deque[Utterance] = field(default_factory=deque)
    delay_ms: float = 0.0

    def say(self, utterance: Utterance) -> asyncio.Future:
        utterance.done = asyncio.get_running_loop().create_future()
        self.queue.append(utterance)
        return utterance.done

    @property
    def speaking(self) -> bool:
        return bool(self.queue)

    def stop(self, t_ms: float) -> None:
        """Cut everything queued (barge-in on the agent side, or hang-up)."""
        while self.queue:
            utterance = self.queue.popleft()
            utterance.interrupted = True
            if utterance.start_ms is not None and utterance.end_ms is None:
                marks = utterance.marks[utterance.next_mark:]
                utterance.end_ms = t_ms
                if marks and marks[0][1] == "pause_end":  # stopped inside a pause
                    self.on_event("pause_end", t_ms, utterance)
                else:
                    self.on_event("speech_end", t_ms, utterance)
            _resolve(utterance)

    def next_frame(self, t_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """The next 20 ms at 48 kHz and 16 kHz; t_ms is when this frame is handed to the wire."""
        out48 = np.zeros(WIRE_FRAME, np.int16)
        out16 = np.zeros(STT_FRAME, np.int16)
        if not self.queue:
            return out48, out16
        u = self.queue[0]
        if u.played == 0 and u.start_at_ms is not None:
            wait_ms = u.start_at_ms - self.delay_ms - t_ms
            if wait_ms >= FRAME_MS:
                return out48, out16
            if wait_ms > 0:
                u.delay_start(int(wait_ms * WIRE_RATE / 1000) // 3 * 3)
        a, b = u.played, min(u.played + WIRE_FRAME, u.pcm48.size)
        out48[: b - a] = u.pcm48[a:b]
        a16, b16 = a // 3, min(b // 3, u.pcm16.size)
        out16[: max(0, b16 - a16)] = u.pcm16[a16:b16]
        marks = u.marks
        while u.next_mark < len(marks) and a <= marks[u.next_mark][0] < b + (b == u.pcm48.size):
            sample, kind = marks[u.next_mark]
            u.next_mark += 1
            t = t_ms + self.delay_ms + (sample - a) / WIRE_RATE * 1000
            if kind == "speech_start" and u.start_ms is None:
                u.start_ms = t
            if kind == "speech_end" and u.next_mark == len(marks):
                u.end_ms = t
            self.on_event(kind, t, u)
        u.played = b
        if b >= u.pcm48.size:
            self.queue.popleft()
            _resolve(u)
        return out48, out16


def _resolve(utterance: Utterance) -> None:
    if utterance.done is not None and not utterance.done.done():
        utterance.done.set_result(utterance)


class OutgoingAudioTrack(MediaStreamTrack):
    """20 ms frames paced against a fixed deadline (start + pts/rate), so lateness self-corrects."""

    kind = "audio"

    def __init__(self, playout: Playout, clock: Clock, line=None) -> None:
        super().__init__()
        self.playout = playout
        self.clock = clock
        self.line = line  # a callers.line.CallerLine (noise, band limit, loss) or None
        self.sent16: list[tuple[float, np.ndarray]] = []  # (t_ms, 16 kHz frame) for the recording
        self.lateness_ms: list[float] = []
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        _, pcm48, _ = await self.paced_frame()
        frame = av.AudioFrame.from_ndarray(pcm48.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = WIRE_RATE
        frame.pts = self._pts - WIRE_FRAME
        frame.time_base = Fraction(1, WIRE_RATE)
        return frame

    async def paced_frame(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The next 20 ms (t_ms, 48 kHz, 16 kHz), once its deadline has come: every transport
        sends these (aiortc through recv(), a WebSocket sender loop directly)."""
        if self._start is None:
            self._start = time.monotonic()
        else:
            deadline = self._start + self._pts / WIRE_RATE
            wait = deadline - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.lateness_ms.append(max(0.0, -wait) * 1000)
        t_ms = self.clock.ms()
        pcm48, pcm16 = self.playout.next_frame(t_ms)
        if self.line is not None:
            pcm48, pcm16 = self.line.process(pcm48)
        self.sent16.append((t_ms, pcm16))
        self._pts += WIRE_FRAME
        return t_ms, pcm48, pcm16


class PacketArrivals:
    """When each RTP packet of one aiortc receiver reached us (time.monotonic()), by timestamp.

    A decoded frame's pts is its packet's RTP timestamp less the receiver's first one (aiortc's
    TimestampMapper), so the frame that comes out of the jitter buffer can be matched with the
    packet's arrival on the network.
    """

    KEEP = 512  # packets remembered: 10 s of 20 ms packets, far more than the jitter buffer holds

    def __init__(self, receiver) -> None:
        self._mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        self._times: OrderedDict[int, float] = OrderedDict()

    def add(self, timestamp: int, t: float) -> None:
        if timestamp not in self._times:
            self._times[timestamp] = t
            if len(self._times) > self.KEEP:
                self._times.popitem(last=False)

    def arrival(self, pts: int | None) -> float | None:
        """The monotonic arrival time of the packet a decoded frame came from, if known."""
        origin = getattr(self._mapper, "_origin", None)
        if pts is None or origin is None:
            return None
        return self._times.get((pts + origin) & 0xFFFFFFFF)


_ARRIVALS: weakref.WeakKeyDictionary[MediaStreamTrack, PacketArrivals] = (
    weakref.WeakKeyDictionary()
)


def _install_arrival_tap() -> None:
    """Note every RTP packet's arrival at aiortc's RTCRtpReceiver, keyed by its remote track.

    aiortc has no hook for it: this wraps RTCRtpReceiver._handle_rtp_packet once per process,
    which the DTLS transport awaits for each packet as soon as it has read and decrypted it.
    """
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    original = RTCRtpReceiver._handle_rtp_packet
    if getattr(original, "callfleet_tap", False):
        return

    async def handle_rtp_packet(self, packet, arrival_time_ms):
        t = time.monotonic()
        track = self._track
        if track is not None:
            arrivals = _ARRIVALS.get(track)
            if arrivals is None:
                arrivals = _ARRIVALS[track] = PacketArrivals(self)
            arrivals.add(packet.timestamp, t)
        return await original(self, packet, arrival_time_ms)

    handle_rtp_packet.callfleet_tap = True  # type: ignore[attr-defined]
    RTCRtpReceiver._handle_rtp_packet = handle_rtp_packet


_install_arrival_tap()


def packet_arrivals(track: MediaStreamTrack) -> PacketArrivals | None:
    """The packet arrivals of a remote aiortc track (None before its first packet, or for any
    other track)."""
    return _ARRIVALS.get(track)


class ArrivalAnchor:
    """Where a received stream's timeline lies on our clock: the minimum over the last
    window_ms of the stream of (arrival time - stream position), i.e. the least-delayed packet.

    Every later packet was delayed more (network queueing, our event loop busy), so anchoring on
    the first frame, or on each frame's own arrival, puts that delay into the stamps. The window
    lets the anchor follow a sender whose clock runs slow or that stalled without skipping
    timestamps, which a minimum over the whole call never would.
    """

    def __init__(self, window_ms: float = ANCHOR_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._mins: deque[tuple[float, float]] = deque()  # (position, offset), offsets rising

    def add(self, position_ms: float, arrival_ms: float) -> None:
        offset = arrival_ms - position_ms
        while self._mins and self._mins[-1][1] >= offset:
            self._mins.pop()
        self._mins.append((position_ms, offset))
        while self._mins[0][0] < position_ms - self.window_ms:
            self._mins.popleft()

    @property
    def offset_ms(self) -> float:
        """Clock time minus stream position (0 before the first packet)."""
        return self._mins[0][1] if self._mins else 0.0

    def reset(self) -> None:
        self._mins.clear()


@dataclass
class ReceiveStats:
    """How one call's received audio was stamped; summary() goes into the record's network."""

    buffer_ms: list[float] = field(default_factory=list)  # recv() time - packet arrival, per frame
    late_ms: list[float] = field(default_factory=list)  # packet arrival - its place on schedule
    frames: int = 0
    assumed: int = 0  # frames with no known packet arrival: stamped RECEIVE_BUFFER_MS early
    restarts: int = 0  # the stream's timeline jumped (timestamps went back, or a long gap)

    def summary(self) -> dict[str, float | int | None]:
        """receive_buffer_ms: median time a frame spent between the network and us (aiortc's
        jitter buffer and decoder), measured per frame; p95 likewise. receive_late_ms_p99/max:
        how much later than the stream's schedule packets arrived (the sender's stalls and our
        own reading delay)."""
        depth, late = self.buffer_ms, self.late_ms
        return {
            "receive_buffer_ms": round(statistics.median(depth), 1) if depth else None,
            "receive_buffer_ms_p95": (round(float(np.percentile(depth, 95)), 1)
                                      if depth else None),
            "receive_late_ms_p99": round(float(np.percentile(late, 99)), 1) if late else None,
            "receive_late_ms_max": round(max(late), 1) if late else None,
            "receive_frames": self.frames,
            "receive_frames_assumed_buffer": self.assumed,
        }


def _stream_position_ms(frame: av.AudioFrame) -> float | None:
    if frame.pts is None:
        return None
    time_base = frame.time_base or Fraction(1, frame.sample_rate)
    return float(frame.pts * time_base * 1000)


def _silence_like(frame: av.AudioFrame, ms: float) -> av.AudioFrame:
    """ms of silence in frame's format, layout and rate (the resampler takes no other)."""
    silent = av.AudioFrame(format=frame.format.name, layout=frame.layout.name,
                           samples=int(round(ms * frame.sample_rate / 1000)))
    for plane in silent.planes:
        plane.update(bytes(plane.buffer_size))
    silent.sample_rate = frame.sample_rate
    return silent


async def received_frames(
    track: MediaStreamTrack, clock: Clock, stats: ReceiveStats | None = None
) -> AsyncIterator[tuple[float, np.ndarray]]:
    """Every received frame as (t_ms, 20 ms of 16 kHz mono int16) until the track ends.

    t_ms is when that audio reached us from the network: the frame's place in the stream (its
    RTP timestamp) put on our clock by ArrivalAnchor, fed with each RTP packet's arrival time
    (or, where that is unknown, the time recv() returned it less RECEIVE_BUFFER_MS). A gap in
    the timestamps (lost packets) is filled with silence, so the 20 ms grid stays true.
    Audio whose packet came more than LATE_ALLOWANCE_MS after its schedule is stamped later
    (see there): it cannot have been heard before it arrived.
    stats, if given, collects the measured jitter-buffer depth and packet lateness.
    """
    stats = stats if stats is not None else ReceiveStats()
    resampler = StreamResampler(STT_RATE)
    anchor = ArrivalAnchor()
    pending = np.zeros(0, np.int16)
    out_ms = 0.0  # stream position of pending[0]
    next_ms: float | None = None  # stream position where the next frame should begin
    delay_ms = 0.0  # how much later than its schedule the audio is heard now (a late sender)
    delays: deque[tuple[float, float]] = deque(maxlen=8)  # (position, delay_ms) of recent frames

    def stamp(position_ms: float) -> float:
        """The time audio at this stream position was heard: by the frame it came in."""
        late = next((d for p, d in reversed(delays) if p <= position_ms + 0.5), delay_ms)
        return position_ms + anchor.offset_ms + late

    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        recv_ms = clock.ms()
        position = _stream_position_ms(frame)
        position = (next_ms or 0.0) if position is None else position
        arrivals = packet_arrivals(track)
        arrived = arrivals.arrival(frame.pts) if arrivals is not None else None
        stats.frames += 1
        if arrived is not None:
            arrived_ms = (arrived - clock.t0) * 1000
            stats.buffer_ms.append(recv_ms - arrived_ms)
        else:
            arrived_ms = recv_ms - RECEIVE_BUFFER_MS
            stats.assumed += 1
        gap = 0.0 if next_ms is None else position - next_ms
        if next_ms is None or gap > MAX_FILL_MS or gap < -1.0:
            if next_ms is not None:  # the timeline jumped: start it over at this frame
                stats.restarts += 1
                if pending.size:
                    tail = np.zeros(STT_FRAME, np.int16)
                    tail[: pending.size] = pending[:STT_FRAME]
                    yield stamp(out_ms), tail
            resampler = StreamResampler(STT_RATE)
            anchor.reset()
            pending = np.zeros(0, np.int16)
            out_ms = position
            delay_ms = 0.0
            delays.clear()
        elif gap > 1.0:  # lost packets: silence in their place, through the resampler
            pending = np.concatenate([pending, resampler.push_frame(_silence_like(frame, gap))])
        anchor.add(position, arrived_ms)
        late = arrived_ms - (position + anchor.offset_ms)
        if arrived is not None:
            stats.late_ms.append(late)
        frame_ms = frame.samples * 1000 / frame.sample_rate
        delay_ms = max(0.0, late - LATE_ALLOWANCE_MS, delay_ms - RELAX_MS * frame_ms / FRAME_MS)
        delays.append((position, delay_ms))
        next_ms = position + frame_ms
        pending = np.concatenate([pending, resampler.push_frame(frame)])
        while pending.size >= STT_FRAME:
            yield stamp(out_ms), pending[:STT_FRAME]
            pending = pending[STT_FRAME:]
            out_ms += FRAME_MS


def place_on_timeline(chunks: list[tuple[float, np.ndarray]], rate: int) -> np.ndarray:
    """Lay (t_ms, samples) chunks on one track at their times (for the stereo recording)."""
    if not chunks:
        return np.zeros(0, np.int16)
    end = max(int(t * rate / 1000) + c.size for t, c in chunks)
    track = np.zeros(max(0, end), np.int16)
    for t, c in chunks:
        i = max(0, int(t * rate / 1000))
        track[i : i + c.size] = c[: track.size - i]
    return track



def utterance_from_pcm(
    pcm: np.ndarray, rate: int, text: str, *, mode: str = "turn", record: bool = True,
    pause_at: list[tuple[int, int]] | None = None, crisp_end: bool = False,
) -> Utterance:
    """Prepare synthesized audio for the wire (48 kHz) and, if recorded, at 16 kHz.

    The voiced spans are found at 16 kHz, in the band that both sides' VAD and the agent's
    speech recognition hear: sound above 8 kHz (an "s" fading out) lasts longer than what a
    16 kHz listener receives, which put the caller's turn end up to 18 ms after the agent's.

    pause_at: (start, end) sample ranges of pcm that are deliberate pauses; each splits the
    voiced span into parts (a hesitation).
    crisp_end: cut the faint tail after the last sound above -40 dBFS (callers.audio
    CRISP_END_DBFS): the caller's synthesized speech, whose end the agent must hear where
    callfleet records it.
    """
    from callers.audio import crisp_end_ms, fade_out_at, resample, voiced_bounds

    pcm48 = resample(pcm, rate, WIRE_RATE)
    band16 = resample(pcm, rate, STT_RATE)
    cut_ms = crisp_end_ms(band16) if crisp_end else None
    if cut_ms is not None:
        pcm48, band16 = fade_out_at(pcm48, WIRE_RATE, cut_ms), fade_out_at(band16, STT_RATE, cut_ms)
    pcm16 = band16 if record else np.zeros(0, np.int16)
    up = WIRE_RATE // STT_RATE
    cuts = [0, *(x for a, b in pause_at or [] for x in (a, b)), pcm.size]
    spans = []
    for lo, hi in zip(cuts[::2], cuts[1::2], strict=True):
        lo16, hi16 = lo * STT_RATE // rate, hi * STT_RATE // rate
        first, last = voiced_bounds(band16[lo16:hi16], STT_RATE)
        if last > first:
            spans.append(((lo16 + first) * up, min((lo16 + last) * up, pcm48.size)))
    return Utterance(text, pcm48, pcm16, spans or [(0, 0)], mode=mode)
