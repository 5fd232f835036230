"""Early transcription (issue 12 point 3): the caller decodes the agent's speech at its first
100 ms of silence (the segmenter's "pause") instead of once the 300 ms hangover has ended the
segment. Does the early decode say the same words, and how much sooner is it there?

Corpus: benchmarks/stt_batching.py's (every reference-agent line, Piper, G.711 mu-law). Each
line is streamed in 20 ms frames through the caller's SpeechSegmenter (hangover 300 ms, pause
at 100 ms) between stretches of silence; the audio of the segment's last pause and of its end
are each decoded by Whisper (one at a time, as `speech: {stt: local}` does). Reported: how
often the two transcripts are the same words, the word error rate of each against the text
spoken, how many earlier pauses inside a line were decoded for nothing (a sentence break that
the agent talked on after), how much sooner the pause came than the end, and when each came
after the end of the segment's sound, on the stream's clock (the pause counts its silence from
the end of the sound, the hangover from webrtcvad's last voiced frame, ~120 ms later).

    ORT_DISABLE_TELEMETRY=1 .venv/bin/python benchmarks/early_stt.py

Writes benchmarks/results/early_stt.json.
"""

from __future__ import annotations

import asyncio
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callers.audio import STT_RATE  # noqa: E402
from callers.session import EARLY_STT_MS  # noqa: E402
from callers.speech.stt import Transcriber  # noqa: E402
from callers.speech.vad import FRAME_SAMPLES, SpeechSegmenter  # noqa: E402
from results_file import write_result  # noqa: E402
from stt_batching import corpus, speak, wer, words  # noqa: E402

HANGOVER_MS = 300  # the caller's (callers/session.py)


def segment_events(clip: np.ndarray) -> list:
    """The segmenter's events for clip between 300 ms and 1 s of silence."""
    silence = np.zeros(STT_RATE, np.int16)
    audio = np.concatenate([silence[: STT_RATE * 3 // 10], clip, silence])
    segmenter = SpeechSegmenter(hangover_ms=HANGOVER_MS, early_ms=EARLY_STT_MS)
    events = []
    for i in range(audio.size // FRAME_SAMPLES):
        frame = audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
        events += [(i * 20.0 + 20.0, e) for e in segmenter.push(frame, i * 20.0)]
    return events + [(audio.size / 16, e) for e in segmenter.flush()]


def spread(values: list[float]) -> dict | None:
    return {"min": min(values), "median": float(np.median(values)),
            "max": max(values)} if values else None


def measure(stt: Transcriber, lines: list[str], clips: list[np.ndarray]) -> dict:
    """Decode every line at its segments' last pause and at their ends."""
    early, full, saved_ms, pause_ms, end_ms, wasted, reused, segments = [], [], [], [], [], 0, 0, 0
    for clip in clips:
        pauses: list = []
        early_text, full_text = [], []
        for at_ms, event in segment_events(clip):
            if event.kind == "pause":
                pauses.append((at_ms, event.segment))
            elif event.kind == "end":
                segments += 1
                end_ms.append(at_ms - event.segment.end_ms)
                full_text.append(stt.transcribe_sync(event.segment.audio).text)
                last = pauses[-1] if pauses and event.segment.as_paused else None
                wasted += len(pauses) - (last is not None)
                if last is not None:
                    reused += 1
                    early_text.append(stt.transcribe_sync(last[1].audio).text)
                    saved_ms.append(at_ms - last[0])
                    pause_ms.append(last[0] - event.segment.end_ms)
                else:
                    early_text.append(full_text[-1])
                pauses = []
        early.append(" ".join(early_text))
        full.append(" ".join(full_text))
    same = sum(words(a) == words(b) for a, b in zip(early, full, strict=True))
    return {
        "segments": segments,
        "segments_decoded_early": reused,
        "same_words": same,
        "wer_pct_early": wer(lines, early), "wer_pct_at_end": wer(lines, full),
        "earlier_by_ms": spread(saved_ms),
        # on the stream's clock, after the end of the segment's sound (its end_ms)
        "pause_after_sound_end_ms": spread(pause_ms),
        "end_after_sound_end_ms": spread(end_ms),
        "pauses_decoded_for_nothing": wasted,
        "transcripts_that_differ": [
            {"said": s, "early": a, "at_end": b}
            for s, a, b in zip(lines, early, full, strict=True) if words(a) != words(b)],
    }


def main() -> None:
    lines = corpus()
    clips = asyncio.run(speak(lines))
    stt = Transcriber(cpu_threads=1)
    stt.transcribe_sync(clips[0])  # the first decode is slow
    result = {
        "about": "Whisper tiny.en int8 on the reference agent's lines (Piper, G.711): the "
                 f"decode at the segment's last {EARLY_STT_MS} ms pause (counted from the end "
                 f"of the sound) against the decode once the {HANGOVER_MS} ms hangover "
                 "(counted from webrtcvad's last voiced frame) ended it",
        "command": "benchmarks/early_stt.py",
        "lines": len(lines),
        **measure(stt, lines, clips),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    print(f"{result['same_words']} of {len(lines)} lines the same words; WER early "
          f"{result['wer_pct_early']} % vs at end {result['wer_pct_at_end']} %; pause "
          f"{result['pause_after_sound_end_ms']} and end {result['end_after_sound_end_ms']} ms "
          f"after the sound; {result['pauses_decoded_for_nothing']} pauses decoded for nothing "
          f"over {result['segments']} segments")
    write_result("early_stt", result)


if __name__ == "__main__":
    main()
