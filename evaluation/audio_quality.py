"""How the agent sounded: DNSMOS P.835 (SIG, BAK, OVRL) and, after packet loss, PLCMOS of the
agent's speech as the caller received it (the right channel of the call's recording).

The models are Microsoft's, shipped as ONNX files inside the PyPI package `speechmos`
(`pip install callfleet[mos]`); nothing is downloaded. What is scored: the agent's speech
segments (the VAD's agent_speech_start/end on the call clock), each widened by PAD_MS and
joined. The silence while the caller talks says nothing about the agent's voice; long digital
zeros would pull BAK towards "clean" and cost inference time, so only speech is scored and
the cost follows the agent's talk time, not the call's length.
"""

from __future__ import annotations

import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import intervals

RATE = 16_000  # both models work at 16 kHz, the recording's rate
PAD_MS = 100.0  # around each agent segment: its onset, its fade, a little background
MIN_SPEECH_S = 2.0  # less than this is too little to judge
WINDOW_S = 9.01  # DNSMOS P.835's input length
PLCMOS_RATERS = 15  # speechmos' default: PLCMOS averages over this many rater embeddings
PLCMOS_SEED = 0  # the rater embeddings are random: seeded, a call scores the same twice


@dataclass(frozen=True)
class MosModels:
    """The DNSMOS P.835 and PLCMOS v2 ONNX sessions, one intra-op thread each."""

    dnsmos: Any
    plcmos: Any
    polyfit: Any  # DNSMOS' raw-to-MOS calibration
    plcmos_features: Any  # PLCMOS' log-power STFT


_models: MosModels | None = None
_loading = threading.Lock()


def load_models() -> MosModels:
    """Load (once per process) the models shipped in the speechmos wheel."""
    global _models
    with _loading:
        if _models is None:
            _models = _load()
    return _models


def _load() -> MosModels:
    try:
        import onnxruntime
        from speechmos import dnsmos, plcmos
    except ModuleNotFoundError as e:
        raise ImportError(
            "audio quality needs speechmos and librosa: pip install 'callfleet[mos]'") from e
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # beside live calls on the same core: never more
    options.inter_op_num_threads = 1
    root = Path(dnsmos.__file__).parent

    def session(*parts: str):
        return onnxruntime.InferenceSession(str(root.joinpath(*parts)), sess_options=options,
                                            providers=["CPUExecutionProvider"])

    # The package's PLCMOS class opens its own session with default threads; borrow only its
    # feature transform, so the session above (one thread) is the one that runs.
    features = plcmos.PLCMOS.__new__(plcmos.PLCMOS)
    return MosModels(
        dnsmos=session("dnsmos_models", "sig_bak_ovr.onnx"),
        plcmos=session("plcmos_models", "plcmos_v2.onnx"),
        polyfit=lambda sig, bak, ovr: dnsmos.DNSMOS.get_polyfit_val(None, sig, bak, ovr, False),
        plcmos_features=features.stft_transform,
    )


def dnsmos(audio: np.ndarray, models: MosModels) -> dict[str, float]:
    """SIG, BAK, OVRL of float audio in [-1, 1] at 16 kHz, averaged over 9.01 s windows.

    Windows do not overlap (the reference script hops 1 s: ~9x the cost for the same mean);
    the last one ends at the end, so every second is scored. Shorter audio is repeated to
    one window, as the reference does.
    """
    n = int(WINDOW_S * RATE)
    while audio.size < n:
        audio = np.concatenate([audio, audio])
    starts = list(range(0, audio.size - n + 1, n))
    if starts[-1] + n < audio.size:
        starts.append(audio.size - n)
    scores = []
    for s in starts:
        raw = models.dnsmos.run(None, {"input_1": audio[None, s:s + n]})[0][0]
        scores.append(models.polyfit(*raw))
    sig, bak, ovrl = np.mean(scores, axis=0)
    return {"sig": round(float(sig), 3), "bak": round(float(bak), 3), "ovrl": round(float(ovrl), 3)}


