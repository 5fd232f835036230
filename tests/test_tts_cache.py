"""The TTS cache: repeated phrases are served from memory, byte for byte, bounded by bytes."""

from __future__ import annotations

import asyncio
import copy
import threading

import numpy as np
import pytest

import callers.session as session_module
from callers.persona import resolve_persona
from callers.record import CallRecord
from callers.session import CallerModels, CallSession
from callers.transport import Target
from callers.speech.tts_cache import CachedSynthesizer, TTSCache
from evaluation.summary import summarize
from tests.fake_transport import FakeAgentTransport, FakeSTT, FakeTTS


class CountingTTS:
    """A fake voice: audio depends on (text, rate, variant) and on how many runs came before
    (like Piper's unseeded noise); counts its syntheses."""

    sample_rate = 16000

    def __init__(self, delay_s: float = 0.0, samples: int = 1000) -> None:
        self.runs: list[str] = []
        self.delay_s = delay_s
        self.samples = samples
        self.fail_next = False

    def synthesize_sync(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        self.runs.append(text)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("synthesis failed")
        return np.full(self.samples, len(self.runs), np.int16)

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        await asyncio.sleep(self.delay_s)
        return self.synthesize_sync(text, rate, variant)


# --- fast: a fake synthesizer -----------------------------------------------------------------

async def test_a_repeated_phrase_is_synthesized_once_and_served_read_only():
    fake = CountingTTS()
    tts = CachedSynthesizer(fake, TTSCache())
    first = await tts.synthesize("Mm-hmm.")
    again = await tts.synthesize("Mm-hmm.")
    assert fake.runs == ["Mm-hmm."] and np.array_equal(first, again)
    assert tts.stats() == {"hits": 1, "misses": 1, "hit_rate": 0.5}
    with pytest.raises(ValueError, match="read-only"):
        again[0] = 7  # a caller cannot change what the next call hears
    await tts.synthesize("Mm-hmm.", rate=1.2)
    await tts.synthesize("Mm-hmm.", variant=1)
    await tts.synthesize("Okay.")
    assert len(fake.runs) == 4 and tts.misses == 4


async def test_the_least_recently_used_phrase_goes_once_the_bytes_pass_the_bound():
    fake = CountingTTS(samples=1000)  # 2000 bytes a phrase
    cache = TTSCache(max_bytes=5000)
    tts = CachedSynthesizer(fake, cache)
    for text in ("a", "b", "a", "c"):  # "a" used again: "b" is the oldest when "c" arrives
        await tts.synthesize(text)
    assert cache.bytes == 4000 and len(cache) == 2 and cache.evictions == 1
    await tts.synthesize("a")
    await tts.synthesize("b")
    assert fake.runs == ["a", "b", "c", "b"]
    assert cache.bytes <= cache.max_bytes


async def test_a_phrase_bigger_than_the_cache_is_served_but_not_kept():
    cache = TTSCache(max_bytes=100)
    tts = CachedSynthesizer(CountingTTS(samples=1000), cache)
    assert (await tts.synthesize("long")).size == 1000
    assert len(cache) == 0 and cache.bytes == 0


async def test_concurrent_requests_for_one_phrase_wait_for_a_single_synthesis():
    fake, cache = CountingTTS(delay_s=0.05), TTSCache()
    calls = [CachedSynthesizer(fake, cache) for _ in range(5)]  # five calls of one host
    out = await asyncio.gather(*(c.synthesize("Hello there.") for c in calls))
    assert fake.runs == ["Hello there."]
    assert all(np.array_equal(x, out[0]) for x in out)
    assert sum(c.misses for c in calls) == 1 and sum(c.hits for c in calls) == 4


async def test_a_cancelled_requester_does_not_fail_the_others_waiting_for_its_phrase():
    fake, cache = CountingTTS(delay_s=0.05), TTSCache()
    first = asyncio.create_task(CachedSynthesizer(fake, cache).synthesize("Hi."))
    await asyncio.sleep(0)
    second = asyncio.create_task(CachedSynthesizer(fake, cache).synthesize("Hi."))
    await asyncio.sleep(0.01)
    first.cancel()  # the call that asked first hung up
    assert (await second).size == 1000 and fake.runs == ["Hi."]
    assert len(cache) == 1


async def test_a_failed_synthesis_reaches_every_waiter_and_the_next_request_retries():
    fake, cache = CountingTTS(delay_s=0.02), TTSCache()
    fake.fail_next = True
    a, b = CachedSynthesizer(fake, cache), CachedSynthesizer(fake, cache)
    results = await asyncio.gather(a.synthesize("x"), b.synthesize("x"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and len(cache) == 0
    assert (await a.synthesize("x")).size == 1000 and fake.runs == ["x", "x"]


def test_threads_asking_for_one_phrase_synthesize_it_once():
    release = threading.Event()

    class Slow(CountingTTS):
        def synthesize_sync(self, text, rate=1.0, variant=0):
            release.wait(2)
            return super().synthesize_sync(text, rate, variant)

    fake, cache = Slow(), TTSCache()
    out: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: out.append(
        CachedSynthesizer(fake, cache).synthesize_sync("same"))) for _ in range(4)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert len(out) == 4 and fake.runs == ["same"]
    assert cache.stats()["hits"] == 3 and cache.stats()["misses"] == 1


def test_the_run_summary_sums_hits_and_misses_over_calls():
    def rec(call_id, generator):
        return CallRecord(call_id=call_id, persona="p", seed=1, status="completed",
                          generator=generator).to_dict()

    records = [rec("a", {"tts_cache": {"hits": 2, "misses": 8}}),
               rec("b", {"tts_cache": {"hits": 9, "misses": 1}}),
               rec("c", {}),  # a call that never spoke
               rec("d", {"tts_cache": "garbage"})]
    tts = summarize(records, run_id="r", target="t")["generator"]["tts_cache"]
    assert tts == {"hits": 11, "misses": 9, "hit_rate": 0.55}
    empty = summarize([rec("a", {})], run_id="r", target="t")["generator"]["tts_cache"]
    assert empty == {"hits": 0, "misses": 0, "hit_rate": None}


async def test_a_second_call_of_one_host_speaks_from_the_cache_and_its_record_says_so(
        monkeypatch):
    script = ["How can I help you today?", "What is your first name?",
              "Thank you, that is all done. Goodbye."]
    stt = FakeSTT()

    def fake_transport(target, clock, outgoing, events, **_):
        return FakeAgentTransport(target, clock, outgoing, events, script=script, stt=stt)

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    persona = resolve_persona("cooperative-john")
    persona = persona.model_copy(update={"temperament": persona.temperament.model_copy(
        update={"reply_after_ms": 200})})
    models = CallerModels(stt, FakeTTS())  # one host: one cache for both calls
    records = []
    for call_id in ("first", "second"):
        session = CallSession(persona, 1, Target("fake://agent"), models, call_id=call_id)
        records.append((await session.run()).to_dict())
    first, second = (r["generator"]["tts_cache"] for r in records)
    # (a short script: the goal is not met, which is no matter here; the words are)
    spoken = [[t["text"] for t in r["turns"] if t["speaker"] == "caller"] for r in records]
    assert spoken[0] == spoken[1] and len(spoken[0]) >= 2
    assert first["misses"] >= 2  # the same seed says the same words
    assert second["misses"] == 0 and second["hits"] == first["hits"] + first["misses"]
    run = summarize(records, run_id="r", target="t")["generator"]["tts_cache"]
    assert run["hits"] + run["misses"] == 2 * (first["hits"] + first["misses"])


# --- the real Piper voice -----------------------------------------------------------------------

def test_piper_is_not_deterministic_so_the_cache_pins_a_phrase_to_its_first_synthesis(synth):
    # Piper's graph draws unseeded noise that advances with every run: same length, other
    # samples. This is why the cache keeps the first synthesis instead of "what Piper gives".
    a = synth.synthesize_sync("Could you say that again?")
    b = synth.synthesize_sync("Could you say that again?")
    assert a.size == b.size and not np.array_equal(a, b)


async def test_a_repeated_phrase_from_piper_is_a_hit_and_byte_identical(synth):
    tts = CachedSynthesizer(synth, TTSCache())
    first = await tts.synthesize("My name is John Smith.", 1.1, 0)
    again = await tts.synthesize("My name is John Smith.", 1.1, 0)
    assert tts.stats()["hits"] == 1 and tts.stats()["misses"] == 1
    assert first.tobytes() == again.tobytes() and first.size > synth.sample_rate // 2
    other_call = CachedSynthesizer(synth, tts.cache)  # another call of the same host
    assert (await other_call.synthesize("My name is John Smith.", 1.1, 0)).tobytes() == \
        first.tobytes()
    assert other_call.hits == 1


async def test_another_rate_variant_text_or_voice_is_a_miss(synth):
    cache = TTSCache()
    tts = CachedSynthesizer(synth, cache)
    slow = await tts.synthesize("Yes, that is right.", 1.0, 0)
    fast = await tts.synthesize("Yes, that is right.", 1.3, 0)
    await tts.synthesize("Yes, that is right.", 1.0, 1)
    await tts.synthesize("No, that is wrong.", 1.0, 0)
    elsewhere = copy.copy(synth)  # the same engine under another model path
    elsewhere.voice_id = "/voices/other-voice.onnx"
    await CachedSynthesizer(elsewhere, cache).synthesize("Yes, that is right.", 1.0, 0)
    assert tts.misses == 4 and tts.hits == 0 and len(cache) == 5
    assert fast.size < slow.size  # the rate is in the audio, not only in the key


async def test_piper_phrases_are_evicted_least_recently_used_by_bytes(synth):
    tts = CachedSynthesizer(synth, TTSCache())
    sizes = {t: (await tts.synthesize(t)).nbytes for t in ("One.", "Two.", "Three.")}
    cache = TTSCache(max_bytes=sizes["One."] + sizes["Three."] + 1)
    tts = CachedSynthesizer(synth, cache)
    first = await tts.synthesize("One.")
    await tts.synthesize("Two.")
    await tts.synthesize("One.")  # used again: "Two." is now the oldest
    await tts.synthesize("Three.")
    assert cache.evictions >= 1 and cache.bytes <= cache.max_bytes
    assert (await tts.synthesize("One.")).tobytes() == first.tobytes()
    misses = tts.misses
    await tts.synthesize("Two.")
    assert tts.misses == misses + 1  # it was evicted


async def test_concurrent_piper_requests_for_one_phrase_synthesize_once(synth):
    runs = []

    class Counting:
        sample_rate = synth.sample_rate
        cache_key = staticmethod(synth.cache_key)

        async def synthesize(self, text, rate=1.0, variant=0):
            runs.append(text)
            return await synth.synthesize(text, rate, variant)

    cache = TTSCache()
    calls = [CachedSynthesizer(Counting(), cache) for _ in range(4)]
    out = await asyncio.gather(*(c.synthesize("Good afternoon, thanks for calling.")
                                 for c in calls))
    assert runs == ["Good afternoon, thanks for calling."]
    assert len({x.tobytes() for x in out}) == 1
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 3
