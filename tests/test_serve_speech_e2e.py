"""`speech: {stt: serve, tts: serve}` for real: Ray Serve deployments of Whisper and Piper,
started by the run, heard and spoken through by its callers, deleted at its end; and a
deployment that goes away mid-run fails calls by name, in bounded time."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from callers.audio import STT_RATE, resample
from callers.errors import CallFailed
from callers.speech.serve_speech import ServeSpeechConfig, ServeSynthesizer, ServeTranscriber
from callers.speech.tts import Synthesizer

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_S = 300
HALF_A_CORE = {"num_cpus": 0.5}  # both replicas and the host fit this 2-core machine


def test_a_run_hears_and_speaks_through_its_own_serve_deployments(tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "name": "serve-e2e", "seed": 2, "target": {"url": "reference"},
        "personas": {"cooperative-john": 1, "fast-talker-emily": 1},
        "scenarios": {"card-dispute": 1},
        "speech": {"stt": "serve", "tts": "serve",
                   "serve": {"stt": HALF_A_CORE, "tts": HALF_A_CORE}},
        "load": {"total_calls": 2, "max_concurrency": 2, "calls_per_second": 1},
        "fleet": {"hosts": 1, "max_call_s": 120},
    }))
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "run", str(config),
                           "--out", str(out)], text=True, capture_output=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "speech: Ray Serve replicas reserve 1 of the cluster's 2 CPUs" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["completed", "completed"], [
        (r["status"], r.get("failure_reason"), r.get("failure_detail")) for r in records]
    # The agent's questions were heard (by the Whisper deployment) and answered, every fact.
    for record in records:
        assert record["speech"]["stt"] == record["speech"]["tts"] == "serve", record["speech"]
        heard = " ".join(t.get("text", "") for t in record["turns"] if t["speaker"] == "agent")
        assert "name" in heard.lower(), heard
    assert summary["understanding"]["facts_observed"] > 0
    assert summary["understanding"]["facts_rate"] == 1.0
    # Served by the replicas: every agent turn decoded there, every line spoken there.
    served = summary["speech_service"]
    agent_turns = sum(1 for r in records for t in r["turns"] if t["speaker"] == "agent")
    assert served["stt"]["segments"] >= agent_turns, served
    assert served["stt"]["replicas_reporting"] == served["stt"]["replicas"] == 1, served
    assert served["tts"]["lines"] > 0, served


async def test_a_deployment_that_goes_away_fails_calls_by_name_not_by_hanging(monkeypatch):
    import ray
    from ray import serve
    from ray._private import ray_constants

    from orchestration.speech_service import SpeechService

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # Ray on 127.0.0.1 only
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        config = ServeSpeechConfig(stt=HALF_A_CORE, tts=HALF_A_CORE, timeout_s=2.0)
        service = SpeechService(config, "e2e", stt=True, tts=True, ray_ends_with_run=True)
        await asyncio.to_thread(service.start)  # off the loop, as the driver does
        names = service.hosts_view()["apps"]
        stt = ServeTranscriber(serve.get_app_handle(names["stt"]), names["stt"], 2.0)
        tts = await ServeSynthesizer.connect(serve.get_app_handle(names["tts"]), names["tts"],
                                             2.0)
        local = Synthesizer()
        try:
            assert (tts.sample_rate, tts.voice_id) == (local.sample_rate, local.voice_id)
            line = "What is the last four digits of your card?"
            pcm = await tts.synthesize(line)
            # Same text, rate and variant: as long as Piper in-process says it (its waveform
            # noise is unseeded; its durations are fixed, callers.speech.tts), so timing replays.
            assert pcm.size == (await local.synthesize(line)).size
            heard = await stt.transcribe(resample(pcm, tts.sample_rate, STT_RATE))
            assert "four digits" in heard.text.lower(), heard.text
        finally:
            local.close()
        assert (await asyncio.to_thread(service.stats))["stt"]["segments"] == 1

        await asyncio.to_thread(service.stop)  # as at the run's end: the applications are deleted
        began = time.monotonic()
        with pytest.raises(CallFailed) as info:
            await stt.transcribe(np.zeros(STT_RATE, np.int16))
        assert info.value.reason == "stt_unavailable"
        assert info.value.detail.startswith(f"Ray Serve application {names['stt']}: ")
        assert time.monotonic() - began < 2 * 2.0 + 1.0  # two tries, each bounded
    finally:
        ray.shutdown()
