"""Micro-batched speech to text: the segments a host's calls need transcribed within a short
window are decoded together, each batch padded only to its longest segment (and at least
MIN_WINDOW_S). On CPU the defaults decode one segment at a time (see WINDOW_MS): the short
window is what saves the CPU.

Whisper decodes one segment through a 30 s window today (callers.speech.stt): the encoder's cost is
per window, not per second of speech, and a 2 s answer pays for 30 s. Here a batch is padded
to its longest segment plus PAD_S of silence and goes through the CTranslate2 model once.

Whisper was trained on 30 s windows; in a much shorter one it loops, saying the segment again
and again into the padding. So the window is never under MIN_WINDOW_S, a batch is decoded
with timestamps, the text of any segment Whisper places after the end of the real audio is
dropped, and an item that ran into the token cap without closing its segment (a loop) is
decoded again alone, the unbatched way (benchmarks/stt_batching.py measures both).
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from callers.audio import STT_RATE
from callers.priority import lower_this_thread
from callers.speech.stt import Transcriber, Transcript

PAD_S = 0.5  # silence after the longest segment: Whisper needs some to end its last word
# Below ~10 s Whisper tiny.en loops on short segments (measured: 64 % WER at 2-8 s windows
# against 16 % at 30 s; 16 % again at 10 s, a third of the cost).
MIN_WINDOW_S = 10.0
END_MARGIN_S = 0.1  # a segment starting this close to the audio's end is in the padding
# On CPU, batching itself saves nothing: CTranslate2 int8 on one thread decodes 8 segments
# in one batch at 0.9x the segments per CPU-second of 8 lone decodes through the same short
# window (benchmarks/stt_batching.py), and a batch's segments all wait for its last one. So a
# request never waits for others (window 0) and goes alone (batch of 1): the short window is
# the saving, a capacity run's STT tail is 3-5x shorter. Larger batches are for a GPU.
WINDOW_MS = 0.0  # how long a request waits for others to join its batch
MAX_BATCH = 1
MAX_BATCH_S = 30.0  # Whisper's window: a longer segment is decoded alone, as before
TOKENS_PER_S = 12  # the token cap: fast speech is ~5 tokens a second
TOKENS_EXTRA = 12


@dataclass
class _Request:
    audio: np.ndarray
    prompt: str | None
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)
    due: float = math.inf  # perf_counter time its caller needs the text by


@dataclass
class BatchStats:
    batches: int = 0
    segments: int = 0
    fallbacks: int = 0  # items decoded again alone (a loop, or too long to batch)
    dropped: int = 0  # requests cancelled before their batch (a superseded early decode)
    past_due: int = 0  # segments decoded after their caller needed them (its reply is late)
    decode_s: float = 0.0  # the decode thread's time in batches, fallbacks included
    wait_s: float = 0.0  # requests' time queued before their batch began

    def as_dict(self) -> dict:
        n = self.segments
        return {"batches": self.batches, "segments": n, "fallbacks": self.fallbacks,
                "dropped": self.dropped, "past_due": self.past_due,
                "mean_batch": round(n / self.batches, 2) if self.batches else None,
                "decode_ms_per_batch": round(1000 * self.decode_s / self.batches, 1)
                if self.batches else None,
                "queued_ms_mean": round(1000 * self.wait_s / n, 1) if n else None}


class BatchedTranscriber:
    """Same interface as stt.Transcriber (transcribe(audio16k, prompt) -> Transcript);
    one decode thread, so batches run one after another while the next one gathers."""

    def __init__(self, model=None, *, cpu_threads: int = 1, window_ms: float = WINDOW_MS,
                 max_batch: int = MAX_BATCH, device: str = "cpu") -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.alone = Transcriber(model, cpu_threads=cpu_threads, device=device)
        self.model_ref = self.alone.model_ref
        self._whisper = self.alone._model
        self._tokenizer = Tokenizer(self._whisper.hf_tokenizer, self._whisper.model.is_multilingual,
                                    task="transcribe", language="en")
        self.window_s = window_ms / 1000
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: list[_Request] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-batch",
                                        initializer=lower_this_thread)

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None, *,
                         needed_in_s: float | None = None) -> Transcript:
        """needed_in_s: the most urgent request is decoded first (its caller's reply is due
        soonest); None, last: text no reply waits for."""
        if audio16k.size > MAX_BATCH_S * STT_RATE:
            self.stats.fallbacks += 1
            return await self.alone.transcribe(audio16k, prompt)
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._gather(), name="stt-batcher")
        request = _Request(audio16k, prompt, loop.create_future())
        if needed_in_s is not None:
            request.due = request.queued + needed_in_s
        self._queue.append(request)
        self._wake.set()
        return await request.future

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:  # woken by a request that joined the batch just taken
                continue
            # the first request waits up to the window for others to join it
            deadline = self._queue[0].queued + self.window_s
            while len(self._queue) < self.max_batch and time.perf_counter() < deadline:
                await asyncio.sleep(min(0.005, max(0.0, deadline - time.perf_counter())))
            live = [r for r in self._queue if not r.future.done()]  # cancelled: not decoded
            live.sort(key=lambda r: r.due)  # earliest deadline first (stable: then FIFO)
            self.stats.dropped += len(self._queue) - len(live)
            batch, self._queue = live[:self.max_batch], live[self.max_batch:]
            if self._queue:
                self._wake.set()
            if not batch:
                continue
            began = time.perf_counter()
            self.stats.wait_s += sum(began - r.queued for r in batch)
            try:
                texts = await loop.run_in_executor(self._pool, self.decode_batch,
                                                   [(r.audio, r.prompt) for r in batch])
            except Exception as e:  # every caller of the batch learns it failed
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            done = time.perf_counter()
            self.stats.past_due += sum(done > r.due for r in batch)
            for r, transcript in zip(batch, texts, strict=True):
                if not r.future.done():
                    r.future.set_result(transcript)

    def decode_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]:
        """Decode segments together (in the calling thread); each Transcript's seconds is the
        whole batch's decode time."""
        began = time.perf_counter()
        w, tok = self._whisper, self._tokenizer
        longest = max(a.size for a, _ in items)
        length = max(longest + int(PAD_S * STT_RATE), int(MIN_WINDOW_S * STT_RATE))
        features = np.stack([
            w.feature_extractor(np.pad(a.astype(np.float32) / 32768.0, (0, length - a.size)))
            for a, _ in items])
        frames = min(features.shape[-1], w.feature_extractor.nb_max_frames)
        features = features[..., :frames - frames % 2]
        prompts = [w.get_prompt(tok, tok.encode(" " + p.strip()) if p else [],
                                without_timestamps=False) for _, p in items]
        cap = TOKENS_EXTRA + math.ceil(TOKENS_PER_S * length / STT_RATE)
        max_length = min(w.max_length, max(map(len, prompts)) + cap)
        results = w.model.generate(w.encode(features), prompts, beam_size=1,
                                   max_length=max_length, suppress_blank=True,
                                   suppress_tokens=[-1])
        texts: list[str | None] = [
            self._read(r.sequences_ids[0], a.size / STT_RATE, max_length - len(prompt) - 1)
            for r, (a, _), prompt in zip(results, items, prompts, strict=True)]
        self.stats.batches += 1
        self.stats.segments += len(items)
        seconds = time.perf_counter() - began
        out = []
        for text, (audio, prompt) in zip(texts, items, strict=True):
            if text is None:  # it looped: decode it alone, through the 30 s window
                self.stats.fallbacks += 1
                out.append(self.alone.transcribe_sync(audio, prompt))
            else:
                out.append(Transcript(text, seconds))
        self.stats.decode_s += time.perf_counter() - began
        return out

    def _read(self, ids: list[int], duration_s: float, cap: int) -> str | None:
        """The text of the segments Whisper places inside the real audio; None when the last
        segment never closed before the token cap (Whisper looped)."""
        tok = self._tokenizer
        kept: list[int] = []
        begin: float | None = None
        segment: list[int] = []
        for token in ids:
            if token < tok.timestamp_begin:
                segment.append(token)
                continue
            t = (token - tok.timestamp_begin) * 0.02
            if begin is None:
                begin, segment = t, []
            else:
                if begin < duration_s - END_MARGIN_S:
                    kept.extend(segment)
                begin = None
        if begin is not None and segment:  # an open segment: its end was never said
            if len(ids) >= cap:
                return None
            if begin < duration_s - END_MARGIN_S:
                kept.extend(segment)
        return tok.decode([t for t in kept if t < tok.eot]).strip()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.alone.close()
