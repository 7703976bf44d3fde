"""Diffusion sampling speed: samples per second against batch size, batched vs one at a time.

Two parts, written to ``benchmark/results/diffusion_batch.json``:

* ``embedded``: ``resshift-tiny-4x`` on a held-out photograph crop (CPU by default):
  for each batch size B, B seeds of one LR image in one `sample` call, against the same
  B seeds one call each (the authors' scripts draw one sample per call).
* ``published``: ResShift's published 4-step configuration (Swin-UNet + VQGAN-f4,
  *random* weights: timing needs no checkpoint) at ``--lr-size`` (256 -> 1024 by default),
  meant for a GPU (``--device cuda``). Skipped with ``--skip-published``.

    python benchmark/diffusion_batch.py [--device cpu] [--size 256] [--batches 1,2,4,8]
        [--lr-size 256] [--published-batches 1,2,4,8] [--skip-published] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from idard.measure.datasets import load_bundled
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.images import RGBImage, to_tensor
from idard.measure.models import MODELS
from idard.measure.models.diffusion.sampler import sample_residual_shift
from idard.measure.models.diffusion.schedule import RESSHIFT_V3
from idard.measure.models.diffusion.swin_unet import REALSR_X4, SwinUNet, SwinUNetConfig
from idard.measure.models.diffusion.vqgan import VQ_F4, VQGAN, VQGANConfig

#: A reduced published layout, for the smoke test only.
SMALL = (SwinUNetConfig(image_size=16, model_channels=32, attention_resolutions=(16, 8), channel_mult=(1, 2),
                        num_res_blocks=(1, 1), num_head_channels=16, swin_embed_dim=32, window_size=4, lq_size=16),
         VQGANConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, n_embed=64))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def embedded(device: str, size: int, batches: list[int], repeats: int) -> list[dict]:
    photo = load_bundled("astronaut")
    top, left = (photo.height - size) // 2, (photo.width - size) // 2
    hr = RGBImage(name="crop", pixels=photo.pixels[top : top + size, left : left + size].copy(), bit_depth=8)
    lr = to_tensor(DOWNSCALERS.create("bicubic")(hr, 4), device)
    model = MODELS.create("resshift-tiny-4x").to(device)
    rows = []
    with torch.inference_mode():
        for b in batches:
            seeds = list(range(b))
            together = _timed(lambda: model.sample(lr, seeds), device, repeats)
            alone = _timed(lambda: [model.sample(lr, [s]) for s in seeds], device, repeats)
            rows.append({"batch": b, "batched_samples_per_s": b / together, "one_at_a_time_samples_per_s": b / alone,
                         "speedup": alone / together})
            print(f"embedded  B={b:3d}  batched {b / together:8.2f}/s  one-at-a-time {b / alone:8.2f}/s  "
                  f"speed-up {alone / together:.2f}x", flush=True)
    return rows


def published(device: str, lr_size: int, batches: list[int], repeats: int, small: bool) -> list[dict]:
    unet_cfg, vq_cfg = SMALL if small else (REALSR_X4, VQ_F4)
    torch.manual_seed(0)
    unet, vq = SwinUNet(unet_cfg).to(device).eval(), VQGAN(vq_cfg).to(device).eval()
    lr = torch.rand(1, 3, lr_size, lr_size, device=device)
    rows = []
    with torch.inference_mode():
        for b in batches:
            seeds = list(range(b))
            run = lambda: sample_residual_shift(unet, RESSHIFT_V3, lr, seeds, 4, space=vq,  # noqa: E731
                                                multiple=unet.multiple, max_batch=b)
            seconds = _timed(run, device, repeats)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
            rows.append({"batch": b, "samples_per_s": b / seconds, "seconds_per_call": seconds, "peak_gib": peak})
            print(f"published B={b:3d}  {b / seconds:8.3f} samples/s  ({seconds:.2f} s per call)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256, help="HR crop side for the embedded model")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--lr-size", type=int, default=256, help="LR side for the published model")
    parser.add_argument("--published-batches", default="1,2,4,8")
    parser.add_argument("--skip-published", action="store_true")
    parser.add_argument("--small-published", action="store_true", help="a reduced layout (smoke test)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diffusion_batch.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "embedded": {"model": "resshift-tiny-4x", "hr_size": args.size,
                     "rows": embedded(args.device, args.size, [int(b) for b in args.batches.split(",")], args.repeats)},
    }
    if not args.skip_published:
        result["published"] = {"config": "small" if args.small_published else "resshift_realsrx4_s4_v3 (random weights)",
                               "lr_size": args.lr_size,
                               "rows": published(args.device, args.lr_size, [int(b) for b in args.published_batches.split(",")],
                                                 args.repeats, args.small_published)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
