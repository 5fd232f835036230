"""Start the reference agent as a child process on a free loopback port, and stop it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

from callers.errors import ConfigError

READY_PREFIX = "callfleet agent listening on "


@contextlib.contextmanager
def reference_agent(*agent_args: str, startup_timeout_s: float = 90.0) -> Iterator[str]:
    """Yields the agent's base URL (http://127.0.0.1:PORT); the process dies with the block."""
    with reference_agent_process(*agent_args, startup_timeout_s=startup_timeout_s) as (_, url):
        yield url


@contextlib.contextmanager
def reference_agent_process(
    *agent_args: str, startup_timeout_s: float = 90.0
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Like reference_agent, with the process too (fault tests kill it mid-call)."""
    command = [sys.executable, "-m", "orchestration.cli", "agent", "--host", "127.0.0.1",
               "--port", "0", *agent_args]
    # Its own session: a terminal's Ctrl-C goes to the driver's process group only, so the
    # driver lets in-flight calls finish (exit 3) before it stops the agent, instead of the
    # agent dying with them and every in-flight call blamed on it (remote_hangup_early).
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        yield proc, _wait_ready(proc, startup_timeout_s)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_ready(proc: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # the agent prints its URL once models are loaded
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX):].split()[0]
        if not line and proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise ConfigError(f"reference agent exited ({proc.returncode}): "
                              + (err[-1] if err else "no output"))
    raise ConfigError(f"reference agent did not start within {timeout_s:.0f} s")
