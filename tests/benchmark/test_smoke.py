"""Every script under benchmark/ still runs: each at a tiny size (``--smoke``), in seconds.

Benchmarks rot when nothing runs them: report_scale.py stopped working when records grew
a column, and nobody noticed until its figure was needed. Each script here runs as its
users run it (a subprocess, from the repository root) with the arguments below, which
make it tiny and write its results to a temporary folder, never over benchmark/results/.

Adding a benchmark script is adding one line to SMOKE; a script without a line fails
`test_every_benchmark_script_has_a_smoke_run`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "benchmark"

#: script -> arguments that make it run in seconds, or None for a script smoke-tested in
#: its own test file (named in the comment)
SMOKE: dict[str, list[str] | None] = {
    "adaptive_coverage.py": ["--smoke"],
    "adaptive_savings.py": ["--smoke"],
    "camera_sim.py": None,  # tests/bench/test_fullref.py
    "chaos_kill.py": None,  # tests/benchmark/test_chaos_kill.py
    "ci_agreement.py": ["--smoke"],
    "cli_startup.py": ["--smoke"],
    "diffusion_batch.py": None,  # tests/benchmark/test_diffusion_scripts.py
    "diffusion_stochasticity.py": None,  # tests/benchmark/test_diffusion_scripts.py
    "gpu_timings.py": ["--smoke"],
    "lease_stall.py": ["--smoke", "--s3"],  # one stall-and-resume trial on a real S3 API; exits 1 on a duplicate key
    "model_card_samples.py": ["--smoke"],
    "pulse_batch.py": ["--smoke"],
    "reference_demo.py": None,  # tests/bench/test_reference_demo.py
    "report_scale.py": ["--smoke"],
    "runner_overhead.py": ["--smoke"],
    "s3_throughput.py": ["--smoke"],  # a loopback S3 server (moto): 2,000 records in 20 parts
    "sampling_batch.py": ["--smoke"],
    "simulated_cluster.py": ["--smoke"],
    "sota_downscalers.py": None,  # tests/benchmark/test_sota_downscalers_bench.py
    "validate_embedded.py": ["--smoke"],
}


@pytest.mark.parametrize("script", sorted(name for name, args in SMOKE.items() if args is not None))
def test_benchmark_script_runs_at_a_tiny_size(script: str) -> None:
    # A short TMPDIR: Ray puts its AF_UNIX sockets under it, and their paths may not exceed
    # 107 bytes, which pytest's tmp_path (/tmp/pytest-of-USER/pytest-N/test_.../) can.
    tmp = tempfile.mkdtemp(prefix="smoke-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": tmp}
    done = subprocess.run([sys.executable, str(BENCHMARK / script), *SMOKE[script]], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    shutil.rmtree(tmp, ignore_errors=True)
    assert done.returncode == 0, f"{script} {' '.join(SMOKE[script])} failed:\n{done.stdout[-4000:]}"


def test_every_benchmark_script_has_a_smoke_run() -> None:
    scripts = {p.name for p in BENCHMARK.glob("*.py") if not p.name.startswith("_")}
    assert scripts - set(SMOKE) == set(), "add a line to SMOKE for each new benchmark script"
    assert set(SMOKE) - scripts == set(), "SMOKE names a script that is gone"
