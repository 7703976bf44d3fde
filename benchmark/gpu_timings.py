"""The GPU timings of one lent device session, in one call: the batch scripts at GPU sizes.

A lent GPU machine is held by the minute and starts bare, so its checks run as one
prepared command: this script runs the three batch benchmarks one after another, each in
its own process (a CUDA failure in one leaves the others' figures), and gathers their JSON
into one file:

* `sampling_batch.py`: SRFlow (the embedded model) + LPIPS, K seeds in one batch vs one at a time;
* `pulse_batch.py --stylegan`: PULSE's seconds per sample-step with a StyleGAN-1024-sized
  generator, and the projection of the paper's 300-image run (3 h 08 min on an RTX 3090);
* `diffusion_batch.py`: ResShift samples per second against batch size, embedded and at
  the published layout (256 -> 1024, random weights: timing needs no checkpoint).

    python benchmark/gpu_timings.py --device cuda --out DIR     # on the GPU machine
    python benchmark/gpu_timings.py --smoke                      # seconds, on the CPU

Ray and Polars are not needed (the device image lacks them and their wheels exceed what a
call may carry), so the runner's own throughput on a GPU is not measured here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent

#: script -> arguments at GPU sizes; ``{out}`` is the script's JSON file.
GPU_RUNS = {
    "sampling_batch.py": ["--k", "8", "--size", "512", "--repeats", "3", "--out", "{out}"],
    "pulse_batch.py": ["--stylegan", "--batches", "1,4,16,32", "--steps", "5", "--out", "{out}"],
    "diffusion_batch.py": ["--size", "256", "--batches", "1,4,16", "--published-batches", "1,2,4,8",
                           "--repeats", "2", "--out", "{out}"],
}
#: One script at its smoke size (CPU, seconds): the others have smoke runs of their own, so
#: this proves the gathering, not the scripts.
SMOKE_RUNS = {
    "diffusion_batch.py": ["--size", "32", "--batches", "1,2", "--repeats", "1", "--small-published",
                           "--lr-size", "16", "--published-batches", "1", "--out", "{out}"],
}


def run_one(script: str, args: list[str], device: str, out_dir: Path) -> dict:
    """Run one batch script; its JSON (when it wrote one), exit code, seconds and output tail."""
    out = out_dir / (Path(script).stem + ".json")
    argv = [sys.executable, str(HERE / script), "--device", device, *(a.format(out=out) for a in args)]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    entry = {"argv": argv[1:], "returncode": done.returncode, "seconds": round(time.perf_counter() - start, 1),
             "output_tail": (done.stdout + done.stderr)[-2000:]}
    if out.exists():
        entry["result"] = json.loads(out.read_text())
    print(f"{script}: exit {done.returncode} in {entry['seconds']} s", flush=True)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None, help="folder for the scripts' JSON and gpu_timings.json")
    parser.add_argument("--only", default=None, help="comma-separated scripts to run (default: all)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long check on the CPU (tiny sizes)")
    args = parser.parse_args()
    runs = SMOKE_RUNS if args.smoke else GPU_RUNS
    device = "cpu" if args.smoke else args.device
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="idard-gpu-timings-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in runs if args.only is None or s in args.only.split(",")]
    summary = {"device": device, "runs": {s: run_one(s, runs[s], device, out_dir) for s in chosen}}
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            summary["gpu"] = torch.cuda.get_device_name(0)
        summary["torch"] = torch.__version__
    except ImportError:
        pass
    (out_dir / "gpu_timings.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out_dir / 'gpu_timings.json'}")
    sys.exit(max((r["returncode"] != 0 for r in summary["runs"].values()), default=0))


if __name__ == "__main__":
    main()
