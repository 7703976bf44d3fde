"""Run a snippet in a fresh interpreter with a memory ceiling and a time limit.

Tests of decompression and alias bombs check that a bound holds. When the bound breaks,
the bomb goes off in the test process: it hangs for minutes and grows past the machine's
memory (a broken YAML bound once grew past 16 GB) instead of failing. Run in a child with
``RLIMIT_DATA`` and a timeout, a broken bound fails fast with a `MemoryError` or a timeout.

``RLIMIT_DATA`` (heap and anonymous mappings, where a bomb's pixels or strings go), not
``RLIMIT_AS``: importing torch maps gigabytes of shared libraries that use no memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, ({limit}, {limit}))
def _report(result):
    # VmHWM: this process image's peak (ru_maxrss would keep the forking test process's)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    peak = int(status["VmHWM"].split()[0]) * 1024
    print("\\n" + json.dumps({{"result": result, "peak_rss": peak}}))
"""


@dataclass(frozen=True)
class Guarded:
    """What the snippet passed to ``_report(...)`` and the child's peak resident memory (VmHWM)."""

    result: object
    peak_rss: int


def run_guarded(code: str, *, memory_bytes: int, timeout_s: float = 120.0) -> Guarded:
    """Run ``code`` (which ends by calling ``_report(value)`` with a JSON-able value) in a
    child interpreter limited to ``memory_bytes`` of data and ``timeout_s`` seconds.

    Fails the calling test with the child's output when it crashes, runs out of memory or
    time, so a broken bound is a fast, readable failure.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    try:
        done = subprocess.run([sys.executable, "-c", _PRELUDE.format(limit=memory_bytes) + code],
                              capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the guarded snippet ran past {timeout_s} s (a bound that no longer holds?)") from None
    if done.returncode != 0:
        raise AssertionError(f"the guarded snippet failed (exit {done.returncode}; past its "
                             f"{memory_bytes / 2**30:.1f} GiB ceiling?):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Guarded(report["result"], int(report["peak_rss"]))
