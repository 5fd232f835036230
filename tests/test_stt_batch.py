"""Micro-batched STT with the real Whisper model: the same words as one-at-a-time decoding,
concurrent requests share a batch, and what cannot be batched or fails is handled."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from callers.audio import STT_RATE, resample
from callers.speech.stt import Transcript
from callers.speech.stt_batch import BatchedTranscriber
from evaluation.agent_reports import word_error_rate, words as eval_words

LINES = ["What is your first name?", "I have your last name as Smith.",
         "What amount of money is this about?", "Is there anything else I can help you with?"]


@pytest.fixture(scope="module")
def stt():
    s = BatchedTranscriber(window_ms=200, max_batch=8)
    yield s
    s.close()


@pytest.fixture(scope="module")
def clips(synth):
    async def speak():
        return [resample(await synth.synthesize(t), synth.sample_rate, STT_RATE) for t in LINES]
    return asyncio.run(speak())


def counted_batches(stt: BatchedTranscriber, monkeypatch) -> list[int]:
    """Replace stt's decoder with one that answers "ok" and notes each batch's size: the
    batcher's bookkeeping is what is tested then, not Whisper."""
    decoded: list[int] = []

    def decode(items):
        decoded.append(len(items))
        return [Transcript("ok", 0.0) for _ in items]

    monkeypatch.setattr(stt, "decode_batch", decode)
    return decoded


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z ]+", " ", text.lower()).split()


def test_a_batch_says_what_one_at_a_time_says_and_never_loops(stt, clips):
    batched = [t.text for t in stt.decode_batch([(c, None) for c in clips])]
    for line, alone, text in zip(LINES, (stt.alone.transcribe_sync(c).text for c in clips),
                                 batched, strict=True):
        # Piper is unseeded, so a near-homophone ("as"/"is") may flip between decodes: one
        # word edit is allowed, the batch must not drop or invent more
        edits = word_error_rate(alone, text) * len(eval_words(alone))
        assert round(edits) <= 1, (line, alone, text)
        assert len(words(text)) <= len(words(line)) + 1, text  # no segment said twice


async def test_concurrent_requests_share_one_batch(stt, clips):
    stt.stats.__init__()
    texts = await asyncio.gather(*(stt.transcribe(c) for c in clips))
    assert stt.stats.batches == 1 and stt.stats.segments == len(clips)
    assert "first name" in texts[0].text.lower() and "anything else" in texts[3].text.lower()


async def test_a_segment_longer_than_whispers_window_is_decoded_alone(stt):
    stt.stats.__init__()
    long = np.zeros(31 * STT_RATE, np.int16)
    await stt.transcribe(long)
    assert stt.stats.fallbacks == 1 and stt.stats.batches == 0


async def test_a_failed_batch_fails_every_request_in_it(clips, monkeypatch):
    stt = BatchedTranscriber(window_ms=200, max_batch=8)
    try:
        def broken(items):
            raise RuntimeError("decoder gone")
        monkeypatch.setattr(stt, "decode_batch", broken)
        got = await asyncio.gather(*(stt.transcribe(c) for c in clips[:2]),
                                   return_exceptions=True)
        assert [str(e) for e in got] == ["decoder gone", "decoder gone"]
    finally:
        stt.close()


async def test_requests_that_join_a_gathering_batch_leave_the_batcher_alive(clips, monkeypatch):
    stt = BatchedTranscriber(window_ms=50, max_batch=8)
    decoded = counted_batches(stt, monkeypatch)
    try:
        first = asyncio.ensure_future(stt.transcribe(clips[0]))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(stt.transcribe(clips[1]))  # joins inside the window
        assert [t.text for t in await asyncio.gather(first, second)] == ["ok", "ok"]
        later = await asyncio.wait_for(stt.transcribe(clips[2]), 2.0)  # still answered
        assert later.text == "ok" and decoded == [2, 1]
    finally:
        stt.close()


async def test_a_request_cancelled_while_its_batch_gathers_is_never_decoded(clips, monkeypatch):
    stt = BatchedTranscriber(window_ms=50, max_batch=8)
    decoded = counted_batches(stt, monkeypatch)
    try:
        superseded = asyncio.ensure_future(stt.transcribe(clips[0]))  # an early decode...
        kept = asyncio.ensure_future(stt.transcribe(clips[1]))
        await asyncio.sleep(0.01)
        superseded.cancel()  # ...that a later pause made useless
        assert (await kept).text == "ok"
        assert decoded == [1] and stt.stats.dropped == 1
        assert stt.stats.wait_s >= 0.04  # it waited out the window
    finally:
        stt.close()


async def test_by_default_requests_are_decoded_one_at_a_time_without_waiting(clips, monkeypatch):
    stt = BatchedTranscriber()  # CPU defaults: batching saves nothing there, waiting costs
    decoded = counted_batches(stt, monkeypatch)
    try:
        await asyncio.gather(*(stt.transcribe(c) for c in clips[:3]))
        assert decoded == [1, 1, 1] and stt.stats.wait_s < 0.5
    finally:
        stt.close()


async def test_the_most_urgent_queued_segment_is_decoded_first(clips, monkeypatch):
    stt = BatchedTranscriber()  # one at a time, as on CPU
    order: list[int] = []

    def decode(items):
        order.append(next(i for i, c in enumerate(clips) if c is items[0][0]))
        return [Transcript("ok", 0.0) for _ in items]

    monkeypatch.setattr(stt, "decode_batch", decode)
    try:
        # queued together: replies due in 1.5 s, (none: a call's last words), 2 s and 0.7 s
        # (a fast talker) are decoded by their deadlines, the last words last
        await asyncio.gather(stt.transcribe(clips[0], needed_in_s=1.5),
                             stt.transcribe(clips[1]),
                             stt.transcribe(clips[2], needed_in_s=2.0),
                             stt.transcribe(clips[3], needed_in_s=0.7))
        assert order == [3, 0, 2, 1]
        assert stt.stats.past_due == 0
        await stt.transcribe(clips[0], needed_in_s=-0.1)  # its reply was due already
        assert stt.stats.past_due == 1
    finally:
        stt.close()
