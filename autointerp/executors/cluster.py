"""Join a Ray cluster, or start one on this machine when there is none.

`auto` joins the cluster that `ray start --head` (or `ray start --address ...`) runs on this machine; with
no cluster running, a local one is started in this process (no dashboard, usage stats off). Ray binds to
127.0.0.1 for a cluster it starts here unless told otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from autointerp.workflows.options import OptionsError

LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2  # a local cluster's object store: states and reports, not datasets


class ClusterError(OptionsError):
    """No Ray cluster at the given --ray-address; the message says how to start one."""


def connect(address: str = "auto", *, num_cpus: int | None = None) -> Any:
    """ray, initialised: joined to `address` (auto: this machine's running cluster, else a new local one)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the cluster unless the user opts in
    import ray

    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    except ConnectionError as exc:
        if address != "auto":
            raise ClusterError(f"no Ray cluster at --ray-address {address} ({exc}); start one with "
                               "`ray start --head` on the head machine, or pass --ray-address auto") from None
        ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 log_to_driver=True)
    return ray


def alive_nodes(ray: Any) -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))
