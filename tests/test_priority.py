"""Speech inference threads run below the media (callers/priority.py)."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from callers.priority import INFERENCE_NICE, LOWEST_NICE, lower_this_thread
from orchestration.host import restore_priority


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def threads_at(nice: int) -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task") if nice_of(int(t)) == nice}


BASE = nice_of(threading.get_native_id())  # the test process's own: 0, or make test's
LOWERED = INFERENCE_NICE if BASE < INFERENCE_NICE else LOWEST_NICE
pytestmark = pytest.mark.skipif(BASE >= LOWEST_NICE, reason="the test process runs at nice 19")


def test_a_lowered_pool_thread_and_the_threads_it_starts_run_at_the_inference_nice():
    with ThreadPoolExecutor(1, initializer=lower_this_thread) as pool:
        def child_nice() -> int:
            seen = []
            t = threading.Thread(target=lambda: seen.append(nice_of(threading.get_native_id())))
            t.start()
            t.join()
            return seen[0]

        assert pool.submit(lambda: nice_of(threading.get_native_id())).result() == LOWERED
        assert pool.submit(child_nice).result() == LOWERED
        pool.submit(lower_this_thread).result()  # again: stays put, not pushed to the lowest
        assert pool.submit(lambda: nice_of(threading.get_native_id())).result() == LOWERED
    assert nice_of(threading.get_native_id()) == BASE  # the caller's own thread is untouched


def test_a_thread_already_past_the_inference_nice_goes_to_the_lowest():
    def from_ray_nice() -> int:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)  # a Ray worker's
        lower_this_thread()
        return nice_of(threading.get_native_id())

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(from_ray_nice).result() == LOWEST_NICE


def test_whisper_and_piper_decode_below_the_media_and_restoring_priority_keeps_them_there():
    from callers.speech.stt import Transcriber
    from callers.speech.tts import Synthesizer

    before = threads_at(LOWERED)
    stt, tts = Transcriber(), Synthesizer()
    try:
        stt.transcribe_sync(np.zeros(16000, np.int16))  # CTranslate2's workers exist now
        lowered = threads_at(LOWERED) - before
        # the stt and tts pool threads, and CTranslate2's own decode thread at least
        assert len(lowered) >= 3, lowered
        restore_priority()  # what a CallerHost does before each call (root: media to 0)
        assert threads_at(LOWERED) >= lowered
    finally:
        stt.close()
        tts.close()
