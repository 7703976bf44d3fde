"""Sampling + LPIPS time per sample: K seeds in one batch vs one seed at a time.

The authors' notebook draws one SR sample per call, so the RRDB conditioning network runs
K times per LR image and every call pays the fixed overheads. idard draws the K seeds of an
LR image in one call with the conditioning computed once. This script measures both ways
on the embedded model and writes the result to ``benchmark/results/sampling_batch.json``.

    python benchmark/sampling_batch.py [--k 8] [--size 256] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import statistics
import time
from pathlib import Path

import torch

from idard.measure.datasets import load_bundled
from idard.measure.distortions import DISTORTIONS
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.images import RGBImage, to_tensor
from idard.measure.models import MODELS


def _centre(image: RGBImage, size: int) -> RGBImage:
    top, left = (image.height - size) // 2, (image.width - size) // 2
    return image.with_pixels(image.pixels[top : top + size, left : left + size].copy())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_batched(model, lpips, lr, hr, seeds, device) -> float:
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        sr = model.sample(lr, seeds)[0].clamp(0, 1)
        lpips(hr, sr)
    _sync(device)
    return (time.perf_counter() - start) / len(seeds)


def time_one_by_one(model, lpips, lr, hr, seeds, device) -> float:
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for seed in seeds:
            sr = model.sample(lr, [seed])[0].clamp(0, 1)
            lpips(hr, sr)
    _sync(device)
    return (time.perf_counter() - start) / len(seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=8, help="samples per LR image")
    parser.add_argument("--size", type=int, default=256, help="HR crop size (pixels)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="srflow-tiny-4x")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sampling_batch.json")
    parser.add_argument("--smoke", action="store_true", help="seconds-long check that the script runs (tiny sizes, temp output)")
    args = parser.parse_args()
    if args.smoke:
        args.k, args.size, args.repeats = 2, 32, 1
        args.out = Path(tempfile.mkdtemp(prefix="idard-smoke-")) / "sampling_batch.json"

    model = MODELS.create(args.model).to(args.device)
    lpips = DISTORTIONS.create("lpips-alex").to(args.device)
    hr_image = _centre(load_bundled("astronaut"), args.size)
    lr = to_tensor(DOWNSCALERS.create("bicubic")(hr_image, model.scale), args.device)
    hr = to_tensor(hr_image.pixels, args.device)
    seeds = list(range(args.k))

    time_batched(model, lpips, lr, hr, seeds, args.device)  # warm-up: lazy loads, allocator
    batched = [time_batched(model, lpips, lr, hr, seeds, args.device) for _ in range(args.repeats)]
    single = [time_one_by_one(model, lpips, lr, hr, seeds, args.device) for _ in range(args.repeats)]
    result = {
        "model": model.id,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "hr_size": args.size,
        "k": args.k,
        "repeats": args.repeats,
        "seconds_per_sample_batched": statistics.median(batched),
        "seconds_per_sample_one_by_one": statistics.median(single),
        "speedup": statistics.median(single) / statistics.median(batched),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
