"""A TTS cache: synthesized audio shared by every call of one process, bounded by bytes.

Callers repeat themselves: greetings, backchannels ("mm-hmm"), fillers ("um,"), scripted
replies, the level sentence each call speaks once. After the first time a phrase costs a
dictionary look-up instead of a Piper run, and a hit never queues behind another call's
synthesis on the one TTS thread.

Determinism. Piper is not deterministic run to run: its VITS graph draws noise with an
unseeded RandomNormalLike whose generator lives in the onnxruntime session and advances with
every run (onnxruntime.set_seed only seeds sessions created after it), so the same text,
voice and scales give the same length but different samples each time. It cannot be seeded
per phrase. The cache therefore pins a key to its first synthesis in the process: every
later request, by any call of the host, gets those exact bytes. The key holds everything
that selects the audio (voice model, text, length, noise and volume scales).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import Future
from typing import Any

import numpy as np

from callers.speech.tts import TextToSpeech

DEFAULT_MAX_BYTES = 64 * 2**20  # ~25 minutes of 22.05 kHz int16 speech
_SYNTHESES: set[asyncio.Future] = set()  # syntheses in flight, outliving their requester


class TTSCache:
    """Audio by key, least recently used first out once the total passes max_bytes.

    Thread-safe. Stored arrays are read-only copies, so no caller can change what another
    call will hear. A key being synthesized is "in flight": a second request for it waits
    for that synthesis instead of starting its own.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._in_flight: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> np.ndarray | None:
        """The stored audio for key (counted as a hit), or None (not counted)."""
        with self._lock:
            pcm = self._entries.get(key)
            if pcm is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return pcm

    def claim(self, key: Hashable) -> tuple[Future, bool]:
        """(future of key's audio, True if the caller must synthesize it and settle())."""
        with self._lock:
            pcm = self._entries.get(key)
            if pcm is not None:  # stored between the caller's get() and now
                self._entries.move_to_end(key)
                self.hits += 1
                done: Future = Future()
                done.set_result(pcm)
                return done, False
            future = self._in_flight.get(key)
            if future is not None:
                self.hits += 1  # served without a synthesis of its own
                return future, False
            future = self._in_flight[key] = Future()
            self.misses += 1
            return future, True

    def settle(self, key: Hashable, future: Future, pcm: np.ndarray | None = None,
               error: BaseException | None = None) -> np.ndarray | None:
        """Store key's audio (or fail its waiters; a later request tries again)."""
        with self._lock:
            self._in_flight.pop(key, None)
            if error is None:
                pcm = _frozen(pcm)
                self._store(key, pcm)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(pcm)
        return pcm

    def _store(self, key: Hashable, pcm: np.ndarray) -> None:
        if pcm.nbytes > self.max_bytes:
            return  # bigger than the whole cache: served, not kept
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
        self._entries[key] = pcm
        self.bytes += pcm.nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.nbytes
            self.evictions += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries),
                    "bytes": self.bytes, "max_bytes": self.max_bytes,
                    "evictions": self.evictions}


def _frozen(pcm: np.ndarray | None) -> np.ndarray:
    out = np.array(pcm if pcm is not None else (), dtype=np.int16)  # a copy we own
    out.flags.writeable = False
    return out


class CachedSynthesizer:
    """A TextToSpeech behind a shared TTSCache, itself a TextToSpeech.

    One per call (CallerModels.speaker): the cache and the model are shared, the hits and
    misses counted here are this call's.
    """

    def __init__(self, synth: TextToSpeech, cache: TTSCache) -> None:
        self.synth = synth
        self.cache = cache
        self.hits = self.misses = 0

    @property
    def sample_rate(self) -> int:
        return self.synth.sample_rate

    @property
    def voice_id(self) -> str:
        return self.synth.voice_id

    def key(self, text: str, rate: float = 1.0, variant: int = 0) -> Hashable:
        cache_key = getattr(self.synth, "cache_key", None)
        if cache_key is not None:
            return cache_key(text, rate, variant)
        # A backend without voice_id (a test fake): this object is its voice.
        voice = (getattr(self.synth, "voice_id", None)
                 or f"{type(self.synth).__qualname__}@{id(self.synth)}")
        return (voice, text, round(rate, 3), variant)

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        """The audio for text, from the cache or synthesized (once, however many ask)."""
        key = self.key(text, rate, variant)
        pcm = self.cache.get(key)
        if pcm is not None:
            self.hits += 1
            return pcm
        future, mine = self.cache.claim(key)
        if mine:
            self.misses += 1
            # Its own task: a cancelled requester must not fail the others waiting on it.
            task = asyncio.ensure_future(self.synth.synthesize(text, rate, variant))
            _SYNTHESES.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(_SYNTHESES.discard)
            task.add_done_callback(lambda t: _settle_from_task(self.cache, key, future, t))
        else:
            self.hits += 1
        return await asyncio.shield(asyncio.wrap_future(future))

    def synthesize_sync(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        """Blocking synthesize, for threads (a backend with synthesize_sync: Piper, whose own
        thread rules apply)."""
        key = self.key(text, rate, variant)
        pcm = self.cache.get(key)
        if pcm is not None:
            self.hits += 1
            return pcm
        future, mine = self.cache.claim(key)
        if not mine:
            self.hits += 1
            return future.result()
        self.misses += 1
        try:
            made = self.synth.synthesize_sync(text, rate, variant)  # type: ignore[attr-defined]
        except BaseException as e:
            self.cache.settle(key, future, error=e)
            raise
        self.cache.settle(key, future, made)
        return future.result()

    def stats(self) -> dict[str, Any]:
        """This view's hits and misses (a call's, in its record)."""
        n = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / n, 3) if n else None}

    def close(self) -> None:
        """Nothing to release: the model belongs to whoever loaded it."""


def _settle_from_task(cache: TTSCache, key: Hashable, future: Future, task: asyncio.Future
                      ) -> None:
    error = asyncio.CancelledError() if task.cancelled() else task.exception()
    cache.settle(key, future, None if error else task.result(), error=error)  # to every waiter
