"""How much of the callers' speech one host serves from its TTS cache.

Real CallSessions (scripted brain, the personas' hesitations, backchannels and barge-ins)
placed one after another in one process, as a CallerHost would, over the in-memory fake
agent of tests/fake_transport.py (no media, no Whisper; a fake voice behind the real cache:
hits and misses do not depend on the voice). Every persona calls with seeds 1..N. Writes
benchmarks/results/tts_cache_hit_rate.json.

    .venv/bin/python benchmarks/tts_cache_hit_rate.py [seeds per persona, default 2]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import callers.session as session_module  # noqa: E402
from callers.persona import list_personas  # noqa: E402
from callers.session import CallerModels, CallSession  # noqa: E402
from callers.transport import Target  # noqa: E402
from results_file import write_result  # noqa: E402
from tests.fake_transport import FakeAgentTransport, FakeSTT, FakeTTS  # noqa: E402

SCRIPT = ["How can I help you today?", "What is your first name?", "And your last name?",
          "What amount of money is this about?", "Thank you, that is all done. Goodbye."]


async def main(seeds: int) -> None:
    stt = FakeSTT()
    session_module.make_transport = (
        lambda target, clock, outgoing, events, **_:
        FakeAgentTransport(target, clock, outgoing, events, script=SCRIPT, stt=stt))
    models = CallerModels(stt, FakeTTS())  # one host: one cache
    calls = []
    for seed in range(1, seeds + 1):
        for persona in list_personas():
            session = CallSession(persona, seed, Target("fake://agent"), models,
                                  call_id=f"{persona.id}-{seed}")
            record = await session.run()
            counts = record.generator.get("tts_cache") or {"hits": 0, "misses": 0}
            calls.append({"call": record.call_id, **counts})
            print(calls[-1], flush=True)
    hits = sum(c["hits"] for c in calls)
    misses = sum(c["misses"] for c in calls)
    first_round = calls[: len(calls) // seeds]
    write_result("tts_cache_hit_rate", {
        "calls": len(calls), "phrases": hits + misses, "hits": hits, "misses": misses,
        "hit_rate": round(hits / (hits + misses), 3),
        "first_round_hit_rate": round(sum(c["hits"] for c in first_round)
                                      / sum(c["hits"] + c["misses"] for c in first_round), 3),
        "cache": models.tts_cache.stats(), "per_call": calls,
    })


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
