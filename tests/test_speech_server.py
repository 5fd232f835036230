"""benchmarks/speech_server.py, the loopback speech service capacity.py --stt service runs
against: the callers' own OpenAI clients transcribe and speak through it with the real models."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from callers.audio import STT_RATE, resample
from callers.speech.stt_openai import OpenAISTTConfig, OpenAITranscriber
from callers.speech.tts_openai import OpenAISynthesizer, OpenAITTSConfig
from tests.fake_llm import loopback_v1

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from speech_server import SpeechServer  # noqa: E402


@pytest.fixture(scope="module")
def server():
    s = SpeechServer()
    yield s
    s.whisper.close()
    s.piper.close()


async def test_the_callers_clients_speak_and_hear_through_the_service(server, monkeypatch):
    monkeypatch.setenv("SPEECH_KEY", "loopback")
    async with loopback_v1(server.app()) as url:
        endpoint = {"base_url": url, "api_key_env": "SPEECH_KEY"}
        tts = OpenAISynthesizer(OpenAITTSConfig(**endpoint, model="piper", voice="joe"))
        stt = OpenAITranscriber(OpenAISTTConfig(**endpoint, model="tiny.en"))
        try:
            pcm = await tts.synthesize("What is your first name?")
            assert 0.8 < pcm.size / tts.sample_rate < 4.0  # a short question's worth of speech
            heard = await stt.transcribe(resample(pcm, tts.sample_rate, STT_RATE))
            assert "first name" in heard.text.lower(), heard.text
            silence = await stt.transcribe(np.zeros(STT_RATE, np.int16))
            assert "first name" not in silence.text.lower()
        finally:
            tts.close()
            stt.close()
    assert server.served == {"transcriptions": 2, "speech": 1}
