"""speech.tts openai: the caller's words spoken by an OpenAI-compatible service. The service here
is a loopback aiohttp server speaking /v1/audio/speech that renders with the real Piper voice
(as a speech server would with its own model), or fails on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import numpy as np
import pytest
from aiohttp import web

from callers.errors import FAILURE_REASONS, CallFailed, ConfigError
from callers.speech.stt_openai import wav_bytes
from callers.speech.tts import Synthesizer
from callers.speech.tts_cache import CachedSynthesizer, TTSCache
from callers.speech.tts_openai import OpenAISynthesizer, OpenAITTSConfig
from tests.fake_llm import ScriptedFailures, loopback_v1

KEY_ENV = "CALLFLEET_TEST_TTS_KEY"
KEY = "sk-tts-canary-9c2e"


class SpeechService(ScriptedFailures):
    """POST /v1/audio/speech, rendered with the real Piper voice as WAV or raw PCM."""

    def __init__(self, piper: Synthesizer) -> None:
        super().__init__()
        self.piper = piper

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"auth": request.headers.get("Authorization"), "body": body})
        failed = await self.failure(KEY)
        if failed is not None:
            return failed
        pcm = await self.piper.synthesize(body["input"], body.get("speed", 1.0))
        if body["response_format"] == "wav":
            return web.Response(body=wav_bytes(pcm, self.piper.sample_rate),
                                content_type="audio/wav")
        return web.Response(body=pcm.astype("<i2").tobytes(), content_type="audio/pcm")


@contextlib.asynccontextmanager
async def serving(service: SpeechService):
    app = web.Application()
    app.router.add_post("/v1/audio/speech", service.handle)
    async with loopback_v1(app, shutdown_timeout=0.5) as service.url:
        yield service


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def config(url: str, **changes) -> OpenAITTSConfig:
    return OpenAITTSConfig(**{"base_url": url, "model": "tts-1", "voice": "alloy",
                              "api_key_env": KEY_ENV, **changes})


async def test_speech_comes_back_at_the_configured_rate_with_the_key_and_speed(synth, key):
    text = "My name is John Smith."
    reference = await synth.synthesize(text, 1.2)  # Piper's durations do not vary run to run
    async with serving(SpeechService(synth)) as service:
        tts = OpenAISynthesizer(config(service.url, sample_rate=24_000))
        pcm = await tts.synthesize(text, rate=1.2, variant=3)
        tts.close()
    assert pcm.dtype == np.int16 and tts.sample_rate == 24_000
    expected = reference.size * 24_000 / synth.sample_rate  # the WAV's 22.05 kHz, resampled
    assert abs(pcm.size - expected) < 0.01 * 24_000, (pcm.size, expected)
    (request,) = service.requests
    assert request["auth"] == f"Bearer {KEY}"
    assert request["body"] == {"model": "tts-1", "input": text, "voice": "alloy",
                               "response_format": "wav", "speed": 1.2}


async def test_raw_pcm_is_read_at_the_configured_rate(synth, key):
    reference = await synth.synthesize("Yes.")
    async with serving(SpeechService(synth)) as service:
        tts = OpenAISynthesizer(config(service.url, response_format="pcm",
                                       sample_rate=synth.sample_rate))
        pcm = await tts.synthesize("Yes.")
        tts.close()
    assert pcm.size == reference.size and service.requests[0]["body"]["response_format"] == "pcm"


async def test_a_repeated_phrase_is_served_from_the_cache(synth, key):
    async with serving(SpeechService(synth)) as service:
        service_tts = OpenAISynthesizer(config(service.url))
        cache = TTSCache()
        first = await CachedSynthesizer(service_tts, cache).synthesize("Mm-hmm.", 1.0, 0)
        other_call = CachedSynthesizer(service_tts, cache)
        again = await other_call.synthesize("Mm-hmm.", 1.0, 2)  # a variant changes nothing here
        service_tts.close()
    assert again.tobytes() == first.tobytes() and len(service.requests) == 1
    assert other_call.stats()["hits"] == 1
    assert KEY not in repr(list(cache._entries)) and service_tts.voice_id.endswith("tts-1|alloy")


async def test_a_server_error_is_retried_once_then_fails_tts_unavailable(synth, key):
    async with serving(SpeechService(synth)) as service:
        service.fail = [("status", 503), ("status", 500)]
        tts = OpenAISynthesizer(config(service.url))
        with pytest.raises(CallFailed) as failed:
            await tts.synthesize("Hello.")
        tts.close()
    assert failed.value.reason == "tts_unavailable" and "tts_unavailable" in FAILURE_REASONS
    assert len(service.requests) == 2 and "HTTP 500" in failed.value.detail
    assert KEY not in failed.value.detail and "boom" not in failed.value.detail


async def test_a_slow_or_dead_service_fails_within_two_timeouts(synth, key):
    async with serving(SpeechService(synth)) as service:
        service.fail = [("sleep", 5.0), ("sleep", 5.0)]
        tts = OpenAISynthesizer(config(service.url, timeout_s=0.3))
        began = time.monotonic()
        with pytest.raises(CallFailed, match="no answer in time"):
            await tts.synthesize("Hello.")
        took = time.monotonic() - began
        tts.close()
    assert took < 2 * 0.3 + 0.5 and len(service.requests) == 2
    dead = OpenAISynthesizer(config(service.url, timeout_s=0.3))  # the server is gone now
    began = time.monotonic()
    with pytest.raises(CallFailed) as failed:
        await dead.synthesize("Hello.")
    dead.close()
    assert failed.value.reason == "tts_unavailable" and time.monotonic() - began < 1.0


def test_a_missing_key_variable_is_named_and_no_value_is_shown(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"speech.openai_tts: environment variable {KEY_ENV}"):
        OpenAISynthesizer(config("http://127.0.0.1:9/v1"))


def _call(monkeypatch, tts, script: list[str], call_id: str):
    import callers.session as session_module
    from callers.persona import resolve_persona
    from callers.session import CallerModels, CallSession
    from callers.transport import Target
    from tests.fake_transport import FakeAgentTransport, FakeSTT

    stt = FakeSTT()
    monkeypatch.setattr(session_module, "make_transport",
                        lambda target, clock, outgoing, events, codec=None: FakeAgentTransport(
                            target, clock, outgoing, events, script=script, stt=stt))
    persona = resolve_persona("cooperative-john")
    persona = persona.model_copy(update={"temperament": persona.temperament.model_copy(
        update={"reply_after_ms": 200})})
    return CallSession(persona, 1, Target("fake://agent"), CallerModels(stt, tts),
                       call_id=call_id)


async def test_a_call_speaks_through_the_service_and_never_records_the_key(
        synth, key, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    script = ["How can I help you today?", "What is your first name?", "Goodbye."]
    async with serving(SpeechService(synth)) as service:
        tts = OpenAISynthesizer(config(service.url))
        record = await asyncio.wait_for(_call(monkeypatch, tts, script, "tts-ok").run(), 30)
        tts.close()
    # The agent's short flow ends before the caller's goal: the call ran to its end.
    assert record.failure_reason == "goal_not_met", (record.failure_reason, record.failure_detail)
    spoken = [r["body"]["input"] for r in service.requests]
    caller_turns = [t["text"] for t in record.turns if t["speaker"] == "caller"]
    assert caller_turns and all(any(s in t for s in spoken) for t in caller_turns)
    assert all(r["auth"] == f"Bearer {KEY}" for r in service.requests)
    assert KEY not in json.dumps(record.to_dict()) and KEY not in caplog.text
    assert record.speech["tts"] == "openai" and record.speech["tts_base_url"] == service.url


async def test_a_call_whose_tts_service_is_down_fails_tts_unavailable_in_bounded_time(
        synth, key, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    async with serving(SpeechService(synth)) as service:
        service.fail = [("status", 503)] * 8
        tts = OpenAISynthesizer(config(service.url))
        began = time.monotonic()
        record = await asyncio.wait_for(
            _call(monkeypatch, tts, ["How can I help you today?", "Bye."], "tts-down").run(), 30)
        tts.close()
    assert record.status == "failed" and record.failure_reason == "tts_unavailable"
    assert "HTTP 503" in record.failure_detail and time.monotonic() - began < 20
    assert KEY not in json.dumps(record.to_dict()) and KEY not in caplog.text


RUN = ("personas: {cooperative-john: 1}\n"
       "load: {total_calls: 1, max_concurrency: 1, calls_per_second: 1}\n")
SECTION = f"{{base_url: 'http://127.0.0.1:8000/v1', model: tts-1, voice: alloy, " \
          f"api_key_env: {KEY_ENV}"


@pytest.mark.parametrize(("speech", "says"), [
    ("{tts: openai}", "tts: openai needs an openai_tts: section"),
    ("{tts: espeak}", "speech.tts: Input should be 'piper', 'openai' or 'serve'"),
    (f"{{tts: openai, openai_tts: {SECTION}, response_format: mp3}}}}",
     "speech.openai_tts.response_format: Input should be 'wav' or 'pcm'"),
    (f"{{tts: openai, openai_tts: {SECTION}, timeout_s: 0}}}}", "speech.openai_tts.timeout_s"),
    ("{tts: openai, openai_tts: {base_url: 'http://127.0.0.1:8000/v1', model: tts-1, "
     f"api_key_env: {KEY_ENV}}}}}", "speech.openai_tts.voice"),
    ("{tts: openai, openai_tts: {base_url: 'http://127.0.0.1:8000/v1', model: tts-1, "
     f"voice: alloy, api_key_env: {KEY}}}}}", "speech.openai_tts.api_key_env: must be the name"),
])
def test_a_bad_tts_section_is_one_line_naming_the_field(tmp_path, key, speech, says):
    from orchestration.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text(RUN + f"speech: {speech}\n")
    with pytest.raises(ConfigError) as bad:
        load_run_config(path)
    message = str(bad.value)
    assert says in message and "\n" not in message and KEY not in message, message


def test_run_config_needs_the_tts_key_variable_and_hands_hosts_the_section(
        tmp_path, monkeypatch):
    from orchestration.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text(RUN + f"speech: {{tts: openai, openai_tts: {SECTION}}}}}\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"speech.openai_tts.api_key_env: environment variable "
                                          f"{KEY_ENV}"):
        load_run_config(path)
    monkeypatch.setenv(KEY_ENV, KEY)
    speech = load_run_config(path).speech
    assert speech.openai_tts_dict()["voice"] == "alloy" and speech.openai_dict() is None
    assert speech.openai_tts_dict()["response_format"] == "wav"
    assert KEY not in json.dumps(speech.openai_tts_dict())
    path.write_text(RUN)
    assert load_run_config(path).speech.openai_tts_dict() is None  # piper by default


async def test_the_host_models_speak_through_the_service_and_load_no_piper(key, monkeypatch):
    import callers.session as session_module

    def no_piper(*_):
        raise AssertionError("Piper loaded with tts: openai")

    monkeypatch.setattr(session_module, "Synthesizer", no_piper)
    models = await session_module.load_caller_models(
        stt="none", tts="openai", openai_tts=config("http://127.0.0.1:9/v1").model_dump())
    assert isinstance(models.tts, OpenAISynthesizer)
    # A persona's Piper model means nothing to a service: it speaks every caller.
    assert await models.voice("/voices/other.onnx") is models.tts
