"""`callfleet agent`: load the speech models once, serve calls until SIGINT/SIGTERM.

With --lean it loads no speech recognition at all and synthesizes every line a lean call can
say (reference_agent/lean.py) before it listens: no model work per call after start-up.
"""

from __future__ import annotations

import asyncio
import signal

from callers.errors import ConfigError
from callers.speech.stt import Transcriber, warm_up
from callers.speech.tts import Synthesizer
from callers.speech.tts_cache import CachedSynthesizer, TTSCache
from reference_agent.call import AgentKnobs, SpeechModels
from reference_agent.lean import lean_lines
from reference_agent.server import AgentServer, serve
from reference_agent.sip_media import SipListener, bind_ports, sip_url
from reference_agent.turn_log import TurnLog


async def run_agent(args) -> int:
    knobs = AgentKnobs(
        response_delay_ms=args.response_delay_ms,
        barge_in=args.barge_in,
        mishear=frozenset(args.mishear),
        drop_after_turns=args.drop_after_turns,
        hangup=args.hangup,
        flow=args.flow,
        lean=bool(getattr(args, "lean", False)),
        processing_budget_ms=getattr(args, "processing_budget_ms", None),
    )
    stt: Transcriber | None
    if knobs.lean:  # no Whisper at all
        stt, tts = None, await asyncio.to_thread(Synthesizer)
    else:
        stt, tts = await asyncio.gather(
            asyncio.to_thread(Transcriber, cpu_threads=1, workers=2),
            asyncio.to_thread(Synthesizer))
        await warm_up(stt, tts)
    turn_log = TurnLog(args.turn_log) if getattr(args, "turn_log", None) else None
    # The agent's prompts repeat on every call: synthesized once per process.
    speech = SpeechModels(stt, CachedSynthesizer(tts, TTSCache()))
    if knobs.lean:  # its own flow's lines; another flow's (?flow=NAME) on first use, cached
        await prerender(speech.tts, [knobs.flow])
    server = AgentServer(speech, knobs, host=args.host, turn_log=turn_log)
    # SIP on UDP, by default on the HTTP port's number (`url: reference` finds it there).
    sip_port = getattr(args, "sip_port", None)
    try:
        http_port, sip_socket = bind_ports(args.host, args.port, sip_port)
    except OSError as e:
        raise ConfigError(f"--sip-port {args.port if sip_port is None else sip_port}: cannot "
                          f"listen on UDP ({e.strerror or e})") from None
    runner, port = await serve(server, args.host, http_port)
    sip = await SipListener.start(server, sip_socket,
                                  rtp_port=getattr(args, "sip_rtp_port", None),
                                  rtp_advertise=getattr(args, "sip_rtp_advertise", None))
    url = f"http://{args.host}:{port}"
    # The first line is read by `callfleet demo` to find the port: keep its format.
    ws = "ws" + url.removeprefix("http")
    print(f"callfleet agent listening on {url} (json-offer: {url}/offer, whip: {url}/whip, "
          f"pcm-ws: {ws}/pcm, twilio-ws: {ws}/twilio, sip: {sip_url(sip.address)})",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    sip.close()
    if turn_log is not None:
        turn_log.close()
    if stt is not None:
        stt.close()
    tts.close()
    return 0


async def prerender(tts: CachedSynthesizer, flows: list[str]) -> int:
    """Synthesize every line of these flows' lean dialogs into tts's cache; the number of
    lines. A line not rendered yet when a call needs it is synthesized then (and cached)."""
    lines = list(dict.fromkeys(line for name in flows for line in lean_lines(name)))
    for line in lines:  # one at a time: the synthesizer is one model on one thread
        await tts.synthesize(line)
    return len(lines)
