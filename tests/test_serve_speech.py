"""`speech: {stt: serve, tts: serve}`: the hosts' clients of the run's Ray Serve deployments
(callers/speech/serve_speech.py) against a fake handle, the config section, and the guard that the
replicas fit the cluster. tests/test_serve_speech_e2e.py runs the real deployments."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

import orchestration.config as config_module
from callers.errors import CallFailed, ConfigError
from callers.speech.serve_speech import ServeSynthesizer, ServeTranscriber
from orchestration.config import RunConfig, load_run_config
from orchestration.guards import check_hosts, speech_service_cpus, speech_service_guard


class _Method:
    """handle.<method>: .remote(*args) gives an awaitable, as a DeploymentHandle's does."""

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple] = []
        self.cancelled = 0

    def remote(self, *args):
        self.calls.append(args)
        method = self

        class Response:
            def __await__(self):
                return method.answer(*args).__await__()

            def cancel(self):
                method.cancelled += 1

        return Response()


class FakeHandle:
    def __init__(self, **answers):
        for name, answer in answers.items():
            setattr(self, name, _Method(answer))


async def _says(text):
    return text


async def test_transcribe_sends_audio_and_prompt_and_returns_the_text():
    async def heard(audio, prompt, needed_in_s):
        return f"{audio.size} samples, asked {prompt}, due in {needed_in_s} s"

    handle = FakeHandle(transcribe=heard)
    stt = ServeTranscriber(handle, "callfleet-stt-r1", timeout_s=1.0)
    result = await stt.transcribe(np.zeros(1600, np.int16), "your name?", needed_in_s=0.3)
    assert result.text == "1600 samples, asked your name?, due in 0.3 s"
    assert result.seconds >= 0 and stt.requests == 1


async def test_a_deployment_that_does_not_answer_is_tried_twice_then_fails_the_call_named():
    async def never(audio, prompt, needed_in_s):
        await asyncio.sleep(60)

    handle = FakeHandle(transcribe=never)
    stt = ServeTranscriber(handle, "callfleet-stt-r1", timeout_s=0.05)
    with pytest.raises(CallFailed) as info:
        await asyncio.wait_for(stt.transcribe(np.zeros(160, np.int16)), 2.0)
    assert info.value.reason == "stt_unavailable"
    assert info.value.detail == "Ray Serve application callfleet-stt-r1: no answer in time"
    assert len(handle.transcribe.calls) == 2 and handle.transcribe.cancelled == 2


async def test_a_replica_error_fails_the_call_with_its_first_line_only():
    async def broken(text, rate, variant, model):
        raise RuntimeError("replica died\n" + "Traceback line\n" * 50 + "x" * 5000)

    handle = FakeHandle(synthesize=broken)
    tts = ServeSynthesizer(handle, "callfleet-tts-r1", 1.0, sample_rate=22050, voice_id="joe")
    with pytest.raises(CallFailed) as info:
        await tts.synthesize("Hello.")
    assert info.value.reason == "tts_unavailable"
    assert info.value.detail == ("Ray Serve application callfleet-tts-r1: "
                                 "RuntimeError: replica died")
    assert len(handle.synthesize.calls) == 2  # tried again once


async def test_a_first_try_that_fails_is_answered_by_the_second():
    tries = []

    async def flaky(audio, prompt, needed_in_s):
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("replica restarting")
        return "my name is John"

    stt = ServeTranscriber(FakeHandle(transcribe=flaky), "app", timeout_s=1.0)
    assert (await stt.transcribe(np.zeros(160, np.int16))).text == "my name is John"


async def test_the_whisper_replica_decodes_the_most_urgent_request_it_holds_first(monkeypatch):
    from callers.speech.stt import Transcript
    from orchestration.speech_service import WhisperReplica

    replica = WhisperReplica(num_gpus=0, max_batch_size=1, batch_wait_ms=0)
    clips = [np.full(1600 * (i + 1), 100 * (i + 1), np.int16) for i in range(4)]
    order: list[int] = []

    def decode(items):
        order.append(next(i for i, c in enumerate(clips) if c is items[0][0]))
        return [Transcript(f"clip {order[-1]}", 0.0) for _ in items]

    monkeypatch.setattr(replica.stt, "decode_batch", decode)
    try:
        # held together: replies due in 1.5 s, (none: a call's last words), 2 s and 0.7 s
        texts = await asyncio.gather(replica.transcribe(clips[0], None, 1.5),
                                     replica.transcribe(clips[1], None),
                                     replica.transcribe(clips[2], None, 2.0),
                                     replica.transcribe(clips[3], "a prompt", 0.7))
        assert order == [3, 0, 2, 1]
        assert texts == ["clip 0", "clip 1", "clip 2", "clip 3"]
    finally:
        replica.stt.close()


def test_the_summary_sums_every_replicas_counts():
    from orchestration.speech_service import merged_stats

    one = {"replica": "a", "batches": 3, "segments": 6, "fallbacks": 1, "dropped": 0,
           "past_due": 2, "decode_s": 0.3, "wait_s": 0.6}
    two = {"replica": "b", "batches": 1, "segments": 1, "fallbacks": 0, "dropped": 1,
           "past_due": 0, "decode_s": 0.1, "wait_s": 0.1}
    stt = merged_stats("stt", [one, two])
    assert (stt["batches"], stt["segments"], stt["past_due"], stt["dropped"]) == (4, 7, 2, 1)
    assert stt["mean_batch"] == 1.75 and stt["decode_ms_per_batch"] == 100.0
    assert stt["queued_ms_mean"] == 100.0 and stt["replicas_reporting"] == 2
    tts = merged_stats("tts", [{"replica": "a", "lines": 5}, {"replica": "b", "lines": 7}])
    assert tts == {"lines": 12, "replicas_reporting": 2}


