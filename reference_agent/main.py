"""`callfleet agent`: load the speech models once, serve calls until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from callers.stt import Transcriber, warm_up
from callers.tts import Synthesizer
from reference_agent.call import AgentKnobs, SpeechModels
from reference_agent.server import AgentServer, serve
from reference_agent.turn_log import TurnLog


async def run_agent(args) -> int:
    knobs = AgentKnobs(
        response_delay_ms=args.response_delay_ms,
        barge_in=args.barge_in,
        mishear=frozenset(args.mishear),
        drop_after_turns=args.drop_after_turns,
        hangup=args.hangup,
        flow=args.flow,
    )
    stt, tts = await asyncio.gather(
        asyncio.to_thread(Transcriber, cpu_threads=1, workers=2), asyncio.to_thread(Synthesizer)
    )
    await warm_up(stt, tts)
    turn_log = TurnLog(args.turn_log) if getattr(args, "turn_log", None) else None
    server = AgentServer(SpeechModels(stt, tts), knobs, host=args.host, turn_log=turn_log)
    runner, port = await serve(server, args.host, args.port)
    url = f"http://{args.host}:{port}"
    # The first line is read by `callfleet demo` to find the port: keep its format.
    ws = "ws" + url.removeprefix("http")
    print(f"callfleet agent listening on {url} (json-offer: {url}/offer, whip: {url}/whip, "
          f"pcm-ws: {ws}/pcm, twilio-ws: {ws}/twilio)",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    if turn_log is not None:
        turn_log.close()
    stt.close()
    tts.close()
    return 0
