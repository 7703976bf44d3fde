"""Sample strips for the embedded model's card: LR | SR samples at a few heats | HR.

    python benchmark/model_card_samples.py [--model srflow-tiny-4x] [--out idard/weights/samples]

Each strip is a 128x128 centre crop of a held-out photograph, its bicubic 4x LR (shown
with nearest upsampling), three SR samples (seeds 0, 1, 2) per heat, and the HR crop.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from idard.measure.datasets import HELD_OUT, load_bundled
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.images import save_image, to_pixels, to_tensor
from idard.measure.models import MODELS


def strip(name: str, model_spec: str, heats: list[float], size: int = 128) -> np.ndarray:
    image = load_bundled(name)
    top, left = (image.height - size) // 2, (image.width - size) // 2
    hr = image.with_pixels(image.pixels[top : top + size, left : left + size].copy())
    lr = DOWNSCALERS.create("bicubic")(hr, 4)
    tiles = [np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)]
    for heat in heats:
        model = MODELS.create(model_spec, heat=heat)
        with torch.inference_mode():
            samples = model.sample(to_tensor(lr), [0, 1, 2])[0]
        tiles += [np.clip(np.nan_to_num(to_pixels(s)), 0, 1) for s in samples]
    tiles.append(hr.pixels)
    return np.concatenate(tiles, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="srflow-tiny-4x")
    parser.add_argument("--heats", type=float, nargs="+", default=[0.6, 0.9])
    parser.add_argument("--out", type=Path, default=Path("idard/weights/samples"))
    parser.add_argument("--smoke", action="store_true", help="seconds-long check that the script runs (tiny sizes, temp output)")
    args = parser.parse_args()
    size = 128
    if args.smoke:
        args.heats, size = [0.6], 32
        args.out = Path(tempfile.mkdtemp(prefix="idard-smoke-"))
    for name in HELD_OUT:
        path = save_image(args.out / f"{name}.png", strip(name, args.model, args.heats, size))
        print(path)


if __name__ == "__main__":
    main()
