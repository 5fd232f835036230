"""Run a list of planned calls in this process (asyncio), scoring and storing each at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callers.persona import Persona
from callers.session import CallerModels, CallSession
from callers.stt import Transcriber
from callers.transport import Target
from callers.tts import Synthesizer
from evaluation.scoring import score_call
from orchestration.store import RunStore


@dataclass(frozen=True)
class PlannedCall:
    call_id: str
    persona: Persona
    seed: int


def plan_calls(personas: list[Persona], calls: int, seed: int) -> list[PlannedCall]:
    """Cycle through the personas; each call gets its own seed derived from the run seed."""
    return [
        PlannedCall(f"call-{i:04d}-{personas[i % len(personas)].id}", personas[i % len(personas)],
                    seed + i)
        for i in range(calls)
    ]


async def load_caller_models() -> CallerModels:
    """Load Whisper and Piper once, off the event loop."""
    stt, tts = await asyncio.gather(
        asyncio.to_thread(Transcriber, cpu_threads=1), asyncio.to_thread(Synthesizer)
    )
    return CallerModels(stt, tts)


async def run_planned(
    plan: list[PlannedCall],
    target: Target,
    store: RunStore,
    models: CallerModels,
    *,
    concurrency: int,
    on_done: Callable[[dict[str, Any]], None] = lambda record: None,
) -> list[dict[str, Any]]:
    """Place every planned call, at most `concurrency` at once; returns the scored records."""
    slots = asyncio.Semaphore(concurrency)
    active = 0
    records: list[dict[str, Any]] = []

    async def one(planned: PlannedCall) -> None:
        nonlocal active
        async with slots:
            active += 1
            session = CallSession(
                planned.persona, planned.seed, target, models,
                call_id=planned.call_id, audio_path=store.audio_path(planned.call_id),
                concurrency_at_start=active,
            )
            try:
                record = (await session.run()).to_dict()
            finally:
                active -= 1
            score_call(record, planned.persona.facts.model_dump())
            store.append(record)  # durable before anyone else sees it
            records.append(record)
            on_done(record)

    await asyncio.gather(*(one(p) for p in plan))
    return records
