"""What adaptive sampling saves: samples and time against the fixed K that reaches as much.

For each suite (the quickstart and a ladders suite by default) the suite is run twice, as
``idard-bench run`` runs it, in this process on one local Ray:

1. adaptive: its ``samples:`` replaced by a rule (``--rule``, per suite below);
2. fixed: ``samples: K*``, where K* is the K a fixed suite needs so that every group
   reaches what the adaptive run reached for its slowest group, i.e. the largest K at
   which a group stopped with its target met (groups stopped by their images limit or
   by max need no more at fixed K either, so they do not raise K*).

It reports records computed and the seconds the runner spent computing them (run.json),
Writes benchmark/results/adaptive_savings.json and .md.

    python benchmark/adaptive_savings.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
#: suite -> the adaptive rule it is run with
SUITES = {
    "quickstart.yaml": {"min": 2, "max": 8, "paired_halfwidth": 0.005},
    "ladders-before.yaml": {"min": 2, "max": 16, "ci_halfwidth": 0.004},
}


def _run(suite: Path, out: Path) -> dict:
    """``idard-bench run`` in this process (one local Ray for every run: its start-up is not
    what is compared); returns the run's ``run.json`` summary."""
    from rich.console import Console

    from idard.bench.run.jobs import run_suite
    from idard.bench.run.runner import RunOptions
    from idard.bench.suite import load_suite

    run_suite(load_suite(suite), out, RunOptions(workers=1), Console(quiet=True))
    return json.loads((out / "run.json").read_text())


def _variant(source: Path, folder: Path, name: str, samples, images: list[str] | None,
             override: dict | None = None) -> Path:
    data = yaml.safe_load(source.read_text())
    data.update(name=name, samples=samples, **(override or {}))
    data.pop("checks", None)
    if images is not None:
        data["images"] = images
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def measure(suite_file: str, rule: dict, work: Path, images: list[str] | None, override: dict | None = None) -> dict:
    source = ROOT / "benchmark" / suite_file
    stem = Path(suite_file).stem
    adaptive_suite = _variant(source, work, f"{stem}-adaptive", rule, images, override)
    adaptive = _run(adaptive_suite, work / f"{stem}-adaptive")
    groups = json.loads((work / f"{stem}-adaptive" / "adaptive.json").read_text())["groups"]
    met = [g["k"] for g in groups if g["decision"] in ("target met", "excludes 0")]
    k_fixed = max(met) if met else rule["max"]
    fixed = _run(_variant(source, work, f"{stem}-fixed", k_fixed, images, override), work / f"{stem}-fixed")
    decisions: dict[str, int] = {}
    for g in groups:
        decisions[g["decision"]] = decisions.get(g["decision"], 0) + 1
    own_k = yaml.safe_load(source.read_text()).get("samples", 8)
    return {"suite": suite_file, "rule": rule, "decisions": decisions, "k_fixed": k_fixed, "own_k": own_k,
            "own_records": fixed["computed"] // max(k_fixed, 1) * own_k,
            "adaptive": {"records": adaptive["computed"], "seconds": adaptive["seconds"]},
            "fixed": {"records": fixed["computed"], "seconds": fixed["seconds"]},
            "saved_records": 1 - adaptive["computed"] / max(fixed["computed"], 1),
            "saved_seconds": 1 - adaptive["seconds"] / max(fixed["seconds"], 1e-9)}


def markdown(rows: list[dict]) -> str:
    lines = ["# Adaptive sampling vs fixed K (this machine, 2 CPU cores, no other job running, one worker, one warm Ray for all runs)", "",
             "K* is the fixed K that gives every group the samples at which the adaptive rule's slowest "
             "group met its target. Seconds: the runner's time computing records (run.json).", "",
             "| suite | rule | stops | K* | adaptive records | fixed K* records | saved | adaptive s | fixed K* s | saved "
             "| suite's own K: records |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rule = ", ".join(f"{k}: {v}" for k, v in r["rule"].items())
        stops = ", ".join(f"{k}: {v}" for k, v in sorted(r["decisions"].items()))
        lines.append(f"| {r['suite']} | {rule} | {stops} | {r['k_fixed']} | {r['adaptive']['records']} | "
                     f"{r['fixed']['records']} | {r['saved_records']:.0%} | {r['adaptive']['seconds']:.0f} | "
                     f"{r['fixed']['seconds']:.0f} | {r['saved_seconds']:.0%} | K={r.get('own_k')}: "
                     f"{r.get('own_records')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true",
                        help="two 32-px crops, the quickstart with a stand-in model (latency), a temporary folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="adaptive-savings-"))
    suites, images, override = dict(SUITES), None, None
    if args.smoke:
        sys.path.insert(0, str(ROOT))
        from tests.bench.conftest import write_crops

        write_crops(work / "images", 2, size=32)
        suites, images, args.out = {"quickstart.yaml": {"min": 1, "max": 2, "paired_halfwidth": 0.005}}, \
            [str(work / "images")], work / "results"
        override = {"models": ["latency(ms=1)"], "metrics": ["psnr"]}
    import ray

    # Ray is started once, before anything is timed: both runs then pay the same (actor starts, model loads)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    rows = []
    for suite_file, rule in suites.items():
        rows.append(measure(suite_file, rule, work, images, override))
        r = rows[-1]
        print(f"{suite_file}: adaptive {r['adaptive']['records']} records in {r['adaptive']['seconds']:.0f} s, "
              f"fixed K={r['k_fixed']} {r['fixed']['records']} in {r['fixed']['seconds']:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive_savings.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    (args.out / "adaptive_savings.md").write_text(markdown(rows))
    print(f"wrote {args.out / 'adaptive_savings.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
