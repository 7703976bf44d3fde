"""Do the fast CIs agree with the exact two-level bootstrap within its own Monte-Carlo error?

`idard.measure.statistics` gives a group whose exact bootstrap would draw more than
``EXACT_DRAWS`` sample positions the fast form (image draws shared by image set, the
within-image term drawn from its exact conditional mean and variance as a normal). This
script computes the CIs of the same records both ways, each with ``--repeats`` different
bootstrap seeds, for the IDA-RD table and the paired differences, and reports per CI
endpoint:

* the exact method's Monte-Carlo error: the std of the endpoint over its seeds (how much
  an endpoint moves when nothing but the bootstrap seed changes);
* the difference between the fast and exact endpoints (means over seeds), in units of
  that Monte-Carlo error. ``|z| < 1`` means switching methods moves an endpoint less than
  re-running the exact method with another seed does.

Data: synthetic records in the layout of benchmark/report_scale.py (per image a
difficulty, per downscaler a shift, SR noise shared by seed, a few failed samples), and,
with ``--run RUN_DIR``, the records of a real run (e.g. ``idard-bench run`` on the
quickstart suite). Writes ``benchmark/results/ci_agreement.json`` and ``.md``.

    python benchmark/ci_agreement.py [--run runs/quickstart] [--repeats 20] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from idard.bench.report.reduce import REPORT_KEYS, scan_records
from idard.measure import statistics

RESULTS = Path(__file__).parent / "results"


def synthetic(n_images: int, n_seeds: int, downscalers: int, seed: int = 0) -> pl.DataFrame:
    """Records shaped like report_scale.py's: difficulty + shift + shared SR noise + own noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.1, 0.6, n_images)
    shared = rng.normal(0.0, 0.02, (n_images, 1, n_seeds))
    shifts = np.concatenate(([0.0], rng.uniform(0.0, 0.2, downscalers - 1)))
    own = rng.gamma(2.0, 0.01, (n_images, downscalers, n_seeds))  # skewed within-image noise
    value = (difficulty[:, None, None] + shifts[None, :, None] + shared + own).ravel()
    finite = rng.random(value.size) >= 1e-3
    names = ["bicubic", *(f"blur(sigma={i})" for i in range(1, downscalers))]
    return pl.DataFrame({
        "image": np.repeat([f"img{i:05d}" for i in range(n_images)], downscalers * n_seeds),
        "downscaler": np.tile(np.repeat(names, n_seeds), n_images),
        "model": "m", "metric": "lpips-alex", "scale": np.int64(4),
        "seed": np.tile(np.arange(n_seeds, dtype=np.int64), n_images * downscalers),
        "value": np.where(finite, value, np.nan), "finite": finite,
    })


def quickstart_crops(crop: int, samples: int) -> pl.DataFrame:
    """Real records: the quickstart suite's downscalers, model and metric (evaluate(), no
    Ray) on ``crop`` x ``crop`` centre crops of its four held-out photographs."""
    import yaml

    from idard.measure.datasets import HELD_OUT, load_bundled
    from idard.measure.evaluate import evaluate

    suite = yaml.safe_load((Path(__file__).parent / "quickstart.yaml").read_text())
    images = []
    for name in HELD_OUT:
        image = load_bundled(name)
        top, left = (image.height - crop) // 2, (image.width - crop) // 2
        images.append(image.with_pixels(image.pixels[top : top + crop, left : left + crop]))
    return evaluate(images, suite["downscalers"], suite["models"][0], samples=samples, metrics=suite["metrics"])


def _cis(records: pl.DataFrame, baseline: str, n_boot: int, seed: int, exact: bool) -> pl.DataFrame:
    """Both tables' CI endpoints, one row per (table, group), by one method."""
    saved = statistics.EXACT_DRAWS
    statistics.EXACT_DRAWS = 2**62 if exact else 0
    try:
        keys = [k for k in REPORT_KEYS if k in records.columns]
        table, paired = statistics.report_tables(records, baseline, by=keys, n_boot=n_boot, seed=seed)
    finally:
        statistics.EXACT_DRAWS = saved
    label = pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator=", ")
    return pl.concat([
        table.select(table=pl.lit("ida_rd"), group=label, ci_low="ci_low", ci_high="ci_high"),
        paired.select(table=pl.lit(f"minus {baseline}"), group=label, ci_low="ci_low", ci_high="ci_high"),
    ])


