"""Resource guards before a run starts: disk for the recordings, file descriptors for the
calls in flight, hosts within the cluster's CPUs. One line each; a run that cannot fit exits 2
(ConfigError) before any call is placed.

The checks are pure functions of numbers (tested with made-up ones); `check_before_start` and
`check_hosts` read the machine and print their lines."""

from __future__ import annotations

import math
import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from callers.audio import STT_RATE
from callers.errors import ConfigError
from orchestration.config import RunConfig

# The recording callfleet writes per call (callers/session.py _write_audio ->
# callers/audio.write_stereo_wav): stereo (left caller, right agent), 16-bit samples at the
# STT rate, 16 kHz. 16,000 x 2 x 2 = 64,000 bytes a second = 3.84 MB per call-minute.
WAV_CHANNELS = 2
WAV_SAMPLE_BYTES = 2
WAV_BYTES_PER_S = STT_RATE * WAV_CHANNELS * WAV_SAMPLE_BYTES
WAV_HEADER_BYTES = 44
DISK_WARN_FRACTION = 0.8  # the recordings would fill more than this share of the free space

# File descriptors one call in flight holds in one process. Measured here (aiortc 1.16,
# loopback ICE): a peer connection holds 2 UDP sockets while gathering (RTP and RTCP
# components) and 1 once connected (bundle, rtcp-mux). The rest is counted from the code:
# the signaling HTTP connection (aiohttp, open until the hangup), the WAV file at the end, an
# LLM brain's HTTP pool (1-2), and room for a target that gathers on more interfaces. The
# embedded reference agent holds fewer per call (its peer connection and the accepted HTTP
# connection). A process itself (Python, Ray's channels, model files) gets FDS_BASE.
FDS_PER_CALL = 8
FDS_BASE = 256

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Guard:
    """One guard's verdict and its line; raise_fds_to: the soft fd limit to set first."""

    level: Level
    line: str
    raise_fds_to: int | None = None


def recording_bytes(calls: int, call_s: float) -> int:
    """Bytes of WAV for `calls` recordings of at most `call_s` seconds each."""
    return calls * (math.ceil(call_s * WAV_BYTES_PER_S) + WAV_HEADER_BYTES)


def disk_guard(needed: int, free: int, where: str, how: str) -> Guard:
    """needed: bytes the recordings may take; free: bytes free where they go; how: the sum."""
    if needed > free:
        return Guard("fail", f"disk: the recordings may need {_size(needed)} ({how}) but "
                             f"{where} has {_size(free)} free; run with --no-audio (no "
                             "recordings), lower fleet.max_call_s or free some space")
    if needed > DISK_WARN_FRACTION * free:
        return Guard("warn", f"warning: disk: the recordings may need {_size(needed)} ({how}), "
                             f"{needed / free:.0%} of the {_size(free)} free on {where}; "
                             "--no-audio writes none")
    return Guard("ok", f"disk: recordings up to {_size(needed)} ({how}); {_size(free)} free "
                       f"on {where}")


def fds_needed(calls_at_once: int) -> int:
    """File descriptors one process needs to hold this many calls at once."""
    return FDS_BASE + FDS_PER_CALL * calls_at_once


def calls_per_process(max_concurrency: int, hosts: int, embedded_agent: bool) -> int:
    """The most calls one process on this machine holds at once: the embedded reference
    agent answers every call; otherwise each host takes its share (the least busy goes next)."""
    return max_concurrency if embedded_agent else math.ceil(max_concurrency / max(1, hosts))


def fd_guard(calls_at_once: int, soft: int, hard: int) -> Guard:
    """The open-files limit (soft, hard; RLIM_INFINITY for none) against the calls one process
    holds at once: raise the soft limit if the hard one allows, else fail."""
    needed = fds_needed(calls_at_once)
    unlimited = hard == resource.RLIM_INFINITY
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return Guard("ok", f"file descriptors: {calls_at_once} calls at once in one process need "
                           f"~{needed:,}; the limit is {_limit(soft)}")
    if unlimited or needed <= hard:
        return Guard("ok", f"file descriptors: raised the soft limit from {soft:,} to {needed:,} "
                           f"for {calls_at_once} calls at once in one process (hard limit "
                           f"{_limit(hard)})", raise_fds_to=needed)
    return Guard("fail", f"file descriptors: {calls_at_once} calls at once in one process need "
                         f"~{needed:,} but the hard limit is {hard:,} (ulimit -Hn); raise it "
                         "or lower load.max_concurrency")


def hosts_guard(asked: int | None, cpus: float, embedded_agent: bool) -> Guard:
    """fleet.hosts against the CPUs Ray reports. More hosts than CPUs fail rather than clamp:
    each host takes a whole CPU, so the extra ones would never start (the run would wait for
    them, then die), and a clamped run is not the fleet the config asked for."""
    have = int(cpus)
    if asked is None:
        spare = " (one left to the reference agent)" if embedded_agent and have > 1 else ""
        return Guard("ok", f"hosts: one per CPU the cluster has free, {have} CPUs{spare}")
    if asked > have:
        return Guard("fail", f"hosts: fleet.hosts is {asked} but the Ray cluster has {have} "
                             f"CPUs and each host takes one; set fleet.hosts to {have} or less, "
                             "or add nodes (an autoscaling cluster counts only what it has now)")
    if embedded_agent and asked >= have and have > 1:
        return Guard("warn", f"warning: hosts: {asked} hosts on {have} CPUs leave the reference "
                             "agent no core of its own; its latency will include the callers' "
                             "load")
    return Guard("ok", f"hosts: {asked} of the cluster's {have} CPUs")


