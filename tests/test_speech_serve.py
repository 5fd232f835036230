"""speech: {stt: serve, tts: serve}: Whisper and Piper as Ray Serve deployments on a local Ray
(num_cpus=2), reached through the clients every host uses (callers.serve_speech). One
deployment of each serves the whole module; the last tests delete them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import pytest

from callers.audio import STT_RATE, resample
from callers.errors import CallFailed, ConfigError
from callers.serve_speech import ServeSynthesizer, ServeTranscriber
from callers.tts_cache import CachedSynthesizer, TTSCache
from orchestration.config import ServeSpeechConfig, SpeechConfig, load_run_config

LINES = ["What is your first name?", "What amount of money is this about?",
         "Is there anything else I can help you with?"]
# 0.5 CPU each: the module's Ray has 2, and the fleet test needs one for its host.
SERVE = {"num_cpus": 0.5, "batch_wait_timeout_s": 0.2, "timeout_s": 10}


@pytest.fixture(scope="module")
def service():
    """The module's Ray and deployments: {"settings": side -> how to reach it}."""
    import ray

    from orchestration.speech_service import start_speech_service, stop_speech_service

    temp = tempfile.mkdtemp(prefix="cfserve-", dir="/tmp")  # short: Ray's socket paths
    state = {"settings": {}}
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp,
                 logging_level=logging.WARNING)
        state["settings"] = start_speech_service(
            SpeechConfig.model_validate({"stt": "serve", "tts": "serve", "serve": SERVE}),
            "test")
        # A host's client, made while the deployment is there (the last test deletes it)
        state["early_stt"] = ServeTranscriber(state["settings"]["stt"])
        yield state
    finally:
        stop_speech_service(state["settings"])  # {} once a test deleted them
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def clips(service):
    """LINES in the deployment's Piper voice, at 16 kHz."""
    async def speak():
        tts = ServeSynthesizer(service["settings"]["tts"])
        return [resample(await tts.synthesize(line), tts.sample_rate, STT_RATE)
                for line in LINES]
    return asyncio.run(speak())


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z ]+", " ", text.lower()).split()


async def test_concurrent_segments_share_one_batch_and_are_heard(service, clips):
    stt = await asyncio.to_thread(ServeTranscriber, service["settings"]["stt"])
    stats = stt._handle.stats
    before = Counter((await stats.remote())["batch_sizes"])
    texts = await asyncio.gather(*(stt.transcribe(c, prompt=None) for c in clips))
    batches = Counter((await stats.remote())["batch_sizes"]) - before
    assert batches == {len(clips): 1}, batches  # one CTranslate2 batch for the three
    for line, got in zip(LINES, texts, strict=True):
        assert len(set(words(line)) - set(words(got.text))) <= 1, (line, got.text)
    assert stt.requests == len(clips)


async def test_tts_over_serve_speaks_at_the_voices_rate_and_the_host_caches_it(service):
    tts = await asyncio.to_thread(ServeSynthesizer, service["settings"]["tts"])
    cached = CachedSynthesizer(tts, TTSCache())
    first = await cached.synthesize("Thank you, goodbye.", rate=1.1, variant=1)
    again = await cached.synthesize("Thank you, goodbye.", rate=1.1, variant=1)
    assert tts.sample_rate == 22_050 and first.dtype == np.int16
    assert 0.5 < first.size / tts.sample_rate < 3
    assert again is first and cached.stats()["hits"] == 1 and tts.requests == 1


async def test_a_call_over_serve_hears_the_agent_and_speaks(service, clips, monkeypatch):
    import callers.session as session_module
    from callers.persona import resolve_persona
    from callers.session import CallSession, load_caller_models
    from callers.transport import Target
    from tests.fake_transport import FakeAgentTransport

    script = [LINES[0], "Thank you, that is all done. Goodbye."]
    speech = {LINES[0]: clips[0]}

    def fake_transport(target, clock, outgoing, events, codec=None):
        return FakeAgentTransport(target, clock, outgoing, events, script=script, speech=speech)

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    models = await load_caller_models(stt="serve", tts="serve", serve=service["settings"])
    assert isinstance(models.stt, ServeTranscriber) and isinstance(models.tts, ServeSynthesizer)
    persona = resolve_persona("cooperative-john")
    persona = persona.model_copy(update={"temperament": persona.temperament.model_copy(
        update={"reply_after_ms": 200})})
    record = await asyncio.wait_for(CallSession(persona, 1, Target("fake://agent"), models,
                                                call_id="serve").run(), 30)
    assert record.failure_reason not in ("stt_unavailable", "tts_unavailable", "caller_error"), \
        record.failure_detail
    agent = [t["text"] for t in record.turns if t["speaker"] == "agent"]
    assert "first name" in agent[0].lower(), agent
    caller = [t["text"] for t in record.turns if t["speaker"] == "caller"]
    assert any("john" in t.lower() for t in caller), caller
    assert record.generator["tts_cache"]["misses"] >= 1