def plcmos(audio: np.ndarray, models: MosModels) -> float:
    """PLCMOS v2 of float audio at 16 kHz: the mean over PLCMOS_RATERS seeded rater embeddings."""
    features = np.float32(models.plcmos_features(audio))[np.newaxis, np.newaxis, ...]
    rng = np.random.default_rng(PLCMOS_SEED)
    total = 0.0
    for _ in range(PLCMOS_RATERS):
        raters = rng.normal(size=(1, 64)).astype(np.float32)
        out = models.plcmos.run(None, {"degraded_audio": features, "rater_embed": raters})[0]
        total += float(np.asarray(out).reshape(-1)[0])
    return round(total / PLCMOS_RATERS, 3)


def score_speech(pcm: np.ndarray, *, packet_loss: bool,
                 models: MosModels | None = None) -> dict[str, Any]:
    """The audio_quality block for int16 (or float) speech at 16 kHz."""
    models = models or load_models()  # once per process: not part of a call's cost
    began = time.thread_time()  # this thread's CPU: what scoring costs, whatever else runs
    audio = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0)
    seconds = round(audio.size / RATE, 2)
    if seconds < MIN_SPEECH_S:
        return skipped("too_little_agent_speech", seconds_scored=seconds)
    return {
        "dnsmos": dnsmos(audio, models),
        "plcmos": plcmos(audio, models) if packet_loss else None,
        "seconds_scored": seconds,
        "cost_s": round(time.thread_time() - began, 3),
    }


def skipped(reason: str, seconds_scored: float = 0.0) -> dict[str, Any]:
    """The block of a call that was not scored, with why."""
    return {"dnsmos": None, "plcmos": None, "seconds_scored": seconds_scored, "cost_s": 0.0,
            "skipped": reason}


def agent_speech(right: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """The agent's speech segments of the recording's agent channel, padded and joined."""
    spans = [(iv.start, iv.end) for iv in
             intervals(record.get("events") or [], "agent_speech_start", "agent_speech_end")]
    if not spans:  # a record without VAD events: its agent turns
        spans = [(float(t["start_ms"]), float(t["end_ms"])) for t in record.get("turns") or []
                 if t.get("speaker") == "agent"]
    pieces, last = [], 0
    for start_ms, end_ms in sorted(spans):
        a = max(last, int((start_ms - PAD_MS) * RATE / 1000))
        b = min(right.size, int((end_ms + PAD_MS) * RATE / 1000))
        if b > a:
            pieces.append(right[a:b])
            last = b  # padded segments that touch are not scored twice
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


def read_agent_channel(path: Path) -> np.ndarray:
    """The right (agent) channel of a stereo 16 kHz int16 recording."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getsampwidth() != 2 or w.getnchannels() != 2:
            raise ValueError(f"{path.name}: expected 16 kHz 16-bit stereo")
        frames = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return frames.reshape(-1, 2)[:, 1].copy()


def lost_packets(record: dict[str, Any]) -> bool:
    """The network lost some of the agent's packets: PLCMOS then judges the concealment."""
    loss = (record.get("network") or {}).get("packet_loss_pct")
    return isinstance(loss, int | float) and not isinstance(loss, bool) and loss > 0


def score_record(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The audio_quality block of a finished call, from its recording (never raises)."""
    if not record.get("audio"):
        return skipped("no_recording")
    try:
        right = read_agent_channel(Path(run_dir) / record["audio"])
        speech = agent_speech(right, record)
        return score_speech(speech, packet_loss=lost_packets(record))
    except ImportError:
        return skipped("mos_not_installed")
    except (OSError, ValueError, EOFError, wave.Error) as e:
        return {**skipped("recording_unreadable"), "detail": f"{type(e).__name__}: {e}"[:200]}

