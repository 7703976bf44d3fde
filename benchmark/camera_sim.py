"""Simulated "camera" LR images for the offline full-reference suite (camera-reference.yaml).

RealSR (the paper's Table 4) photographs each scene at two focal lengths; its short-focal
photo is what a camera makes of the scene at the lower resolution. Offline there is no such
pair, so this script makes a stand-in from the held-out bundled photographs: a camera's
optics blur (a Gaussian point-spread function, ``psf`` LR pixels wide), its sensor pixels
integrate light over their area (a box over ``scale`` x ``scale`` HR pixels) and add read
noise (``noise``, seeded per image), then it stores 8 bits. It is a model of a camera, so
the ranking it gives reflects that model (a box-like downscaler matches it best): the
offline suite exercises the full-reference pipeline, it does not reproduce Table 4.

    python benchmark/camera_sim.py [--out benchmark/camera-sim] [--scale 4]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from idard.measure.datasets import held_out_paths
from idard.measure.images import crop_to_multiple, load_image, to_uint8


def camera_lr(pixels: np.ndarray, scale: int, psf: float, noise: float, seed: int) -> np.ndarray:
    """Optics (Gaussian PSF, ``psf`` in LR pixels), area sampling, read noise; float in [0, 1]."""
    blurred = ndimage.gaussian_filter(pixels, sigma=(psf * scale, psf * scale, 0), mode="reflect")
    h, w = pixels.shape[0] // scale, pixels.shape[1] // scale
    binned = blurred[: h * scale, : w * scale].reshape(h, scale, w, scale, 3).mean(axis=(1, 3))
    rng = np.random.default_rng(seed)
    return np.clip(binned + rng.normal(0.0, noise, size=binned.shape), 0.0, 1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "camera-sim")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--psf", type=float, default=0.5, help="optical blur sigma in LR pixels")
    parser.add_argument("--noise", type=float, default=0.01, help="read noise sigma ([0, 1] units)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = held_out_paths()[: args.limit or None]
    for path in paths:
        hr = crop_to_multiple(load_image(path), args.scale)
        seed = int.from_bytes(hashlib.sha256(hr.name.encode()).digest()[:4], "little")
        lr = camera_lr(hr.pixels, args.scale, args.psf, args.noise, seed)
        target = args.out / f"{hr.name}.png"
        Image.fromarray(to_uint8(lr.astype(np.float32))).save(target)
        print(f"{path.name} -> {target} ({lr.shape[1]}x{lr.shape[0]})")


if __name__ == "__main__":
    main()
