"""How stochastic is a decoder? Per-pixel standard deviation across seeds on held-out photos.

IDA-RD needs a stochastic decoder (supplement Table 11: deterministic SR is invalid for it).
For each held-out photograph: the bicubic 4x LR, K samples, the standard deviation over
the K samples of each pixel (RGB in [0, 1], samples clamped as the evaluator clamps them),
averaged over pixels; also the 99th percentile. Writes
``benchmark/results/stochasticity_<model>.json``.

    python benchmark/diffusion_stochasticity.py [--model resshift-tiny-4x] [--samples 8] [--crop 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from idard.measure.datasets import HELD_OUT, load_bundled
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.images import RGBImage, crop_to_multiple, to_tensor
from idard.measure.models import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resshift-tiny-4x")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--crop", type=int, default=0, help="centre crop side (0: whole photo)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    model = MODELS.create(args.model)
    rows = {}
    with torch.inference_mode():
        for name in HELD_OUT:
            photo = load_bundled(name)
            if args.crop:
                top, left = (photo.height - args.crop) // 2, (photo.width - args.crop) // 2
                photo = RGBImage(name=name, pixels=photo.pixels[top : top + args.crop, left : left + args.crop].copy(),
                                 bit_depth=8)
            hr = crop_to_multiple(photo, model.scale)
            lr = to_tensor(DOWNSCALERS.create("bicubic")(hr, model.scale), "cpu")
            sr = model.sample(lr, list(range(args.samples)))[0].clamp(0, 1)
            std = sr.std(dim=0)
            rows[name] = {"mean_pixel_std": float(std.mean()), "p99_pixel_std": float(std.flatten().quantile(0.99)),
                          "finite": bool(torch.isfinite(sr).all())}
            print(name, rows[name], flush=True)
    result = {"model": model.id, "weights_sha256": model.weights_hash, "samples": args.samples, "crop": args.crop,
              "downscaler": "bicubic", "images": rows,
              "mean_pixel_std": sum(r["mean_pixel_std"] for r in rows.values()) / len(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"stochasticity_{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"mean per-pixel std across {args.samples} seeds: {result['mean_pixel_std']:.4f}")


if __name__ == "__main__":
    main()