def test_the_fleet_reaches_the_deployments_from_its_hosts_and_deletes_them(
        service, tmp_path, monkeypatch):
    """A real host (a Ray actor) loads no model, calls an unreachable target, and the run
    deletes the deployments at its end."""
    from ray import serve

    import orchestration.speech_service as speech_service
    from orchestration.config import RunConfig
    from orchestration.fleet import Fleet
    from orchestration.store import RunStore

    settings = service["settings"]
    monkeypatch.setattr(speech_service, "start_speech_service", lambda speech, run_id: settings)
    config = RunConfig.model_validate({
        "target": {"url": "http://127.0.0.1:9/offer"},  # nothing listens: fails at once
        "personas": {"cooperative-john": 1}, "speech": {"stt": "serve", "tts": "serve"},
        "load": {"total_calls": 1, "max_concurrency": 1, "calls_per_second": 1},
        "fleet": {"hosts": 1, "audio": False}})

    async def go():
        with RunStore(tmp_path / "run") as store:
            fleet = Fleet(config, config.target.to_target(), store)
            return await asyncio.wait_for(fleet.run(), 120)

    [record] = asyncio.run(go())
    assert record["failure_reason"] == "signaling_unreachable", record["failure_detail"]
    names = set(serve.status().applications)
    assert not names & {s["app"] for s in settings.values()}, names
    service["settings"] = {}  # gone


async def test_a_deleted_deployment_fails_the_call_stt_unavailable_at_once(service, clips):
    from orchestration.speech_service import stop_speech_service

    await asyncio.to_thread(stop_speech_service, service["settings"])  # if the fleet has not
    service["settings"] = {}
    stt = service["early_stt"]
    stt.timeout_s, stt.requests = 1.0, 0
    began = time.monotonic()
    with pytest.raises(CallFailed) as failed:
        await stt.transcribe(clips[0])
    assert failed.value.reason == "stt_unavailable" and stt.requests == 2, failed.value
    assert time.monotonic() - began < 2 * stt.timeout_s + 1


def test_serve_options_have_sane_defaults_and_one_line_errors(tmp_path):
    base = {"personas": {"cooperative-john": 1},
            "load": {"total_calls": 1, "max_concurrency": 1, "calls_per_second": 1}}
    path = tmp_path / "run.yaml"

    def load(speech):
        path.write_text(json.dumps({**base, "speech": speech}))
        return load_run_config(path)

    speech = load({"stt": "serve"}).speech
    assert speech.served() == ["stt"] and speech.serve_options() == ServeSpeechConfig()
    assert ServeSpeechConfig().model_dump() == {
        "num_replicas": 1, "num_cpus": 1.0, "num_gpus": 0.0, "max_batch_size": 8,
        "batch_wait_timeout_s": 0.03, "timeout_s": 10.0}
    assert load({"tts": "serve", "serve": {"num_replicas": 3}}).speech.served() == ["tts"]
    for bad, expected in (
            ({"stt": "serve", "serve": {"num_replicas": 0}}, "speech.serve.num_replicas"),
            ({"stt": "serve", "serve": {"num_gpus": -1}}, "speech.serve.num_gpus"),
            ({"stt": "serve", "serve": {"max_batch_size": 2.5}}, "speech.serve.max_batch_size"),
            ({"tts": "serve", "serve": {"replicas": 2}}, "speech.serve.replicas: unknown field"),
            ({"stt": "batched", "serve": {}}, "a serve: section needs stt: serve or tts: serve"),
            ({"stt": "srve"}, "speech.stt")):
        with pytest.raises(ConfigError) as e:
            load(bad)
        assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)

    with pytest.MonkeyPatch.context() as patch:  # a machine without the serve extra
        patch.setitem(sys.modules, "ray.serve", None)
        with pytest.raises(ConfigError, match=r"speech.tts: serve needs Ray Serve.*callfleet\[serve\]"):
            load({"tts": "serve"})


def test_hosts_are_counted_from_the_cpus_the_deployments_leave():
    from orchestration.guards import hosts_guard

    speech = SpeechConfig.model_validate({"stt": "serve", "tts": "serve",
                                          "serve": {"num_replicas": 2, "num_cpus": 0.75}})
    assert speech.served_cpus() == 3.0 and SpeechConfig().served_cpus() == 0
    assert hosts_guard(4, 4.0, False).level == "ok"
    fails = hosts_guard(4, 4.0, False, served_cpus=speech.served_cpus())
    assert fails.level == "fail" and "set fleet.hosts to 1 or less" in fails.line, fails.line
    assert hosts_guard(None, 3.0, False, served_cpus=3.0).level == "fail"
