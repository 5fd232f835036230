"""speech.stt openai: the agent's segments transcribed by an OpenAI-compatible service. The
service here is a loopback aiohttp server speaking /v1/audio/transcriptions that decodes the
uploaded WAV with the real Whisper model (as speaches would), or fails on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import wave

import numpy as np
import pytest
from aiohttp import web

from callers.audio import STT_RATE, resample
from callers.errors import CallFailed, ConfigError
from callers.speech.stt import Transcriber
from callers.speech.stt_openai import OpenAISTTConfig, OpenAITranscriber
from tests.fake_llm import ScriptedFailures, loopback_v1

KEY_ENV = "CALLFLEET_TEST_STT_KEY"
KEY = "sk-stt-canary-3b1f"


class SpeechService(ScriptedFailures):
    """POST /v1/audio/transcriptions, decoded with the real Whisper model."""

    def __init__(self, whisper: Transcriber | None = None) -> None:
        super().__init__()
        self.whisper = whisper

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        with wave.open(io.BytesIO(upload.file.read()), "rb") as wav:
            audio = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
            rate, channels = wav.getframerate(), wav.getnchannels()
        self.requests.append({"auth": request.headers.get("Authorization"), "rate": rate,
                              "channels": channels, "samples": audio.size,
                              "fields": {k: v for k, v in form.items() if k != "file"}})
        failed = await self.failure(KEY)
        if failed is not None:
            return failed
        text = (await self.whisper.transcribe(audio, form.get("prompt"))).text
        return web.json_response({"text": text})


@contextlib.asynccontextmanager
async def serving(service: SpeechService):
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", service.handle)
    async with loopback_v1(app, shutdown_timeout=0.5) as service.url:
        yield service


@pytest.fixture(scope="module")
def whisper():
    w = Transcriber()
    yield w
    w.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def config(url: str, **changes) -> OpenAISTTConfig:
    return OpenAISTTConfig(base_url=url, model="tiny.en", api_key_env=KEY_ENV, **changes)


async def test_the_service_hears_the_segment_as_16k_wav_with_the_key_and_prompt(
        whisper, synth, key):
    audio = resample(await synth.synthesize("What is your first name?"), synth.sample_rate,
                     STT_RATE)
    async with serving(SpeechService(whisper)) as service:
        stt = OpenAITranscriber(config(service.url))
        got = await stt.transcribe(audio, prompt="A bank's agent asks for details.")
        stt.close()
    assert "first name" in got.text.lower()
    (request,) = service.requests
    assert request["auth"] == f"Bearer {KEY}"
    assert (request["rate"], request["channels"], request["samples"]) == (STT_RATE, 1, audio.size)
    assert request["fields"]["model"] == "tiny.en" and request["fields"]["language"] == "en"
    assert request["fields"]["prompt"] == "A bank's agent asks for details."


async def test_a_server_error_is_retried_once_then_fails_the_call_named(whisper, key):
    async with serving(SpeechService(whisper)) as service:
        service.fail = [("status", 503), ("status", 500)]
        stt = OpenAITranscriber(config(service.url))
        with pytest.raises(CallFailed) as failed:
            await stt.transcribe(np.zeros(STT_RATE, np.int16))
        stt.close()
    assert failed.value.reason == "stt_unavailable" and len(service.requests) == 2
    assert "HTTP 500" in failed.value.detail and KEY not in failed.value.detail
    assert "boom" not in failed.value.detail  # the body is never echoed


async def test_a_client_error_is_not_retried(whisper, key):
    async with serving(SpeechService(whisper)) as service:
        service.fail = [("status", 400)]
        stt = OpenAITranscriber(config(service.url))
        with pytest.raises(CallFailed, match="HTTP 400"):
            await stt.transcribe(np.zeros(STT_RATE, np.int16))
        stt.close()
    assert len(service.requests) == 1


async def test_a_slow_service_fails_within_two_timeouts_never_hangs(whisper, key):
    async with serving(SpeechService(whisper)) as service:
        service.fail = [("sleep", 5.0), ("sleep", 5.0)]
        stt = OpenAITranscriber(config(service.url, timeout_s=0.3))
        began = time.monotonic()
        with pytest.raises(CallFailed, match="no answer in time"):
            await stt.transcribe(np.zeros(STT_RATE, np.int16))
        took = time.monotonic() - began
        stt.close()
    assert took < 2 * 0.3 + 0.5 and len(service.requests) == 2


def test_a_missing_key_variable_is_named_and_no_value_is_shown(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ENV):
        OpenAITranscriber(config("http://127.0.0.1:9/v1"))


async def test_a_call_whose_stt_service_is_down_fails_stt_unavailable_in_bounded_time(
        whisper, key, monkeypatch):
    import callers.session as session_module
    from callers.persona import resolve_persona
    from callers.session import CallerModels, CallSession
    from callers.transport import Target
    from tests.fake_transport import FakeAgentTransport, FakeSTT, FakeTTS

    def fake_transport(target, clock, outgoing, events, codec=None):
        return FakeAgentTransport(target, clock, outgoing, events,
                                  script=["How can I help you today?"], stt=FakeSTT())

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    async with serving(SpeechService(whisper)) as service:
        service.fail = [("status", 503)] * 4
        stt = OpenAITranscriber(config(service.url))
        session = CallSession(resolve_persona("cooperative-john"), 1, Target("fake://agent"),
                              CallerModels(stt, FakeTTS()), call_id="stt-down")
        began = time.monotonic()
        record = await asyncio.wait_for(session.run(), 30)
        stt.close()
    assert record.status == "failed" and record.failure_reason == "stt_unavailable"
    assert "HTTP 503" in record.failure_detail and time.monotonic() - began < 20


def test_run_config_needs_the_service_section_and_its_key_variable(tmp_path, monkeypatch):
    from orchestration.config import load_run_config

    path = tmp_path / "run.yaml"
    base = ("personas: {cooperative-john: 1}\n"
            "load: {total_calls: 1, max_concurrency: 1, calls_per_second: 1}\n")
    path.write_text(base + "speech: {stt: openai}\n")
    with pytest.raises(ConfigError, match="stt: openai needs an openai: section"):
        load_run_config(path)
    path.write_text(base + "speech: {stt: openai, openai: "
                    f"{{base_url: 'http://127.0.0.1:8000/v1', model: tiny.en, "
                    f"api_key_env: {KEY_ENV}}}}}\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"environment variable {KEY_ENV}"):
        load_run_config(path)
    monkeypatch.setenv(KEY_ENV, KEY)
    config = load_run_config(path)
    assert config.speech.openai_dict()["model"] == "tiny.en"
    assert KEY not in json.dumps(config.speech.openai_dict())
