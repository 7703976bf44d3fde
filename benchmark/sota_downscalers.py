"""Runtime per megapixel of the state-of-the-art downscalers (dpid, perceptual, l0), bicubic as a yardstick.

The HR image is scikit-image's astronaut (public domain, ships in the scikit-image wheel),
mirror-tiled to ``--size`` x ``--size`` pixels (default 1024: 1.05 MP). Each method runs
at each scale ``--repeats`` times through the registered plug-in (the path a suite takes);
the best time is kept, since on a shared machine the slower runs measure the neighbours.
Seconds per megapixel are per HR megapixel. The load average before and after is written
next to the numbers, because the machine it ran on may be shared.

Writes ``benchmark/results/sota_downscalers.json``.

    python benchmark/sota_downscalers.py [--size 1024] [--repeats 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from skimage import data

from idard.measure.downscalers import DOWNSCALERS
from idard.measure.images import RGBImage

RESULTS = Path(__file__).parent / "results"
METHODS = ["bicubic", "dpid", "perceptual", "l0"]


def photo(size: int) -> RGBImage:
    """The astronaut, mirror-tiled (no seams) and cropped to size x size."""
    tile = data.astronaut().astype(np.float32) / 255
    reps = -(-size // tile.shape[0])
    row = np.concatenate([tile if i % 2 == 0 else tile[:, ::-1] for i in range(reps)], axis=1)
    grid = np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(reps)], axis=0)
    return RGBImage("astronaut", np.ascontiguousarray(grid[:size, :size]))


def time_method(name: str, image: RGBImage, scale: int, repeats: int) -> float:
    downscaler = DOWNSCALERS.create(name)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        downscaler(image, scale)
        times.append(time.perf_counter() - started)
    return min(times)


def run(size: int, repeats: int, scales: list[int]) -> dict:
    image = photo(size)
    megapixels = image.width * image.height / 1e6
    load_before = os.getloadavg()
    rows = []
    for name in METHODS:
        for scale in scales:
            seconds = time_method(name, image, scale, repeats)
            rows.append({"method": DOWNSCALERS.create(name).id, "scale": scale, "seconds": round(seconds, 4),
                         "seconds_per_megapixel": round(seconds / megapixels, 4)})
    return {
        "image": f"skimage astronaut mirror-tiled to {size}x{size}",
        "megapixels": round(megapixels, 4),
        "repeats": repeats,
        "timing": "best of repeats, plug-in call incl. range check",
        "cpus_available": len(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="HR side in pixels (a multiple of 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--out", type=Path, default=RESULTS / "sota_downscalers.json")
    args = parser.parse_args()
    if any(args.size % s for s in args.scales):
        parser.error(f"--size {args.size} must be a multiple of every scale {args.scales}")
    result = run(args.size, args.repeats, args.scales)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["results"]:
        print(f"{row['method']:>12} x{row['scale']}: {row['seconds']:8.3f} s  {row['seconds_per_megapixel']:8.3f} s/MP")
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")


if __name__ == "__main__":
    main()
