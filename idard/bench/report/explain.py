"""``idard-bench explain RUN --image I --downscaler D --seed K``: one record, recomputed by hand.

A record is a number; to trust it one must be able to see what it measured and compute it
again. This recomputes one (image, downscaler, model, seed) on the worker's path
(`idard.bench.report.samples.RunSamples`), writes the HR, LR, SR and difference images as
PNGs and prints the recomputed and stored value of every metric side by side. The PNGs are
exactly the pixels that were scored (the SR sample after its one 8-bit conversion), so
``idard-bench distortion hr.png sr.png`` gives the record's value again.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import polars as pl

from idard.bench.report.samples import ImageSamples, RunSamples, SampleRecord, difference_map


class ExplainError(ValueError):
    """The record asked for is not in the run (the message says what the run holds)."""


@dataclasses.dataclass(frozen=True)
class Explanation:
    samples: ImageSamples
    downscaler: str
    seed: int
    files: dict[str, Path]  # what was written: hr, lr, sr, difference
    difference_max: float  # the value white-yellow stands for in difference.png
    origin: str  # where the HR file was looked for

    @property
    def records(self) -> list[SampleRecord]:
        return self.samples.records

    @property
    def all_equal(self) -> bool:
        return self.samples.why is None and all(r.equal for r in self.records)


def _one(values: list[str], what: str, asked: str | None, image: str) -> str:
    if asked is not None:
        if asked not in values:
            raise ExplainError(f"no record of {image} with {what} {asked!r}; the run holds {', '.join(values) or 'none'}")
        return asked
    if len(values) != 1:
        raise ExplainError(f"{image} has records of several {what}s ({', '.join(values)}): name one with --{what}")
    return values[0]


def _resolve(records: pl.LazyFrame, image: str, downscaler: str, seed: int, model: str | None,
             metrics: list[str] | None) -> tuple[str, str, list[str]]:
    """The record key's model and metrics, the downscaler in its record spelling; errors
    say what the run holds instead."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import _canonical
    from idard.bench.suite.reference import PREFIX

    held = records.filter(pl.col("image") == image).select("downscaler", "model", "metric", "seed").unique().collect()
    if held.is_empty():
        raise ExplainError(f"the run holds no record of image {image!r}")
    ids = sorted(held["downscaler"].unique().to_list())
    downscaler = downscaler if downscaler in ids else _canonical(downscaler, "downscaler")
    if downscaler not in ids:
        raise ExplainError(f"no record of {image} with downscaler {downscaler!r}; the run holds {', '.join(ids)}")
    held = held.filter(pl.col("downscaler") == downscaler)
    models = sorted(m for m in held["model"].unique().to_list() if not m.startswith(PREFIX))
    model = _one(models, "model", model and (model if model in models else _canonical(model, "model")), image)
    held = held.filter((pl.col("model") == model) & (pl.col("seed") == seed))
    if held.is_empty():
        raise ExplainError(f"no record of {image} / {downscaler} / {model} with seed {seed}")
    found = sorted(held["metric"].unique().to_list())
    for metric in metrics or []:
        _one(found, "metric", metric, image)
    return downscaler, model, list(metrics or found)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def default_out(image: str, downscaler: str, seed: int) -> Path:
    return Path(f"explain-{_safe(image)}-{_safe(downscaler)}-seed{seed}")


def _colour(diff: np.ndarray, top: float) -> np.ndarray:
    import matplotlib

    return matplotlib.colormaps["inferno"](np.clip(diff / max(top, 1e-12), 0, 1))[..., :3].astype(np.float32)


def _write(found: ImageSamples, downscaler: str, seed: int, out: Path) -> tuple[dict[str, Path], float]:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import save_image

    files: dict[str, Path] = {}
    if found.hr is not None:
        files["hr"] = save_image(out / "hr.png", found.hr)
    if downscaler in found.lr:
        files["lr"] = save_image(out / "lr.png", found.lr[downscaler])
    sr = found.sr.get((downscaler, seed))
    top = 0.0
    if sr is not None and found.hr is not None:
        files["sr"] = save_image(out / "sr.png", sr)
        diff = difference_map(found.hr, sr)
        top = float(diff.max())
        files["difference"] = save_image(out / "difference.png", _colour(diff, top))
    return files, top


def explain(run_dir: str, records: pl.LazyFrame, image: str, downscaler: str, seed: int, *,
            model: str | None = None, metrics: list[str] | None = None, images: list[str] | None = None,
            out: Path | None = None, device: str | None = None) -> Explanation:
    """Recompute one record key (every metric held for it unless ``metrics``) and write its
    pixels to ``out``."""
    downscaler, model, metrics = _resolve(records, image, downscaler, seed, model, metrics)
    samples = RunSamples(run_dir, records, images or (), device=device)
    found = samples.recompute(image, model, [downscaler], metrics, [seed])
    files, top = ({}, 0.0) if found.why else _write(found, downscaler, seed, out or default_out(image, downscaler, seed))
    return Explanation(found, downscaler, seed, files, top, samples.origin)


def _number(value: float | None) -> str:
    return "—" if value is None else repr(float(value))


def explanation_lines(done: Explanation) -> list[str]:
    """What ``explain`` prints: the key, where the HR file came from, value against value."""
    found = done.samples
    model = done.records[0].model if done.records else ""
    lines = [f"{found.image} / {done.downscaler} / {model} / seed {done.seed}", done.origin + "."]
    if found.why:
        return [*lines, f"not recomputed: {found.why}"]
    lines.append(f"HR file {found.location}: its SHA-256 is the records' hr_sha256")
    lines += found.notes
    width = max(len(r.metric) for r in done.records)
    lines.append(f"{'metric':<{width}}  {'recomputed':<22}  {'stored':<22}  equal")
    for r in done.records:
        verdict = "yes" if r.equal else "NO" + (f" (difference {r.value - r.stored:+.3g})"
                                                if r.value is not None and r.stored is not None else "")
        lines.append(f"{r.metric:<{width}}  {_number(r.value):<22}  {_number(r.stored):<22}  {verdict}")
        for label, error in (("recomputed error", r.error), ("stored error", r.stored_error)):
            if error:
                lines.append(f"  {label}: {error}")
    if done.files:
        folder = next(iter(done.files.values())).parent
        lines.append(f"wrote {folder}/: " + ", ".join(p.name for p in done.files.values())
                     + (f" (difference.png: |SR - HR| mean over R, G, B, black 0 to white-yellow "
                        f"{done.difference_max:.4f})" if "difference" in done.files else ""))
    if found.hr is not None and "sr" in done.files:
        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.measure.images import is_8bit_grid

        if is_8bit_grid(found.hr):
            lines.append(f"check by hand: idard-bench distortion {done.files['hr']} {done.files['sr']} --metric "
                         f"{done.records[0].metric}")
        else:
            lines.append("the HR image has more than 8 bits: hr.png is rounded to 8 bits, so a distortion "
                         "computed from it differs slightly from the record")
    return lines
