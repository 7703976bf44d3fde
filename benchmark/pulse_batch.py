"""PULSE seconds per (image, sample) against the number of samples optimised together.

The supplement reports 3 h 08 min for 300 images with PULSE on one RTX 3090. idard
optimises many (image, seed) latents in one batch; this script measures what that buys:

* on this machine's CPU (or ``--device cuda``) with the offline 64x64 face DCGAN, and
* with ``--stylegan`` (meant for a GPU), a StyleGAN of the FFHQ 1024 size with random
  weights, which costs what the real one does per step.

Every run uses the reference settings (whose stopping rule runs every sample all its
steps) with ``--steps`` steps, so the time per step is what is measured;
the projection of the paper's run is ``300 images x K samples x 100 steps`` at the best
measured seconds per sample-step. Writes ``benchmark/results/pulse_batch.json``.

    python benchmark/pulse_batch.py [--device cpu] [--batches 1,4,16] [--steps 5] [--stylegan]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from idard.measure.models.pulse.generators import DCGANFaces, LatentGenerator, dcgan_faces_weights
from idard.measure.models.pulse.optimize import PulseSettings, invert


def _stylegan(device: str) -> LatentGenerator:
    from idard.measure.models.pulse.stylegan import StyleGANGenerator
    from idard.measure.models.pulse.stylegan_inversion import StyleGANInversion

    torch.manual_seed(0)
    generator = StyleGANGenerator()
    mean, std = generator.to(device).gaussian_fit(n=20_000)
    return StyleGANInversion(generator, mean, std)


def seconds_per_sample_step(generator: LatentGenerator, batch: int, steps: int, scale: int, device: str) -> float:
    side = generator.resolution // scale
    lr = torch.rand((batch, 3, side, side), generator=torch.Generator().manual_seed(0)).to(device)
    settings = PulseSettings(steps=steps)
    invert(generator, lr, list(range(batch)), PulseSettings(steps=1))  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    invert(generator, lr, list(range(batch)), settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / (batch * steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4, help="K of the projected 300-image run")
    parser.add_argument("--stylegan", action="store_true", help="also time a StyleGAN-1024-sized generator")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pulse_batch.json")
    parser.add_argument("--smoke", action="store_true", help="seconds-long check that the script runs (tiny sizes, temp output)")
    args = parser.parse_args()
    if args.smoke:
        args.batches, args.steps, args.stylegan = "1,2", 1, False
        args.out = Path(tempfile.mkdtemp(prefix="idard-smoke-")) / "pulse_batch.json"
    batches = [int(b) for b in args.batches.split(",")]

    runs = {"dcgan-faces 64px, x8": (DCGANFaces(dcgan_faces_weights()).to(args.device), 8)}
    if args.stylegan:
        runs["stylegan 1024px (random weights), x32"] = (_stylegan(args.device), 32)
    result = {"device": args.device, "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              "steps_timed": args.steps, "runs": {}}
    for name, (generator, scale) in runs.items():
        per_batch = {}
        for batch in batches:
            per_batch[batch] = seconds_per_sample_step(generator, batch, args.steps, scale, args.device)
            print(f"{name}: batch {batch}: {per_batch[batch] * 1e3:.2f} ms per sample-step", flush=True)
        best = min(per_batch.values())
        result["runs"][name] = {
            "ms_per_sample_step": {str(b): round(s * 1e3, 3) for b, s in per_batch.items()},
            "speedup_best_vs_batch_1": round(per_batch[batches[0]] / best, 2) if batches[0] == 1 else None,
            "projected_300_images_minutes": round(300 * args.samples * 100 * best / 60, 1),
            "projected_300_images_minutes_batch_1": round(300 * args.samples * 100 * per_batch[batches[0]] / 60, 1),
        }
        print(json.dumps(result["runs"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
