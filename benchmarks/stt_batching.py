"""Micro-batched STT against today's one-segment-at-a-time decode, on a fixed corpus of agent
segments (issue 12): the same words (word error rate against the text spoken, both ways), and
how many segments a core decodes per second each way.

Corpus: every line of the reference agent's flows (greetings, questions, read-backs with a
value filled in, goodbyes), spoken by Piper and sent through G.711 mu-law as a phone line
carries it. Both decoders get the same audio, one thread each (cpu_threads=1), one after the
other on a quiet machine.

    ORT_DISABLE_TELEMETRY=1 .venv/bin/python benchmarks/stt_batching.py [--batch 8]

Writes benchmarks/results/stt_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callers.audio import STT_RATE, resample  # noqa: E402
from callers.speech.stt import Transcriber  # noqa: E402
from callers.speech.stt_batch import BatchedTranscriber  # noqa: E402
from callers.transports.websocket import mulaw_decode, mulaw_encode  # noqa: E402
from reference_agent.flows import FLOWS  # noqa: E402
from results_file import write_result  # noqa: E402

SAMPLE_VALUES = {"money": "two hundred fifty dollars", "name": "John Smith",
                 "date": "the fifth of December", "time": "seven thirty p.m.",
                 "number": "four", "phone": "five five five, one two three, four five six seven",
                 "spelled": "A B C one two three", "email": "j dot smith at example dot com",
                 "order_number": "A B C one two three"}


def corpus() -> list[str]:
    """Every sentence the reference agent can say, values filled in, each once."""
    lines: list[str] = []

    def walk(node, kind: str | None = None) -> None:
        if isinstance(node, dict):
            kind = node.get("type", kind)
            for key, value in node.items():
                if key not in ("name", "type", "hours", "mishear_as", "phrases", "choices"):
                    walk(value, kind)
        elif isinstance(node, list):
            for value in node:
                walk(value, kind)
        elif isinstance(node, str) and " " in node:
            text = node.replace("{value}", SAMPLE_VALUES.get(kind or "", "John Smith"))
            lines.append(re.sub(r"\{(\w+)\}", lambda m: SAMPLE_VALUES.get(
                m.group(1), "the fifth of December" if "date" in m.group(1) else "express"),
                text))

    walk(FLOWS)
    return list(dict.fromkeys(lines))


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Word error rate in %, over the corpus. Digits and number words differ in form
    ("$250" vs "two hundred fifty dollars") the same way for both decoders."""
    errors = sum(edits(words(r), words(h)) for r, h in zip(refs, hyps, strict=True))
    return round(100 * errors / sum(len(words(r)) for r in refs), 2)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def speak(lines: list[str]):
    from callers.speech.tts import Synthesizer

    tts = Synthesizer()
    clips = []
    for line in lines:
        pcm = resample(await tts.synthesize(line), tts.sample_rate, 8000)
        phone = mulaw_decode(mulaw_encode(pcm))  # the phone line
        clips.append(resample(phone, 8000, STT_RATE))
    tts.close()
    return clips


def measure(label: str, decode) -> tuple[list[str], dict]:
    wall0, cpu0 = time.perf_counter(), cpu_s()
    texts = decode()
    wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
    return texts, {"decoder": label, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="segments per batch")
    args = parser.parse_args()
    lines = corpus()
    clips = asyncio.run(speak(lines))
    audio_s = sum(c.size for c in clips) / STT_RATE
    batched = BatchedTranscriber(cpu_threads=1)
    alone = batched.alone
    alone.transcribe_sync(clips[0])  # warm both paths: first decodes are slow
    batched.decode_batch([(clips[0], None)])
    batched.stats.__init__()

    plain, plain_row = measure("one at a time (30 s window)",
                               lambda: [alone.transcribe_sync(c).text for c in clips])

    def in_batches(size: int) -> list[str]:
        out: list[str] = []
        for i in range(0, len(clips), size):
            batch = [(c, None) for c in clips[i:i + size]]
            out += [t.text for t in batched.decode_batch(batch)]
        return out

    # batches of 1 in the same short window: what the window saves apart from batching
    lone, lone_row = measure("one at a time, short window (batch of 1)", lambda: in_batches(1))
    batched.stats.__init__()
    grouped, grouped_row = measure(f"batches of {args.batch} (padded to the longest)",
                                   lambda: in_batches(args.batch))
    rows = []
    for row, texts in ((plain_row, plain), (lone_row, lone), (grouped_row, grouped)):
        row["wer_pct"] = wer(lines, texts)
        row["segments_per_cpu_s"] = round(len(clips) / row["cpu_s"], 2)
        row["audio_s_per_cpu_s"] = round(audio_s / row["cpu_s"], 2)
        rows.append(row)
    differ = [{"said": s, "alone": a, "batched": b}
              for s, a, b in zip(lines, plain, grouped, strict=True) if words(a) != words(b)]
    result = {
        "about": "Whisper tiny.en int8 (1 thread) on the reference agent's lines (Piper, G.711 "
                 "mu-law): one segment at a time through the 30 s window, one at a time through "
                 "the short window (at least 10 s), and micro-batches padded to their longest "
                 "segment",
        "command": f"benchmarks/stt_batching.py --batch {args.batch}",
        "segments": len(clips), "audio_s": round(audio_s, 1), "rows": rows,
        "wer_difference_points": round(rows[2]["wer_pct"] - rows[0]["wer_pct"], 2),
        "speedup_per_cpu": round(rows[0]["cpu_s"] / rows[2]["cpu_s"], 2),
        # of which the short window alone (batch of 1) and batching on top of it
        "speedup_from_window": round(rows[0]["cpu_s"] / rows[1]["cpu_s"], 2),
        "speedup_from_batching": round(rows[1]["cpu_s"] / rows[2]["cpu_s"], 2),
        "batch_stats": batched.stats.as_dict(),
        "transcripts_that_differ": differ,
    }
    for row in rows:
        print(f"{row['decoder']:42} WER {row['wer_pct']:5.2f} %  "
              f"{row['segments_per_cpu_s']:6.2f} segments per CPU-second")
    print(f"WER difference {result['wer_difference_points']} points, "
          f"{result['speedup_per_cpu']}x per CPU (window {result['speedup_from_window']}x, "
          f"batching {result['speedup_from_batching']}x), {len(differ)} transcripts differ, "
          f"fallbacks {batched.stats.fallbacks}")
    write_result("stt_batching", result)
    batched.close()


if __name__ == "__main__":
    main()
