"""Run a test in a private network namespace, so what it starts can listen on loopback only.

Ray's multi-node mode binds its GCS and raylets to every interface, whatever
``--node-ip-address`` says; inside a namespace of its own (``unshare --net``, as root, as
CI runs) the only interface is the namespace's loopback, so nothing the test starts is
reachable from outside it, and it reaches nothing outside. A test calls `isolated` first:
outside a namespace, that re-runs the same test in a fresh one and reports its result.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Set in the re-run's environment: the test is inside its private namespace.
INSIDE = "IDARD_TEST_PRIVATE_NETWORK"


def _can_unshare(scope: list[str]) -> str | None:
    """None when this process may make the namespaces of ``scope``; else why not."""
    try:
        probe = subprocess.run(["unshare", *scope, "sh", "-c", "ip link set lo up"], capture_output=True,
                               text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if probe.returncode == 0 else (probe.stderr.strip() or f"exit {probe.returncode}")


def isolated(request: pytest.FixtureRequest, timeout: float = 900, *, own_pids: bool = False) -> bool:
    """True inside the private namespace (run the test's body); outside, re-run this test in
    one, fail with its output if it failed, and return False (the body already ran there).
    Skips, saying why, where no namespace can be made (not root).

    ``own_pids`` gives the test a process namespace too (``--pid --fork --mount-proc``): for
    code under test that ends processes by name machine-wide (``ray stop``, which ``ray
    down`` runs on the head), and so that the kernel ends everything the test started when
    it exits, even on failure. It also gets its own ``/tmp/ray`` (a tmpfs in its own mount
    namespace): Ray's command-line tools (``ray status``, ``ray start`` without an address)
    find "the" local cluster through ``/tmp/ray/ray_current_cluster``, which a concurrent
    test's ``ray.cluster_utils.Cluster`` writes machine-wide. Once, in CI, ``ray status`` on
    the rehearsal head read another test's GCS address from it, failed, and the launcher
    then tried to start a second Ray on the head's port."""
    if os.environ.get(INSIDE) == "1":
        return True
    scope = ["--net", *(["--pid", "--fork", "--mount-proc"] if own_pids else [])]
    why = _can_unshare(scope)
    if why is not None:
        pytest.skip(f"cannot make a private network namespace ({why}); Ray would listen beyond 127.0.0.1")
    node = shlex.quote(request.node.nodeid)
    # With its own pids the shell stays, as the namespace's init: it reaps what daemons leave
    # (Ray's), which would otherwise stay zombies that `ray stop` waits for as if alive.
    launch = "" if own_pids else "exec "
    private_ray = "mkdir -p /tmp/ray && mount -t tmpfs -o mode=1777 idard-test-ray /tmp/ray && " if own_pids else ""
    command = f"ip link set lo up && {private_ray}{launch}{shlex.quote(sys.executable)} -m pytest -q -s -p no:cacheprovider {node}"
    done = subprocess.run(["unshare", *scope, "sh", "-c", command], cwd=REPO, env={**os.environ, INSIDE: "1"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    print(done.stdout[-3000:])
    assert done.returncode == 0, f"in its private network namespace the test failed:\n{done.stdout[-6000:]}"
    return False
