"""Start the Pipecat bot (tests/third_party/pipecat_bot.py) in its own venv, and stop it.

The bot is a third-party agent with its own dependencies (pipecat-ai needs protobuf<7, the
project pins 7), so it runs under `.venv-pipecat/bin/python` (built by `make pipecat-bot`,
which `make test` depends on), or the interpreter named by CALLFLEET_PIPECAT_PYTHON.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BOT = REPO / "tests" / "third_party" / "pipecat_bot.py"
READY_PREFIX = "pipecat bot listening on "


def pipecat_python() -> Path:
    default = REPO / ".venv-pipecat" / "bin" / "python"
    return Path(os.environ.get("CALLFLEET_PIPECAT_PYTHON", default))


@contextlib.contextmanager
def pipecat_bot(*bot_args: str, startup_timeout_s: float = 120.0,
                log_path: Path | None = None) -> Iterator[str]:
    """Yields the bot's offer URL (http://127.0.0.1:PORT/api/offer); the bot dies with the block.

    The bot's log (stderr, and any stray stdout) goes to log_path (a temporary file if None).
    """
    python = pipecat_python()
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `make pipecat-bot` (make test does)")
    if log_path is None:
        log_path = Path(tempfile.mkstemp(prefix="pipecat-bot-", suffix=".log")[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
           "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a") as log:
        proc = subprocess.Popen([str(python), str(BOT), "--host", "127.0.0.1", "--port", "0",
                                 *bot_args], stdout=subprocess.PIPE, stderr=log, text=True,
                                env=env, cwd=REPO)
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_drain, args=(proc, lines, log), daemon=True)
        reader.start()
        try:
            yield _wait_ready(proc, lines, startup_timeout_s, log_path) + "/api/offer"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            reader.join(timeout=5)


def bot_calls(offer_url: str, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """What the bot says it did, per call (keyed by its pc_id): GET /api/events."""
    url = offer_url.rsplit("/api/offer", 1)[0] + "/api/events"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
        return {call["pc_id"]: call for call in json.load(response)}


def _drain(proc: subprocess.Popen, lines: queue.Queue[str | None], log: Any) -> None:
    """Hands stdout lines to the waiter; after the ready line, copies stray output to the log."""
    assert proc.stdout is not None
    ready = False
    for line in proc.stdout:
        if ready:
            log.write(line)
            log.flush()
            continue
        lines.put(line)
        ready = line.startswith(READY_PREFIX)
    lines.put(None)


def _wait_ready(proc: subprocess.Popen, lines: queue.Queue[str | None], timeout_s: float,
                log_path: Path) -> str:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:  # stdout closed: the bot exited
            proc.wait(timeout=10)
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"pipecat bot exited ({proc.returncode}): " + " | ".join(tail))
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX):].split()[0]
    raise RuntimeError(f"pipecat bot did not start within {timeout_s:.0f} s (log: {log_path})")
