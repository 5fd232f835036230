"""Speech inference runs below the media in CPU priority.

A host's event loop paces every call's outgoing audio 20 ms at a time; a Whisper decode or a
Piper synthesis holds a core for 100+ ms. On an equal footing the kernel shares the core
between them and frames leave late even when the core is half idle. At nice 10 an inference
thread gets about a tenth of the core while the loop wants it, and all of it otherwise.
"""

from __future__ import annotations

import os
import threading

INFERENCE_NICE = 10
LOWEST_NICE = 19  # where a thread already at or past INFERENCE_NICE goes (Ray's workers: 15)


def lower_this_thread() -> None:
    """Put the calling thread below the media: nice INFERENCE_NICE, or the lowest priority
    when it already runs at or past that (a Ray worker that could not be restored to 0). On
    Linux nice is per thread and the threads it starts inherit it (CTranslate2's and
    onnxruntime's workers, when the model is built on it). Lowering one's own priority needs
    no privilege; where a platform has no per-thread priority the thread is left as it is."""
    try:
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        if not lowered_on_purpose(now):
            os.setpriority(os.PRIO_PROCESS, tid, INFERENCE_NICE if now < INFERENCE_NICE
                           else LOWEST_NICE)
    except (AttributeError, OSError):
        pass


def lowered_on_purpose(nice: int) -> bool:
    """A nice value lower_this_thread gives: orchestration.host's restore_priority keeps it."""
    return nice in (INFERENCE_NICE, LOWEST_NICE)