def agreement(records: pl.DataFrame, baseline: str, n_boot: int, repeats: int) -> pl.DataFrame:
    """Per group and endpoint: exact mean and MC std over seeds, fast mean, and z."""
    runs = []
    for method in ("exact", "fast"):
        for rep in range(repeats):
            runs.append(_cis(records, baseline, n_boot, 1000 + rep, method == "exact").with_columns(
                method=pl.lit(method)))
    long = pl.concat(runs).unpivot(index=["table", "group", "method"], on=["ci_low", "ci_high"],
                                   variable_name="endpoint")
    stats = long.group_by("table", "group", "endpoint", "method").agg(
        mean=pl.col("value").mean(), std=pl.col("value").std())
    exact = stats.filter(pl.col("method") == "exact").select("table", "group", "endpoint",
                                                              exact_mean="mean", exact_mc_std="std")
    fast = stats.filter(pl.col("method") == "fast").select("table", "group", "endpoint", fast_mean="mean",
                                                            fast_mc_std="std")
    return exact.join(fast, on=["table", "group", "endpoint"]).with_columns(
        z=(pl.col("fast_mean") - pl.col("exact_mean")) / pl.col("exact_mc_std"),
    ).sort("table", "group", "endpoint")


def _markdown(results: dict) -> str:
    lines = ["# Fast CIs against the exact two-level bootstrap", "",
             "Written by `benchmark/ci_agreement.py`. z = (fast endpoint - exact endpoint) / the exact",
             "endpoint's Monte-Carlo std, both averaged over the bootstrap seeds; |z| < 1: switching",
             "methods moves an endpoint less than re-running the exact method with another seed.", ""]
    for name, data in results["datasets"].items():
        lines += [f"## {name}", "", data["shape"], "",
                  "| table | group | endpoint | exact | exact MC std | fast | z |", "|---|---|---|---|---|---|---|"]
        for row in data["rows"]:
            lines.append(f"| {row['table']} | {row['group']} | {row['endpoint']} | {row['exact_mean']:.5f} | "
                         f"{row['exact_mc_std']:.1e} | {row['fast_mean']:.5f} | {row['z']:+.2f} |")
        lines += ["", f"max |z| = {data['max_abs_z']:.2f} over {len(data['rows'])} endpoints", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="a run directory whose records to test too")
    parser.add_argument("--baseline", default="bicubic")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--downscalers", type=int, default=3)
    parser.add_argument("--quickstart-crop", type=int, default=96,
                        help="also test real records: quickstart on centre crops of this size (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ci_agreement.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, results to a temp file")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.n_boot, args.images, args.seeds, args.downscalers = 3, 100, 12, 4, 2
        args.quickstart_crop = 0
        args.out = Path(tempfile.mkdtemp(prefix="idard-ci-smoke-")) / "ci_agreement.json"

    datasets = {f"synthetic ({n} images x {args.downscalers} downscalers x {k} seeds)": synthetic(n, k, args.downscalers)
                for n, k in ((args.images, args.seeds), (max(2, args.images // 10), max(2, args.seeds // 2)))}
    if args.quickstart_crop:
        datasets[f"quickstart suite on {args.quickstart_crop}px centre crops (evaluate())"] = quickstart_crops(
            args.quickstart_crop, 8)
    if args.run is not None:
        columns = [*REPORT_KEYS, "image", "seed", "value", "finite", "converged"]
        datasets[f"records of {args.run}"] = scan_records(args.run).select(columns).collect()
    results: dict = {"repeats": args.repeats, "n_boot": args.n_boot, "datasets": {}}
    for name, records in datasets.items():
        started = time.perf_counter()
        table = agreement(records, args.baseline, args.n_boot, args.repeats)
        rows = table.to_dicts()
        results["datasets"][name] = {
            "shape": f"{records.height} records, {records['image'].n_unique()} images, "
                     f"{records['downscaler'].n_unique()} downscalers, {records['seed'].n_unique()} seeds",
            "rows": rows, "max_abs_z": float(table["z"].abs().max()), "seconds": time.perf_counter() - started,
        }
        print(f"{name}: max |z| = {results['datasets'][name]['max_abs_z']:.2f}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(results))
    print(_markdown(results))


if __name__ == "__main__":
    main()
