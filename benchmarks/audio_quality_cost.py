"""What scoring the agent's voice costs: CPU seconds of one thread per minute of agent speech,
DNSMOS alone and with PLCMOS (calls with packet loss). Writes results/audio_quality_cost.json.

    .venv/bin/python benchmarks/audio_quality_cost.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_file import write_result  # noqa: E402
from callers.audio import STT_RATE, resample  # noqa: E402
from callers.speech.tts import Synthesizer  # noqa: E402
from evaluation import audio_quality as aq  # noqa: E402

LINES = [
    "Thank you for calling. My name is Alex and I will help you with your card today.",
    "Could you please tell me your full name and the last four digits of the card?",
    "I see a charge of forty two dollars and fifteen cents on March third.",
    "All right, I have opened a dispute. You will get a confirmation email within two days.",
]
SPEECH_S = 60.0
REPEATS = 3


def agent_minute() -> np.ndarray:
    """A minute of agent speech in the bundled Piper voice, at 16 kHz."""
    voice = Synthesizer()
    try:
        pcm = np.concatenate([resample(voice.synthesize_sync(line), voice.sample_rate, STT_RATE)
                              for line in LINES])
    finally:
        voice.close()
    reps = int(np.ceil(SPEECH_S * STT_RATE / pcm.size))
    return np.tile(pcm, reps)[: int(SPEECH_S * STT_RATE)]


def measure(speech: np.ndarray, packet_loss: bool, repeats: int = REPEATS) -> dict[str, float]:
    """Median thread-CPU and wall seconds per minute of speech over `repeats` scorings."""
    aq.score_speech(speech, packet_loss=packet_loss)  # warm: sessions loaded, first run done
    cpu, wall = [], []
    minutes = speech.size / STT_RATE / 60
    for _ in range(repeats):
        began = time.perf_counter()
        block = aq.score_speech(speech, packet_loss=packet_loss)
        wall.append((time.perf_counter() - began) / minutes)
        cpu.append(block["cost_s"] / minutes)
    return {"cpu_s_per_speech_minute": round(statistics.median(cpu), 3),
            "wall_s_per_speech_minute": round(statistics.median(wall), 3)}


def main() -> None:
    speech = agent_minute()
    dns = measure(speech, packet_loss=False)
    both = measure(speech, packet_loss=True)
    write_result("audio_quality_cost", {
        "what": "evaluation/audio_quality.py on one onnxruntime thread, per minute of agent "
                "speech scored (a call-minute holds less: only the agent's segments are scored)",
        "speech_s": SPEECH_S,
        "dnsmos": dns,
        "dnsmos_and_plcmos": both,
        "share_of_a_core_per_call_dnsmos": round(dns["cpu_s_per_speech_minute"] / 60, 4),
        "share_of_a_core_per_call_with_plcmos": round(both["cpu_s_per_speech_minute"] / 60, 4),
    })


if __name__ == "__main__":
    main()