async def test_the_synthesizer_asks_the_voice_once_and_sends_everything_that_selects_audio():
    async def describe(model):
        return (16000 if model else 22050), f"voice:{model or 'bundled'}"

    async def speak(text, rate, variant, model):
        return np.full(len(text), variant, np.int16)

    handle = FakeHandle(describe=describe, synthesize=speak)
    tts = await ServeSynthesizer.connect(handle, "tts-app", 1.0)
    assert (tts.sample_rate, tts.voice_id) == (22050, "voice:bundled")
    other = await tts.in_voice("/voices/amy.onnx")
    assert (other.sample_rate, other.voice_id) == (16000, "voice:/voices/amy.onnx")
    pcm = await other.synthesize("Hi there", rate=1.2, variant=3)
    assert pcm.tolist() == [3] * 8
    assert handle.synthesize.calls == [("Hi there", 1.2, 3, "/voices/amy.onnx")]
    assert handle.describe.calls == [(None,), ("/voices/amy.onnx",)]


# --- the config and the guard -------------------------------------------------------------------

BASE = {"personas": {"cooperative-john": 1},
        "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1}}


def _write(tmp_path, speech):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, "speech": speech}))
    return path


def test_serve_backends_and_their_sizes_are_read(tmp_path):
    config = load_run_config(_write(tmp_path, {
        "stt": "serve", "tts": "serve",
        "serve": {"stt": {"replicas": 2, "num_cpus": 0.5, "max_batch_size": 8},
                  "tts": {"num_gpus": 0}, "timeout_s": 3}}))
    speech = config.speech
    assert speech.uses_serve and speech.serve.stt.replicas == 2
    assert speech.serve.stt.max_batch_size == 8 and speech.serve.timeout_s == 3
    # The defaults hold for what a section leaves out: CPU replicas, no batch, no wait.
    assert (speech.serve.tts.max_batch_size, speech.serve.tts.batch_wait_ms) == (1, 0.0)
    assert speech_service_cpus(config) == 2 * 0.5 + 1.0


@pytest.mark.parametrize(("serve", "expected"), [
    ({"stt": {"replicas": 0}},
     "speech.serve.stt.replicas: Input should be greater than or equal to 1"),
    ({"stt": {"gpus": 1}}, "speech.serve.stt.gpus: unknown field"),
    ({"timeout_s": 0}, "speech.serve.timeout_s: Input should be greater than 0"),
])
def test_bad_serve_sections_are_one_line_errors(tmp_path, serve, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_run_config(_write(tmp_path, {"stt": "serve", "serve": serve}))
    assert "\n" not in str(info.value)


def test_serve_without_ray_serve_installed_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "serve_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"speech: tts: serve needs Ray Serve "
                                          r"\(pip install 'callfleet\[serve\]'\)"):
        load_run_config(_write(tmp_path, {"tts": "serve"}))


def _config(**speech) -> RunConfig:
    return RunConfig.model_validate({**BASE, "speech": speech, "fleet": {"hosts": 2}})


def test_the_guard_fails_naming_the_field_when_the_cluster_has_no_gpu():
    config = _config(stt="serve", serve={"stt": {"num_gpus": 1, "num_cpus": 0}})
    guard = speech_service_guard(config, cpus=8, gpus=0)
    assert guard.level == "fail"
    assert guard.line == ("speech.serve.stt.num_gpus: the speech replicas ask for 1 GPUs but the "
                          "Ray cluster has 0")
    assert speech_service_guard(config, cpus=8, gpus=1).level == "ok"


def test_hosts_fit_in_the_cpus_the_speech_replicas_leave(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    check_hosts(_config(stt="serve", tts="serve",
                        serve={"stt": {"num_cpus": 1}, "tts": {"num_cpus": 1}}))
    with pytest.raises(ConfigError, match="fleet.hosts is 2 but the Ray cluster has 1 CPUs"):
        check_hosts(_config(stt="serve", tts="serve", serve={"stt": {"replicas": 2}}))
    with pytest.raises(ConfigError, match="speech replicas reserve 4 CPUs"):
        check_hosts(_config(stt="serve", serve={"stt": {"replicas": 4}}))


def test_null_calls_start_no_speech_replicas():
    config = RunConfig.model_validate({**BASE, "speech": {"stt": "serve"},
                                       "fleet": {"null_call_s": 0.1}})
    assert speech_service_cpus(config) == 0 and speech_service_guard(config, 1, 0) is None


async def test_a_host_that_cannot_reach_the_speech_deployments_records_the_named_reason(
        monkeypatch, tmp_path):
    from orchestration import host as host_module

    async def unreachable(**_):
        raise CallFailed("tts_unavailable", "Ray Serve application callfleet-tts-r1: no answer "
                                            "in time")

    monkeypatch.setattr(host_module, "load_caller_models", unreachable)
    host = host_module.CallerHostImpl(str(tmp_path), tts="serve",
                                      serve={"apps": {"tts": "callfleet-tts-r1"},
                                             "timeout_s": 1.0})
    record = await host.place({"call_id": "c0", "persona": "cooperative-john", "seed": 0,
                               "target": {"url": "http://127.0.0.1:9/offer"}})
    host.lag._task.cancel()
    assert (record["status"], record["failure_reason"]) == ("failed", "tts_unavailable")
    assert record["failure_detail"] == ("Ray Serve application callfleet-tts-r1: no answer in "
                                        "time")