def check_before_start(config: RunConfig, out: Path) -> None:
    """Disk and file descriptors, before Ray, the agent or a model starts: one line each;
    ConfigError (exit 2) when the run cannot fit. Raises the soft fd limit when it must, so
    that what starts later (the reference agent, local Ray hosts) inherits it."""
    _show(_disk(config, out))
    embedded = config.target.url == "reference"
    hosts = config.fleet.hosts or max(1, _local_cpus() - (1 if embedded else 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    guard = fd_guard(calls_per_process(config.load.max_concurrency, hosts, embedded), soft, hard)
    if guard.raise_fds_to is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (guard.raise_fds_to, hard))
        except (ValueError, OSError) as e:  # e.g. above fs.nr_open with an unlimited hard limit
            raise ConfigError(f"file descriptors: could not raise the soft limit from {soft:,} "
                              f"to {guard.raise_fds_to:,}: {e}") from None
    _show(guard)


def check_hosts(config: RunConfig) -> None:
    """fleet.hosts against the CPUs of the Ray cluster (once Ray is up, before hosts start)."""
    import ray

    if not ray.is_initialized():  # tests that stand in for Ray
        return
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    _show(speech_service_guard(config, cpus, gpus))
    _show(hosts_guard(config.fleet.hosts, cpus - speech_service_cpus(config),
                      config.target.url == "reference"))


def _serve_deployments(config: RunConfig) -> list[tuple[str, Any]]:
    """(field, deployment options) of each Ray Serve speech deployment the run starts."""
    speech = config.speech
    if config.fleet.null_call_s is not None:  # null calls load no speech
        return []
    return [(f"speech.serve.{kind}", getattr(speech.serve, kind))
            for kind, backend in (("stt", speech.stt), ("tts", speech.tts))
            if backend == "serve"]


def speech_service_cpus(config: RunConfig) -> float:
    """CPUs the run's Serve speech replicas reserve (none without stt/tts: serve)."""
    return sum(d.replicas * d.num_cpus for _, d in _serve_deployments(config))


def speech_service_guard(config: RunConfig, cpus: float, gpus: float) -> Guard | None:
    """The Serve speech replicas must fit the cluster, or they would never start."""
    deployments = _serve_deployments(config)
    if not deployments:
        return None
    want_gpus = sum(d.replicas * d.num_gpus for _, d in deployments)
    if want_gpus > gpus:
        where = next(f for f, d in deployments if d.num_gpus)
        return Guard("fail", f"{where}.num_gpus: the speech replicas ask for {want_gpus:g} GPUs "
                             f"but the Ray cluster has {gpus:g}")
    want = speech_service_cpus(config)
    if want >= cpus:
        return Guard("fail", f"speech.serve: the speech replicas reserve {want:g} CPUs "
                             f"(replicas x num_cpus) and the Ray cluster has {cpus:g}, leaving "
                             "none for a caller host; lower num_cpus or add nodes")
    return Guard("ok", f"speech: Ray Serve replicas reserve {want:g} of the cluster's "
                       f"{cpus:g} CPUs" + (f" and {want_gpus:g} GPUs" if want_gpus else ""))


def _disk(config: RunConfig, out: Path) -> Guard:
    where = _existing(out)
    free = shutil.disk_usage(where).free
    if config.fleet.null_call_s is not None:
        return Guard("ok", f"disk: null calls write no recordings; {_size(free)} free on {where}")
    if not config.fleet.audio:
        return Guard("ok", f"disk: recordings off (--no-audio); {_size(free)} free on {where}")
    calls, call_s = config.load.total_calls, config.fleet.max_call_s
    how = (f"{calls:,} calls x up to {call_s:g} s (fleet.max_call_s) x "
           f"{WAV_BYTES_PER_S * 60 / 1e6:g} MB per call-minute, 16 kHz stereo 16-bit WAV")
    return disk_guard(recording_bytes(calls, call_s), free, str(where), how)


def _show(guard: Guard | None) -> None:
    if guard is None:
        return
    if guard.level == "fail":
        raise ConfigError(guard.line)
    from orchestration.console import console

    console.print(guard.line, markup=False, style="yellow" if guard.level == "warn" else None)


def _existing(path: Path) -> Path:
    """The nearest existing directory at or above path (--out is made later if missing)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value:,}"


def _size(n: float) -> str:
    """Decimal units, as df -H and disk vendors count."""
    unit = "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n:.0f} {unit}" if unit in ("B", "kB") or n >= 100 else f"{n:.1f} {unit}"
