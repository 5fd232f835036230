"""What the agent reported about itself, against what the caller knows happened.

An agent's own transcript of the caller (RTVI `user-transcription`, timeline `agent_heard`) is
the best evidence of what it heard: each caller turn's word error rate against what the caller
really said. Its speaking events (`agent_reported_speech_start`) are a second clock for its
turns: their offset from the onsets the caller heard.
"""

from __future__ import annotations

import re
from typing import Any

from callers.language import number_to_words

_WORD = re.compile(r"[a-z0-9']+")
MATCH_ONSET_MS = 3000  # a reported start this far from any heard onset is not the same turn


def words(text: str) -> list[str]:
    """Lower-case words, numbers spelled out, so "$250" and "two hundred fifty" compare."""
    out: list[str] = []
    for token in _WORD.findall(text.lower().replace("-", " ")):
        token = token.strip("'")
        out.extend(number_to_words(int(token)).replace("-", " ").split()
                   if token.isdigit() and len(token) < 10 else [token] if token else [])
    return out


def word_error_rate(reference: str, hypothesis: str) -> float | None:
    """Word-level edit distance over the reference's length (None for an empty reference)."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return None
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return round(row[-1] / len(ref), 4)


def agent_hearing(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per caller turn: what it said, what the agent reported hearing, and the WER.

    The agent's transcripts that arrive from a turn's start until the next caller turn starts
    belong to it. Empty when the agent reports no transcripts.
    """
    heard = [(e["t_ms"], e.get("text", "")) for e in record.get("events") or ()
             if e.get("kind") == "agent_heard"]
    if not heard:
        return []
    said = sorted((t for t in record.get("turns") or () if t.get("speaker") == "caller"),
                  key=lambda t: t["start_ms"])
    out = []
    for i, turn in enumerate(said):
        until = said[i + 1]["start_ms"] if i + 1 < len(said) else float("inf")
        text = " ".join(h for t, h in heard if turn["start_ms"] <= t < until).strip()
        out.append({"start_ms": turn["start_ms"], "mode": turn.get("mode", "turn"),
                    "said": turn["text"], "heard": text,
                    "wer": word_error_rate(turn["text"], text)})
    return out


def reported_onset_offsets(events: list[dict[str, Any]]) -> list[float]:
    """For each speaking start the agent reported, its time minus the nearest onset heard."""
    heard = [e["t_ms"] for e in events if e.get("kind") == "agent_speech_start"]
    offsets = []
    for e in events:
        if e.get("kind") == "agent_reported_speech_start" and heard:
            nearest = min(heard, key=lambda t: abs(t - e["t_ms"]))
            if abs(nearest - e["t_ms"]) <= MATCH_ONSET_MS:
                offsets.append(round(e["t_ms"] - nearest, 1))
    return offsets
