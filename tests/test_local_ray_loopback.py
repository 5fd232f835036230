"""A local run's own Ray listens on 127.0.0.1 only: by default its GCS, raylet and workers
listen on every interface and its runtime-env agent on the machine's routable address
(orchestration.fleet.start_ray keeps them on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys

# In a process of its own: start_ray, then every TCP socket listening in that process's tree
# (Ray's daemons, agents and a worker) as "address:port", from /proc.
PROBE = r"""
import json, os, time, ray
from orchestration.fleet import start_ray

start_ray()

@ray.remote
def where():
    return ray.util.get_node_ip_address()

node = ray.get(where.remote())
time.sleep(2)  # the agents' servers come up after ray.init returns

def children():
    kids = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        kids.setdefault(ppid, []).append(int(pid))
    tree, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(kids.get(pid, []))
    return tree

inodes = set()
for pid in children():
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        continue

def address(hex_addr):
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        text = ".".join(str(b) for b in raw[::-1])
    else:  # /proc/net/tcp6: four little-endian 32-bit words
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        flat = b"".join(words)
        text = (".".join(str(b) for b in flat[12:]) if flat[:12] == b"\0" * 10 + b"\xff\xff"
                else flat.hex())
    return f"{text}:{int(port, 16)}"

listening = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN, one of ours
            listening.append(address(fields[1]))
print(json.dumps({"node": node, "listening": listening}))
ray.shutdown()
"""


def test_a_local_runs_ray_listens_on_loopback_only():
    done = subprocess.run([sys.executable, "-c", PROBE], text=True, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["node"] == "127.0.0.1"
    assert len(found["listening"]) >= 4, found  # GCS, raylet, agents, worker: all seen
    assert all(a.startswith("127.0.0.1:") for a in found["listening"]), found["listening"]
