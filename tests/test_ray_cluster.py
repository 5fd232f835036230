"""`callfleet run --address` against a real two-node Ray cluster on 127.0.0.1, with null calls:
hosts spread over both nodes, every planned call accounted once, and a node lost mid-run.

The cluster (tests/local_ray_cluster.py) runs in its own process group with token auth and its
own temp dir; teardown kills every process that carries this test's token path, and nothing
else.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestration.store import read_records

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
TOTAL_CALLS = 30
NULL_CALL_S = 3.0


def _cluster_env(token_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    env.update({
        "RAY_AUTH_MODE": "token",  # a node or driver without the token is refused
        "RAY_AUTH_TOKEN_PATH": str(token_path),
        # Keep 127.0.0.1 as given: otherwise Ray swaps it for the machine's routable address.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(ROOT),
    })
    return env


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no answer from the cluster process within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the cluster process ended (exit {proc.wait()})")
    return line.strip()


def _processes_marked(marker: str) -> list[int]:
    """Our processes: every Ray daemon and worker inherits the token path from the env."""
    needle = f"RAY_AUTH_TOKEN_PATH={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours
    return found


def _kill_marked(marker: str) -> None:
    for _ in range(3):
        pids = _processes_marked(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def _wait_for_records(run_parent: Path, enough, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    records: list[dict] = []
    while time.monotonic() < deadline:
        files = list(run_parent.glob("*/calls.jsonl"))
        if files:
            records, _ = read_records(files[0])
            if enough(records):
                return records
        time.sleep(0.2)
    raise TimeoutError(f"{len(records)} records after {timeout:.0f} s")


def test_run_on_two_node_cluster_spreads_hosts_and_survives_losing_a_node(tmp_path):
    # Ray's socket paths must stay under 107 characters: a short temp dir, not tmp_path.
    ray_dir = Path(tempfile.mkdtemp(prefix="cf-ray-", dir="/tmp"))
    token_path = ray_dir / "token"
    token_path.write_text(secrets.token_hex(32))  # this cluster's own; never printed
    token_path.chmod(0o600)
    env = _cluster_env(token_path)
    config = tmp_path / "cluster-null.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "name": "cluster-null", "seed": 3,
        "target": {"url": "http://127.0.0.1:9/never-dialled"},
        "personas": {"cooperative-john": 1, "hesitant-maria": 1},
        "load": {"total_calls": TOTAL_CALLS, "max_concurrency": 6, "calls_per_second": 6},
        "fleet": {"null_call_s": NULL_CALL_S, "hosts": 2},
        "gates": {"completion_rate": {"min": 0.5}},
    }))
    out = tmp_path / "runs"
    began = time.monotonic()
    # The head has a spare CPU: the host replacing the lost one needs somewhere to go.
    cluster_log, run_log = open(tmp_path / "cluster.log", "w"), open(tmp_path / "run.log", "w")
    cluster = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "local_ray_cluster.py"), str(ray_dir / "t"), "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=cluster_log,
        text=True, env=env, start_new_session=True)
    run = None
    try:
        nodes = json.loads(_read_line(cluster, 90))
        assert nodes["address"].startswith("127.0.0.1:")
        run = subprocess.Popen(
            [sys.executable, "-m", "orchestration.cli", "run", str(config), "--out", str(out),
             "--address", nodes["address"]],
            stdout=run_log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)

        # Lose the worker node while it has calls in flight, once it has finished a few.
        def worker_busy(records: list[dict]) -> bool:
            return sum(_node(r) == nodes["worker"] for r in records) >= 3
        before = _wait_for_records(out, worker_busy, 60)
        cluster.stdin.write("kill-worker\n")
        cluster.stdin.flush()
        assert _read_line(cluster, 30) == "removed"
        lost_at = len(before)

        rc = run.wait(timeout=90)
        log = (tmp_path / "run.log").read_text()
        assert rc == 0, log[-3000:]  # a verdict (gates passed), not a crash
        assert "Traceback" not in log, log[-3000:]
        run_dir = next(out.iterdir())
        records, warnings = read_records(run_dir / "calls.jsonl")
        assert warnings == []
        summary = json.loads((run_dir / "summary.json").read_text())
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        if cluster.poll() is None:
            cluster.stdin.close()  # the cluster process shuts its nodes down
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        _kill_marked(str(token_path))
        cluster_log.close()
        run_log.close()
        left = _processes_marked(str(token_path))
        shutil.rmtree(ray_dir, ignore_errors=True)
        assert left == []

    ids = Counter(r["call_id"] for r in records)
    assert len(ids) == TOTAL_CALLS and max(ids.values()) == 1  # every call once, none twice
    outcome = Counter((r["status"], r["failure_reason"]) for r in records)
    lost = [r for r in records if r["failure_reason"] == "caller_host_lost"]
    assert outcome[("completed", None)] + len(lost) == TOTAL_CALLS
    assert lost and all(_node(r) == nodes["worker"] for r in lost)  # lost with their node
    completed_on = Counter(_node(r) for r in records if r["status"] == "completed")
    assert completed_on[nodes["head"]] > 0 and completed_on[nodes["worker"]] >= 3
    assert set(completed_on) == {nodes["head"], nodes["worker"]}
    # after the loss the run went on, on the head alone
    assert outcome[("completed", None)] > lost_at
    assert summary["partial"] is False
    assert summary["calls"]["planned"] == TOTAL_CALLS
    assert summary["calls"]["failure_reasons"] == {"caller_host_lost": len(lost)}
    print(f"\ncluster run: {TOTAL_CALLS} calls, completed on head {completed_on[nodes['head']]}, "
          f"on worker {completed_on[nodes['worker']]}, lost with the worker {len(lost)}, "
          f"{time.monotonic() - began:.0f} s")


def _node(record: dict) -> str | None:
    return (record.get("generator") or {}).get("host_node_id")
