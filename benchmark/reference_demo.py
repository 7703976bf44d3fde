"""Reproduce the IDA-RD reference notebook's one-image demo (``reference-demo.yaml``).

The notebook (Byronliang8/IDA-RD, ``SRFlow/code/IDA_RD_SRFlow.ipynb``) scores DIV2K 0898
at 4x with 5 SRFlow_DF2K_4X samples at heat 1.1 per downscaler and printed mean LPIPS
bicubic 0.0703, bilinear 0.0443, nearest 0.7298. Its samples came from the global RNG,
so the same numbers are not expected to four decimals; the order and the size of the gaps
are. This script:

1. finds the image (``--images``: the ``ida-rd-testing-images`` folder of the reference
   repository);
2. checks that idard's LR images are bit-exact with the reference's ``lr_image/*_256``
   (needs no weights, so it runs whenever the images are there);
3. when the weights are found (by name in the weights cache), evaluates the suite and
   prints idard's means beside the notebook's, writing ``benchmark/results/reference_demo.json``.

    python benchmark/reference_demo.py --images ../shared/reference/ida-rd-testing-images

Exit status: 0 everything ran (and the LR images are bit-exact); 1 an LR image differs from
the reference's; `EXIT_NO_IMAGES` the images are absent (nothing ran); `EXIT_SR_SKIPPED`
the LR check ran and passed but the SR part could not run (weights absent). A caller that
needs the whole demo treats anything but 0 as "not reproduced".

``--model`` and ``--crop`` exist for the smoke test (embedded model, a small crop).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SUITE = HERE / "reference-demo.yaml"
NOTEBOOK = {"bicubic": 0.0703, "bilinear": 0.0443, "nearest": 0.7298}
REFERENCE_LR = {"bicubic": "BICUBIC_256", "bilinear": "BILINEAR_256", "nearest": "NEAREST_256"}
SCALE = 4  # the demo's: 1024-px HR, 256-px LR


#: The images are absent: neither the LR check nor the SR part ran.
EXIT_NO_IMAGES = 3
#: The LR check ran and passed; the SR part could not run (its weights are absent).
EXIT_SR_SKIPPED = 4


def skip(reason: str, status: int) -> int:
    print(f"reference demo: {reason}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=HERE / "reference-images",
                        help="the reference repository's testing_images folder (ori_image/, lr_image/)")
    parser.add_argument("--model", help="another model spec than the suite's (smoke test)")
    parser.add_argument("--crop", type=int, default=0, help="centre-crop the HR image to this side (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reference_demo.json")
    args = parser.parse_args(argv)

    import yaml

    from idard.bench.suite import parse_suite
    from idard.measure.evaluate import evaluate
    from idard.measure.images import RGBImage, load_image
    from idard.measure.models import MODELS
    from idard.measure.statistics import ida_rd_table
    from idard.measure.weights import WeightsNotFound

    hr_path = args.images / "ori_image" / "0898.png"
    if not hr_path.is_file():
        return skip(f"nothing ran: {hr_path} not found (the reference's testing_images; pass --images)",
                    EXIT_NO_IMAGES)
    data = yaml.safe_load(SUITE.read_text())
    data["images"] = [str(hr_path)]
    if args.model:
        data["models"] = [args.model]

    hr = load_image(hr_path)
    if args.crop:
        top = (hr.height - args.crop) // 2
        hr = RGBImage(hr.name, np.ascontiguousarray(hr.pixels[top : top + args.crop, top : top + args.crop]))
    lr_check = _compare_lr(hr, args.images, data["downscalers"]) if not args.crop else {}
    _print_lr_check(lr_check, args.crop)
    if not all(lr_check.values()):
        return 1

    try:
        model = MODELS.create(data["models"][0])
        if hasattr(model, "weight_files"):
            model.weight_files()  # raises when a file is absent
    except (WeightsNotFound, FileNotFoundError, ValueError) as exc:
        return skip(f"SR part not run: the published weights are absent ({exc}); "
                    "`idard-bench weights fetch SRFlow_DF2K_4X`, or place SRFlow_DF2K_4X.pth in the weights cache",
                    EXIT_SR_SKIPPED)
    suite = parse_suite(data, str(SUITE), HERE)

    records = evaluate([hr], list(suite.downscalers), model, seeds=list(suite.seeds), metrics=list(suite.metrics),
                       max_batch=suite.max_batch)
    table = ida_rd_table(records)
    means = {row["downscaler"]: row["ida_rd"] for row in table.iter_rows(named=True)}
    print(f"{'downscaler':<10} {'idard':>8} {'notebook':>9}  ({model.id}, K = {suite.samples})")
    for name in suite.downscalers:
        print(f"{name:<10} {means.get(name, float('nan')):>8.4f} {NOTEBOOK[name]:>9.4f}")
    result = {"model": model.id, "weights_sha256": model.weights_hash, "seeds": list(suite.seeds),
              "crop": args.crop, "idard": means, "notebook": NOTEBOOK, "lr_bit_exact": lr_check,
              "non_finite": int((~records["finite"]).sum())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _print_lr_check(lr_check: dict[str, bool], crop: int) -> None:
    if crop:
        print("LR check: not run (the HR image is cropped)")
    elif not lr_check:
        print("LR check: no reference LR files under lr_image/*_256/0898.png")
    for name, same in lr_check.items():
        print(f"LR check: {name} {'bit-exact with' if same else 'DIFFERS from'} lr_image/{REFERENCE_LR[name]}/0898.png")


def _compare_lr(hr, images: Path, downscalers) -> dict[str, bool]:
    """Is idard's 256px LR of 0898 the reference's file, pixel for pixel?"""
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.images import load_image, to_uint8

    out = {}
    for name in downscalers:
        ref = images / "lr_image" / REFERENCE_LR[name] / "0898.png"
        if ref.is_file():
            ours = to_uint8(DOWNSCALERS.create(name)(hr, SCALE))
            out[name] = bool(np.array_equal(ours, to_uint8(load_image(ref).pixels)))
    return out


if __name__ == "__main__":
    sys.exit(main())
