"""Full-reference comparison of downscalers against "camera" images (supplement Table 4).

The paper validates its no-reference ranking on RealSR, whose scenes were photographed
twice, at a long and a short focal length: the short-focal-length photo is what a camera
makes of the scene at the lower resolution, a "ground truth" for downscaling. Table 4
scores each downscaler's output of the HR photo against that camera LR photo (SSIM, PSNR,
LPIPS) and finds the same ranking as IDA-RD.

A suite with ``reference:`` does that: for every HR image, scale and downscaler, the 8-bit
downscaled image is scored against the reference image of the same name (same key: the
path under its source without the suffix), which must have the LR's size. No SR model runs,
so the records carry the pseudo-model ``reference-x<scale>`` and seed 0, and everything
downstream (record store, incremental re-runs, ``report``, checks, the HTML report) works
unchanged. It is cheap (one downscale and one metric call per record), so it runs in the
driver process, without Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from idard.bench.store.records import RecordStore
from idard.bench.suite.reference import PREFIX, reference_scale


def reference_rows(hr: Any, reference: Any | None, missing: str, downscalers: Sequence[Any],
                   metrics: Sequence[Any], model: str) -> list[dict[str, Any]]:
    """The records of one HR image at one scale: each downscaler's 8-bit LR vs the reference.

    ``reference`` is None when there is none (``missing`` says why): every record is then an
    error record, as an unreadable image would be.
    """
    import torch

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import crop_to_multiple, quantize_8bit, to_tensor

    scale = reference_scale(model)

    def row(downscaler: str, metric: str, **fields: Any) -> dict[str, Any]:
        return _row(hr.name, downscaler, model, metric, **fields)

    cropped = crop_to_multiple(hr, scale)
    rows = []
    for downscaler in downscalers:
        try:
            if reference is None:
                raise ValueError(missing)
            lr = quantize_8bit(downscaler(cropped, scale))
            if lr.shape != reference.pixels.shape:
                raise ValueError(f"reference {reference.name} is {reference.width}x{reference.height} but the "
                                 f"x{scale} LR of {hr.name} is {lr.shape[1]}x{lr.shape[0]}")
            ref, dist = to_tensor(reference.pixels), to_tensor(lr)
        except Exception as exc:  # noqa: BLE001 - a failure is a record, never a crash
            rows += [row(downscaler.id, m.id, error=f"{type(exc).__name__}: {exc}") for m in metrics]
            continue
        for metric in metrics:
            try:
                with torch.inference_mode():
                    value = float(metric(ref, dist)[0])
                rows.append(row(downscaler.id, metric.id, value=value, finite=bool(torch.isfinite(torch.tensor(value)))))
            except Exception as exc:  # noqa: BLE001
                rows.append(row(downscaler.id, metric.id, error=f"{type(exc).__name__}: {exc}"))
    return rows


def run_reference_suite(suite: Any, out: str | Path, console: Console):
    """Compute the records ``out`` lacks of a reference suite; returns a `RunSummary`."""
    import json
    import time


    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.run.jobs import RunSummary, failing_images, suite_records, write_suite_copy
    from idard.bench.run.plan import Plan
    from idard.bench.suite.scope import SuiteKeys, write_suite_keys
    from idard.bench.suite.sources import list_images
    from idard.measure.distortions import DISTORTIONS
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.evaluate import records_frame
    from idard.measure.images import decode_image
    from idard.measure.records import KEY_COLUMNS

    store = RecordStore(out)
    base = Path(suite.base_dir)
    images = list_images(list(suite.images), base)
    references = {ref.name: ref for ref in list_images(list(suite.reference), base)}
    write_suite_copy(store, suite, console)  # loadable, and never over the user's suite.yaml
    write_suite_keys(store, SuiteKeys.of(suite, [ref.name for ref in images]))  # what `report` reduces
    held = store.scan().select(KEY_COLUMNS).collect()
    held_keys = set(held.iter_rows())
    downscalers = [DOWNSCALERS.create(d) for d in suite.downscalers]
    metrics = [DISTORTIONS.create(m) for m in suite.metrics]
    total = len(images) * len(downscalers) * len(suite.models) * len(metrics)
    started, computed = time.perf_counter(), 0
    for image_ref in images:
        todo = [(m, d) for m in suite.models for d in downscalers
                if any((image_ref.name, d.id, m, metric.id, 0) not in held_keys for metric in metrics)]
        if not todo:
            continue
        reference, missing = None, ""
        try:
            hr = decode_image(image_ref.read(), name=image_ref.name, source=image_ref.location)
        except Exception as exc:  # noqa: BLE001
            hr, missing = None, f"{image_ref.location}: cannot read ({exc})"
        match = references.get(image_ref.name)
        if match is None:
            missing = missing or f"no reference image with the key {image_ref.name!r} in {', '.join(suite.reference)}"
        elif hr is not None:
            try:
                reference = decode_image(match.read(), name=match.name, source=match.location)
            except Exception as exc:  # noqa: BLE001
                missing = f"{match.location}: cannot read reference ({exc})"
        rows: list[dict[str, Any]] = []
        for model in sorted({m for m, _ in todo}):
            chosen = [d for m, d in todo if m == model]
            if hr is None:
                rows += [_row(image_ref.name, d.id, model, metric.id, error=missing) for d in chosen for metric in metrics]
            else:
                rows += reference_rows(hr, reference, missing, chosen, metrics, model)
        rows = [r for r in rows if (r["image"], r["downscaler"], r["model"], r["metric"], r["seed"]) not in held_keys]
        store.append(records_frame(rows), suite_hash=suite.digest())
        computed += len(rows)
        console.print(f"{image_ref.name}: {len(rows)} full-reference records", highlight=False)
    seconds = time.perf_counter() - started
    if not computed:
        console.print(f"nothing to compute: all {total} records of suite {suite.name!r} are in {store.run_dir}",
                      highlight=False)
    records = suite_records(store, suite, [ref.name for ref in images])
    failing = failing_images(records)  # every image with error records, as a model run lists them
    store.write_text("run.json", json.dumps({"suite": suite.name, "suite_hash": suite.digest(), "kind": "reference",
                                             "total_tasks": total, "computed": computed,
                                             "seconds": round(seconds, 2), "failing_images": failing},
                                            indent=2, default=str) + "\n")
    plan = Plan(suite=suite, images=images, units=[], total_tasks=total, done_tasks=total - computed)
    return RunSummary(plan, None, records, failing)


def _row(image: str, downscaler: str, model: str, metric: str, **fields: Any) -> dict[str, Any]:
    """A record of the full-reference comparison (failed until ``fields`` say otherwise)."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard import __version__
    from idard.measure.records import RECORD_SCHEMA

    row: dict[str, Any] = dict.fromkeys(RECORD_SCHEMA)
    row.update(image=image, downscaler=downscaler, model=model, metric=metric, seed=0, scale=reference_scale(model),
               finite=False, value=float("nan"), device="cpu", code_version=__version__)
    return row | fields


def is_reference_table(table: pl.DataFrame) -> bool:
    """Whether a reduced table comes from a full-reference suite (its models are pseudo-models)."""
    return table.height > 0 and all(str(m).startswith(PREFIX) for m in table["model"].unique().to_list())
