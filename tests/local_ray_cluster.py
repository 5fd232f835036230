"""A two-node Ray cluster on 127.0.0.1, run as its own process by tests/test_ray_cluster.py.

Why not two `ray start` processes: Ray's CLI rewrites 127.0.0.1 to the machine's routable
address (its daemons then listen on every interface), and with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps 127.0.0.1, it refuses to start a second node.
Ray's own multi-node test harness (ray.cluster_utils.Cluster) starts the same daemons (a GCS,
and a raylet with its own object store per node) with any node address, so both nodes here
listen on 127.0.0.1 only. Auth comes from the environment: RAY_AUTH_MODE=token and
RAY_AUTH_TOKEN_PATH, set by the caller.

Protocol on stdio: one JSON line {"address", "head", "worker"} once both nodes are up; then
the line "kill-worker" kills the worker node's processes outright (a node crash) and answers
"removed"; end of input shuts the cluster down.
"""

from __future__ import annotations

import json
import sys

from ray.cluster_utils import Cluster

# Node death is noticed after health_check_period_ms * failure_threshold (+ timeout);
# Ray's defaults take tens of seconds, too long for a test.
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_timeout_ms": 1000,
                      "health_check_failure_threshold": 3}


def main(temp_dir: str, head_cpus: int) -> None:
    cluster = Cluster(initialize_head=True, shutdown_at_exit=True, head_node_args={
        "node_ip_address": "127.0.0.1", "num_cpus": head_cpus, "temp_dir": temp_dir,
        "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS})
    try:
        worker = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1)
        cluster.wait_for_nodes(timeout=60)
        print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id,
                          "worker": worker.node_id}), flush=True)
        for line in sys.stdin:
            if line.strip() == "kill-worker":
                cluster.remove_node(worker, allow_graceful=False)
                print("removed", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
