"""A local OpenAI-compatible speech service for benchmarks: POST /v1/audio/transcriptions
(Whisper tiny.en through callers.speech.stt_batch's short window, one decode thread) and
/v1/audio/speech (the bundled Piper voice, WAV). It stands in for speaches or vLLM's Whisper
on a speech node, so capacity.py can measure media hosts whose callers neither transcribe
nor synthesize in-process (`speech: {stt: openai, tts: openai}`).

Binds 127.0.0.1 only and accepts any bearer key (it is a loopback benchmark stand-in).

    .venv/bin/python benchmarks/speech_server.py [--port 0]
        prints "ready http://127.0.0.1:PORT/v1" once both models are loaded
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import wave
from pathlib import Path

import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callers.speech.stt_batch import BatchedTranscriber  # noqa: E402
from callers.speech.stt_openai import wav_bytes  # noqa: E402
from callers.speech.tts import Synthesizer  # noqa: E402

MAX_UPLOAD = 16 * 1024 * 1024


class SpeechServer:
    """Both routes over one Whisper and one Piper, loaded once."""

    def __init__(self) -> None:
        self.whisper = BatchedTranscriber(cpu_threads=1)
        self.piper = Synthesizer()
        self.served = {"transcriptions": 0, "speech": 0}

    async def transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return web.json_response({"error": {"message": "file: a WAV upload expected"}},
                                     status=400)
        with wave.open(io.BytesIO(upload.file.read()), "rb") as wav:
            audio = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        prompt = form.get("prompt")
        text = (await self.whisper.transcribe(audio, prompt if isinstance(prompt, str) else None)
                ).text
        self.served["transcriptions"] += 1
        return web.json_response({"text": text})

    async def speak(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = body.get("input")
        if not isinstance(text, str) or not text:
            return web.json_response({"error": {"message": "input: text expected"}}, status=400)
        pcm = await self.piper.synthesize(text, float(body.get("speed", 1.0)))
        self.served["speech"] += 1
        return web.Response(body=wav_bytes(pcm, self.piper.sample_rate), content_type="audio/wav")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD)
        app.router.add_post("/v1/audio/transcriptions", self.transcribe)
        app.router.add_post("/v1/audio/speech", self.speak)
        return app


async def serve(port: int) -> None:
    server = SpeechServer()
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"ready http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1", flush=True)
    try:
        await asyncio.Event().wait()  # until the benchmark terminates the process
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
