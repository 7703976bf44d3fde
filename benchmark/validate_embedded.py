"""The paper's validation of IDA-RD, run with the embedded model on the held-out photos.

For each synthetic family (supplement Table 9, degradation after bicubic downscaling)
IDA-RD must grow with degradation strength, so the Spearman correlation between the
parameter and IDA-RD is +1 (blur sigma, noise sigma, contrast increase) or -1 (contrast
decrease factor, quantisation levels); and nearest must lose more than bicubic and
bilinear. Writes ``benchmark/results/validation.{md,json}`` and the records as Parquet.

    python benchmark/validate_embedded.py [--samples 8] [--model srflow-tiny-4x] [--name validation]

Any registered model can be validated (``--model resshift-tiny-4x``); its files are named
``<name>.{md,json}`` and ``<name>_records.parquet`` (default ``validation`` for the
embedded SRFlow, ``validation_<model>`` otherwise).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


from idard.measure.datasets import HELD_OUT, held_out_paths, load_bundled
from idard.measure.evaluate import evaluate
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.ladders import PAPER_LADDERS
from idard.measure.statistics import ida_rd_table

CLASSIC = ["bicubic", "bilinear", "nearest", "lanczos", "box"]


def _centre(image, size: int):
    top, left = (image.height - size) // 2, (image.width - size) // 2
    return image.with_pixels(image.pixels[top : top + size, left : left + size].copy())


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--model", default="srflow-tiny-4x")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default=None, help="output file stem (default: see above)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long check that the script runs (tiny sizes, temp output)")
    args = parser.parse_args()
    name = args.name or ("validation" if args.model == "srflow-tiny-4x" else f"validation_{args.model}")
    images = held_out_paths()
    if args.smoke:  # one 32 px centre crop, one sample: the pipeline and the checks run, the numbers mean nothing
        args.samples, args.out = 1, Path(tempfile.mkdtemp(prefix="idard-smoke-"))
        images = [_centre(load_bundled(HELD_OUT[0]), 32)]

    downscalers = CLASSIC + [spec for ladder in PAPER_LADDERS for spec in ladder.specs()]
    started = time.perf_counter()
    records = evaluate(images, downscalers, args.model, samples=args.samples,
                       on_image=lambda name, rows: print(f"{name}: {len(rows)} records", flush=True))
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    records.write_parquet(args.out / f"{name}_records.parquet")
    table = ida_rd_table(records)
    by_id = {row["downscaler"]: row for row in table.iter_rows(named=True)}

    lines = [f"# IDA-RD validation: {args.model}, {records['image'].n_unique()} held-out photos, "
             f"K = {args.samples}, LPIPS-alex, x4", "",
             "| downscaler | IDA-RD | ± (std over images) | 95% CI | non-finite |", "|---|---|---|---|---|"]
    for spec in downscalers:
        ds_id = DOWNSCALERS.create(spec).id
        row = by_id[ds_id]
        lines.append(f"| {ds_id} | {_num(row['ida_rd'])} | {_num(row['std_images'])} | "
                     f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}] | {row['n_nonfinite']} |")
    lines += ["", "| family | parameters | Spearman | expected |", "|---|---|---|---|"]
    nearest, bicubic, bilinear = (by_id[d]["ida_rd"] for d in ("nearest", "bicubic", "bilinear"))
    n_images = records["image"].n_unique()
    checks = {
        "every downscaler has a mean on every image": all(row["n_images"] == n_images for row in by_id.values()),
        "nearest_above_bicubic_and_bilinear": None not in (nearest, bicubic, bilinear) and nearest > max(bicubic, bilinear),
    }
    spearmans = {}
    for ladder in PAPER_LADDERS:
        rho = ladder.spearman(table)
        spearmans[ladder.family] = rho
        checks[f"spearman {ladder.family}"] = rho == ladder.sign
        lines.append(f"| {ladder.family} | {', '.join(map(str, ladder.parameters))} | {rho:+.3f} | {ladder.sign:+d} |")
    lines += ["", f"Checks: {json.dumps(checks)}", f"Wall time: {seconds:.0f} s"]

    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{name}.json").write_text(json.dumps({"checks": checks, "spearman": spearmans, "seconds": seconds,
                                                          "table": table.to_dicts()}, indent=2, default=str) + "\n")
    print("\n".join(lines))
    if not all(checks.values()) and not args.smoke:
        raise SystemExit("validation failed: " + ", ".join(k for k, ok in checks.items() if not ok))


if __name__ == "__main__":
    main()
