"""``idard-bench validate-model SPEC``: may this SR model be IDA-RD's decoder?

IDA-RD needs a *stochastic* blind SR decoder whose samples follow the degradation of the
LR image: supplement Table 11 shows a deterministic decoder is not a valid one, and
Tables 9/10 validate a decoder by the Spearman signs of the synthetic ladders. This module
turns those findings into a card with three criteria and a verdict:

* **stochasticity**: per-pixel std of K samples of one LR image, and the mean pairwise
  LPIPS among the K samples against their mean LPIPS to the HR image. For a decoder that
  samples the posterior p(x | y), the HR image is one more draw of it, so both means are
  the same expectation (two independent posterior draws) and the ratio is near 1; samples
  that collapse onto one reconstruction drive it to 0.
* **the paper's validation**: the five ladders of `idard.measure.ladders.PAPER_LADDERS`
  with the paper's Spearman signs, and nearest losing more than bicubic and bilinear, as
  `idard.bench.suite.checks` checks (the same code `run` and `report` use).
* **stability**: non-finite and unconverged sample rates from the records, error records,
  and whether a sample drawn in a batch equals the same seed drawn alone (records are
  recomputed one by one: the report's grid, incremental runs).

The records are computed by the normal run machinery: a generated suite
(`validity_suite`) run with `idard.bench.run.jobs.run_suite` into a run directory, so the card
is incremental, resumable and reproducible like any run (``idard-bench report RUN`` reads
it too). Records hold no pixels, so the stochasticity and batch probes redraw a few
samples from their seeds in this process (`run_probe`); their per-image results are kept
in ``RUN/validity/probe.json`` and reused while the model, its weights, the seeds and the
image bytes are the same. The card is written as ``card.json`` and ``card.md`` beside the
records; `idard.bench.report.validity` renders it (Markdown, HTML fragment).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from idard.bench.store.records import RecordStore, is_uri

#: The card's verdicts, and each criterion's statuses.
VALID, INVALID, INCONCLUSIVE = "valid", "invalid", "inconclusive"
PASS, FAIL, UNDECIDED = "pass", "fail", "inconclusive"

CLASSIC = ("bicubic", "bilinear", "nearest")
METRIC = "lpips-alex"
#: The probe's LR images: bicubic for the stochasticity of every image; bilinear shares
#: the first image's batch so that "batched equals alone" also covers mixing LR images.
PROBE_LR, BATCH_PARTNER = "bicubic", "bilinear"
PROBE_FILE = "validity/probe.json"
CARD_JSON, CARD_MD = "card.json", "card.md"


@dataclasses.dataclass(frozen=True)
class Size:
    """How much the card computes: every option here is a trade of minutes for confidence."""

    samples: int = 4  # K seeds per LR image (0..K-1)
    crop: int = 256  # centre crop side of the bundled photos; 0 keeps them whole
    images: tuple[str, ...] = ()  # the user's image sources; empty: the bundled held-out photos
    max_batch: int = 64
    batch_images: int = 1  # images whose seeds are also drawn one at a time (batch probe)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where a criterion passes, fails, or cannot tell. Defaults are argued in the README."""

    min_pixel_std: float = 0.5 / 255  # mean per-pixel std over seeds under half an 8-bit level: collapsed
    # pairwise LPIPS / LPIPS to HR: ~1 for an exact posterior sampler, 0 for a deterministic
    # decoder; the embedded models measure 0.10 (resshift-tiny-4x) and 0.13 (srflow-tiny-4x)
    min_diversity: float = 0.02  # under this: collapsed
    valid_diversity: float = 0.05  # at least this to pass; between the two: near-deterministic
    max_nonfinite: float = 0.01  # share of samples with NaN/Inf
    max_unconverged: float = 0.05  # share of samples that missed their goal (PULSE's eps)
    batch_tolerance: float = 2e-3  # max |batched - alone| per pixel, samples in [0, 1]


@dataclasses.dataclass(frozen=True)
class Item:
    """One measured sub-criterion: what, its status, and why in one line."""

    label: str
    status: str
    detail: str
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Criterion:
    name: str
    status: str
    reason: str
    items: tuple[Item, ...]


# ------------------------------------------------------------------------ the suite

def validity_checks() -> list[dict[str, Any]]:
    """The paper's validation as a suite's ``checks:`` (Tables 9/10 and the nearest finding)."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.ladders import PAPER_LADDERS

    checks: list[dict[str, Any]] = [
        {"spearman": {"family": ladder.family, "downscalers": ladder.specs(), "parameter": list(ladder.parameters),
                      "sign": ladder.sign}}
        for ladder in PAPER_LADDERS
    ]
    checks.append({"ranks_above": {"a": "nearest", "b": ["bicubic", "bilinear"]}})
    return checks


def suite_name(model_id: str) -> str:
    return f"validity-{model_id}"


def suite_document(spec: str, images: Sequence[str], size: Size) -> dict[str, Any]:
    """The generated suite: classic downscalers and the five ladders, one model, LPIPS-alex."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.ladders import PAPER_LADDERS
    from idard.measure.models import MODELS

    downscalers = [*CLASSIC, *(s for ladder in PAPER_LADDERS for s in ladder.specs())]
    return {
        "name": suite_name(MODELS.create(spec).id),
        "description": "idard-bench validate-model: the paper's ladders and the classic downscalers",
        "images": list(images), "downscalers": downscalers, "models": [spec], "metrics": [METRIC],
        "samples": size.samples, "max_batch": size.max_batch, "checks": validity_checks(),
    }


def validity_suite(spec: str, images: Sequence[str], size: Size, base: Path | None = None):
    """`idard.bench.suite.definition.Suite` of the card; relative paths in ``spec`` and ``images``
    are resolved against ``base`` (the working directory: where the user typed them)."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.definition import parse_suite

    document = suite_document(spec, images, size)
    return parse_suite(document, f"<validate-model {spec}>", base or Path.cwd())


def default_out(spec: str) -> str:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.definition import run_dir_name
    from idard.measure.models import MODELS

    return str(Path("runs") / run_dir_name(suite_name(MODELS.create(spec).id)))


def _png(pixels) -> bytes:
    from PIL import Image

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import to_uint8

    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def prepare_images(store: RecordStore, size: Size) -> list[str]:
    """The suite's image sources: the user's, or the bundled held-out photos.

    Centre crops of the bundled photos are written once into ``RUN/images/`` and never
    rewritten (a new encoder's bytes would read as changed images and stop a resumed run).
    """
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.datasets import HELD_OUT, load_bundled

    if size.images:
        return list(size.images)
    if not size.crop:
        return ["bundled:held-out"]
    for name in HELD_OUT:
        target = f"images/{name}.png"
        try:
            store.read_bytes(target)
            continue
        except FileNotFoundError:
            pass
        photo = load_bundled(name)
        side = min(size.crop, photo.height, photo.width)
        top, left = (photo.height - side) // 2, (photo.width - side) // 2
        store.write_bytes(target, _png(photo.pixels[top: top + side, left: left + side]))
    root = str(store.run_dir).rstrip("/")
    return [f"{root}/images/" if is_uri(root) else str(Path(root).resolve() / "images")]


# ------------------------------------------------------------------------ the probe

def _samples_tensor(out):
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.models import Samples

    return out.images if isinstance(out, Samples) else out


def _pairwise(metric, samples) -> list[float]:
    """The metric between every pair of samples (i < j)."""
    values: list[float] = []
    for i in range(samples.shape[0] - 1):
        values += metric(samples[i: i + 1], samples[i + 1:]).tolist()
    return values


def _draw(model, lr, seeds: Sequence[int], max_batch: int):
    """``model.sample`` in calls of at most ``max_batch`` samples, on the CPU as float32
    (B, K, 3, H, W): a probe never asks the device for more than the run does."""
    import torch

    per_call = max(1, max_batch // lr.shape[0])
    chunks = [_samples_tensor(model.sample(lr, list(seeds[start: start + per_call]))).float().cpu()
              for start in range(0, len(seeds), per_call)]
    return torch.cat(chunks, dim=1)


def probe_image(model, metric, hr, seeds: Sequence[int], device: str, alone: bool,
                max_batch: int = 64) -> dict[str, Any]:
    """Stochasticity (and, when ``alone``, batch invariance) of one HR image's bicubic LR.

    Samples are scored as the records score them: finite ones only, on the 8-bit grid by
    truncation. The per-pixel std is over the clamped float samples.
    """
    import torch

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.images import quantize_8bit, to_tensor
    from idard.measure.sr_8bit import to_8bit_grid

    scale = int(model.scale)
    names = [BATCH_PARTNER, PROBE_LR] if alone else [PROBE_LR]
    lrs = [quantize_8bit(DOWNSCALERS.create(n)(hr, scale)) for n in names]
    with torch.inference_mode():
        samples = _draw(model, to_tensor(lrs, device), seeds, max_batch)[-1]  # the bicubic LR's K samples
        finite = torch.isfinite(samples).flatten(1).all(dim=1)
        good = samples[finite]
        result: dict[str, Any] = {"samples": len(seeds), "finite_samples": int(finite.sum())}
        if good.shape[0] >= 2:
            hr_tensor = to_tensor(hr.pixels, device)
            scored = to_8bit_grid(good).to(device)
            result.update(
                pixel_std=float(good.clamp(0, 1).std(dim=0).mean()),
                lpips_between=float(torch.tensor(_pairwise(metric, scored)).mean()),
                lpips_to_hr=float(metric(hr_tensor, scored).mean()),
            )
        if alone:
            diffs = []
            for k, seed in enumerate(seeds):
                single = _draw(model, to_tensor(lrs[-1:], device), [seed], 1)[0, 0]
                together = samples[k]
                if torch.isfinite(single).all() and torch.isfinite(together).all():
                    diffs.append(float((single.clamp(0, 1) - together.clamp(0, 1)).abs().max()))
            result["batch_max_diff"] = max(diffs) if diffs else None
    return result


def _probe_key(model, seeds: Sequence[int]) -> dict[str, Any]:
    return {"model": model.id, "weights_sha256": model.weights_hash, "seeds": list(seeds), "lr": PROBE_LR,
            "metric": METRIC}


def run_probe(suite, store: RecordStore, batch_images: int = 1, *, log: Callable[[str], None] = print,
              model=None, device: str | None = None) -> dict[str, dict[str, Any]]:
    """Per-image probe results for the suite's images (the first `Size.batch_images` with
    the batch probe), reusing ``RUN/validity/probe.json`` where model, weights, seeds and
    image bytes are unchanged; saved after each image so an interrupted probe resumes.

    ``model`` may be an `SRModel` instance to probe instead of the suite's model.
    """
    import torch

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.sources import scan_sources
    from idard.measure.distortions import DISTORTIONS
    from idard.measure.images import crop_to_multiple, decode_image
    from idard.measure.models import MODELS

    model_id = suite.models[0]
    model = model if model is not None else MODELS.create(suite.spec(model_id))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    seeds = list(suite.seeds)
    key = _probe_key(model, seeds)
    saved = _read_probe(store)
    done = saved.get("images", {}) if {k: saved.get(k) for k in key} == key else {}
    model.to(device)
    metric = DISTORTIONS.create(METRIC).to(device)
    results: dict[str, dict[str, Any]] = {}
    for index, ref in enumerate(scan_sources(list(suite.images), Path(suite.base_dir)).refs):
        data = ref.read()
        digest = hashlib.sha256(data).hexdigest()
        alone = index < batch_images
        cached = done.get(ref.name)
        if cached and cached.get("hr_sha256") == digest and ("batch_max_diff" in cached) >= alone:
            results[ref.name] = cached
            continue
        try:
            hr = crop_to_multiple(decode_image(data, name=ref.name, source=ref.location), model.scale)
            result = probe_image(model, metric, hr, seeds, device, alone, suite.max_batch)
        except Exception as exc:  # noqa: BLE001 - an image the probe cannot use is a reason, not a crash
            result = {"error": f"{type(exc).__name__}: {exc}"}
        results[ref.name] = {"hr_sha256": digest, **result}
        log(f"probe: {ref.name}: {_probe_line(results[ref.name])}")
        store.write_text(PROBE_FILE, json.dumps({**key, "images": {**done, **results}}, indent=2) + "\n")
    return results


def _probe_line(result: Mapping[str, Any]) -> str:
    if "error" in result:
        return result["error"]
    parts = [f"{k} {result[k]:.4g}" for k in ("pixel_std", "lpips_between", "lpips_to_hr", "batch_max_diff")
             if isinstance(result.get(k), float)]
    return ", ".join(parts) or f"{result.get('finite_samples', 0)} finite sample(s)"


def _read_probe(store: RecordStore) -> dict[str, Any]:
    text = store.read_text(PROBE_FILE)
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}  # a damaged cache is computed again
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------ the criteria

def _combine(statuses: Sequence[str]) -> str:
    if FAIL in statuses:
        return FAIL
    return PASS if statuses and all(s == PASS for s in statuses) else UNDECIDED


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stochasticity(probe: Mapping[str, Mapping[str, Any]], thresholds: Thresholds) -> Criterion:
    """Do the samples of one LR image differ, as much as they differ from HR?"""
    usable = [r for r in probe.values() if isinstance(r.get("pixel_std"), float)]
    skipped = len(probe) - len(usable)
    if not usable:
        why = "no image gave two finite samples to compare"
        return Criterion("stochasticity", UNDECIDED, why, (Item("samples", UNDECIDED, why),))
    std = _mean([r["pixel_std"] for r in usable])
    between = _mean([r["lpips_between"] for r in usable])
    to_hr = _mean([r["lpips_to_hr"] for r in usable])
    ratio = between / to_hr if to_hr > 0 else math.nan
    std_item = Item(
        "per-pixel std over seeds", FAIL if std < thresholds.min_pixel_std else PASS,
        f"{std:.4f} ({std * 255:.2f} 8-bit levels; collapsed under {thresholds.min_pixel_std:.4f})",
        {"pixel_std": std})
    if math.isnan(ratio):
        ratio_status, ratio_text = UNDECIDED, "samples are at LPIPS 0 from HR: no ratio"
    else:
        ratio_status = (FAIL if ratio < thresholds.min_diversity else
                        PASS if ratio >= thresholds.valid_diversity else UNDECIDED)
        ratio_text = (f"pairwise LPIPS {between:.4f} vs LPIPS to HR {to_hr:.4f}: ratio {ratio:.2f} "
                      f"(collapsed under {thresholds.min_diversity:g}, valid from {thresholds.valid_diversity:g})")
    ratio_item = Item("diversity: pairwise LPIPS / LPIPS to HR", ratio_status, ratio_text,
                      {"lpips_between": between, "lpips_to_hr": to_hr, "ratio": ratio})
    status = _combine([std_item.status, ratio_item.status])
    if status == FAIL:
        reason = (f"samples collapse: per-pixel std {std:.4f} across seeds, pairwise LPIPS {between:.4f} is "
                  f"{ratio:.0%} of the LPIPS to HR {to_hr:.4f}" if not math.isnan(ratio) else
                  f"samples collapse: per-pixel std {std:.4f} across seeds")
    elif status == PASS:
        reason = f"samples differ: pairwise LPIPS {between:.4f} is {ratio:.0%} of the LPIPS to HR {to_hr:.4f}"
    else:
        reason = f"near-deterministic: pairwise LPIPS {between:.4f} is only {ratio:.0%} of the LPIPS to HR {to_hr:.4f}"
    reason += f" ({len(usable)} image(s), bicubic LR" + (f"; {skipped} image(s) unusable)" if skipped else ")")
    return Criterion("stochasticity", status, reason, (std_item, ratio_item))


def paper_validation(results, table: pl.DataFrame) -> Criterion:
    """The suite's checks as the card reads them: a ladder passes with rho equal to the
    paper's sign (Table 9: +1 or -1), fails with rho of the wrong sign or 0, and cannot
    tell with the right sign short of monotone (|rho| 0.5 on three rungs)."""
    items = []
    for result in results:
        if result.kind == "spearman":
            rhos = list(result.values.get("rho", {}).values())
            sign = 1 if "sign +1" in result.label else -1
            rho = rhos[0] if len(rhos) == 1 else math.nan
            if math.isnan(rho):
                status, detail = UNDECIDED, "a rung has no IDA-RD (every sample failed)"
            else:
                status = PASS if rho * sign >= 1 - 1e-9 else FAIL if rho * sign <= 0 else UNDECIDED
                detail = f"rho {rho:+.2f}, paper's {sign:+d}"
            items.append(Item(result.label.removeprefix("Spearman ").split(" (")[0], status, detail,
                              {"rho": rho, "sign": sign, "ida_rd": _rungs(result, table)}))
        else:
            status = {True: PASS, False: FAIL, None: UNDECIDED}[result.passed]
            means = {d: _ida_rd(table, d) for d in CLASSIC}
            detail = ", ".join(f"{d} {'—' if v is None else f'{v:.4f}'}" for d, v in means.items())
            items.append(Item("nearest loses more than bicubic and bilinear", status, detail, {"ida_rd": means}))
    status = _combine([i.status for i in items])
    bad = [i for i in items if i.status != PASS]
    reason = ("the five ladders have the paper's Spearman signs and nearest ranks above bicubic/bilinear"
              if status == PASS else "; ".join(f"{i.label}: {i.detail}" for i in bad))
    return Criterion("paper's validation", status, reason, tuple(items))


def _ida_rd(table: pl.DataFrame, downscaler: str) -> float | None:
    row = table.filter(pl.col("downscaler") == downscaler)
    return None if row.is_empty() else row["ida_rd"][0]


def _rungs(result, table: pl.DataFrame) -> dict[str, float | None]:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.ladders import PAPER_LADDERS

    family = result.label.removeprefix("Spearman ").split(" (")[0]
    for ladder in PAPER_LADDERS:
        if ladder.family == family:
            return {d: _ida_rd(table, d) for d in ladder.ids()}
    return {}


def record_rates(records: pl.LazyFrame) -> dict[str, int]:
    """Counts behind the stability criterion: samples, non-finite, unconverged, errors."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.records import is_error

    counts = records.select(
        records=pl.len(), errors=is_error().sum(),
        samples=(~is_error()).sum(),
        nonfinite=(~is_error() & ~pl.col("finite").fill_null(False)).sum(),
        flagged=(~is_error() & pl.col("converged").is_not_null()).sum(),
        unconverged=(~is_error() & (pl.col("converged") == False)).fill_null(False).sum(),  # noqa: E712
    ).collect()
    return {k: int(v) for k, v in counts.row(0, named=True).items()}


def stability(counts: Mapping[str, int], probe: Mapping[str, Mapping[str, Any]], thresholds: Thresholds) -> Criterion:
    """Non-finite and unconverged rates, error records, and batched equals alone per seed."""
    items = []
    samples = counts["samples"]
    rate = counts["nonfinite"] / samples if samples else math.nan
    items.append(Item("non-finite samples", UNDECIDED if not samples else FAIL if rate > thresholds.max_nonfinite
                      else PASS, f"{counts['nonfinite']} of {samples} ({rate:.1%}; at most "
                      f"{thresholds.max_nonfinite:.0%})", {"nonfinite": counts["nonfinite"], "rate": rate}))
    if counts["flagged"]:
        rate = counts["unconverged"] / counts["flagged"]
        items.append(Item("unconverged samples", FAIL if rate > thresholds.max_unconverged else PASS,
                          f"{counts['unconverged']} of {counts['flagged']} ({rate:.1%}; at most "
                          f"{thresholds.max_unconverged:.0%})", {"unconverged": counts["unconverged"], "rate": rate}))
    else:
        items.append(Item("unconverged samples", PASS, "the model has no convergence goal", {}))
    items.append(Item("error records", UNDECIDED if counts["errors"] else PASS,
                      f"{counts['errors']} (images or units that failed: see run.json)" if counts["errors"] else "none",
                      {"errors": counts["errors"]}))
    diffs = [r["batch_max_diff"] for r in probe.values() if isinstance(r.get("batch_max_diff"), float)]
    if not diffs:
        items.append(Item("batched equals alone per seed", UNDECIDED, "no image gave finite samples to compare", {}))
    else:
        worst = max(diffs)
        items.append(Item("batched equals alone per seed", FAIL if worst > thresholds.batch_tolerance else PASS,
                          f"max |batched - alone| {worst:.2e} (at most {thresholds.batch_tolerance:g}) over "
                          f"{len(diffs)} image(s)", {"max_diff": worst}))
    status = _combine([i.status for i in items])
    bad = [i for i in items if i.status != PASS]
    reason = ("finite, converged samples; a batch draws each seed's sample as alone" if status == PASS
              else "; ".join(f"{i.label}: {i.detail}" for i in bad))
    return Criterion("stability", status, reason, tuple(items))


def verdict(criteria: Sequence[Criterion]) -> tuple[str, str]:
    """invalid when a criterion fails, valid when all pass, else inconclusive; with why."""
    statuses = [c.status for c in criteria]
    if FAIL in statuses:
        return INVALID, "; ".join(f"{c.name}: {c.reason}" for c in criteria if c.status == FAIL)
    if all(s == PASS for s in statuses):
        return VALID, "every criterion passes"
    return INCONCLUSIVE, "; ".join(f"{c.name}: {c.reason}" for c in criteria if c.status != PASS)


# ------------------------------------------------------------------------ the card

def build_card(suite, records: pl.LazyFrame, probe: Mapping[str, Mapping[str, Any]], thresholds: Thresholds,
               size: Size, weights_sha256: str | None = None) -> dict[str, Any]:
    """The card as data (what ``card.json`` holds): criteria, verdict, and how it was made."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import evaluate_checks, parse_checks
    from idard.measure.statistics import ida_rd_table
    from idard.provenance import code_version

    table = ida_rd_table(records, n_boot=200)
    checks = parse_checks([dict(c) for c in suite.checks], suite.path)
    criteria = [stochasticity(probe, thresholds), paper_validation(evaluate_checks(checks, table, records), table),
                stability(record_rates(records), probe, thresholds)]
    result, reason = verdict(criteria)
    images = records.select(pl.col("image").unique().sort()).collect()["image"].to_list()
    scale = int(table["scale"][0]) if "scale" in table.columns and table.height else None
    return {
        "model": suite.models[0], "spec": suite.spec(suite.models[0]), "weights_sha256": weights_sha256,
        "verdict": result, "reason": reason,
        "criteria": [dataclasses.asdict(c) for c in criteria],
        "size": {"images": len(images), "image_names": images, "samples": len(suite.seeds), "seeds": list(suite.seeds),
                 "crop": size.crop if not size.images else None, "sources": list(size.images) or "bundled:held-out",
                 "metric": METRIC, "scale": scale},
        "thresholds": dataclasses.asdict(thresholds),
        "suite": suite.name, "suite_hash": suite.digest(), "code_version": code_version(),
        "table": _card_table(suite, table),
    }


def _card_table(suite, table: pl.DataFrame) -> list[dict[str, Any]]:
    """IDA-RD rows in the suite's order (classic, then rung by rung), named by their spec:
    ``blur(sigma=1.0)`` next to ``blur(sigma=2.0)``, though the first one's id is ``blur``."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.ladders import PAPER_LADDERS

    labels = {d: spec for ladder in PAPER_LADDERS for d, spec in zip(ladder.ids(), ladder.specs())}
    rows = {row["downscaler"]: row for row in table.iter_rows(named=True)}
    return [{"downscaler": labels.get(d, d), "id": d,
             **{k: rows[d][k] for k in ("ida_rd", "std_images", "n_nonfinite")}}
            for d in suite.downscalers if d in rows]


def write_card(store: RecordStore, card: Mapping[str, Any], markdown: Callable[[Mapping[str, Any]], str]) -> list[str]:
    """``card.json`` and ``card.md``; ``markdown`` renders the card (the report room's
    `idard.bench.report.validity.render_markdown`: the runner computes, it renders nothing)."""
    return [store.write_text(CARD_JSON, json.dumps(card, indent=2, default=_json_default) + "\n"),
            store.write_text(CARD_MD, markdown(card))]


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def validate_model(spec: str, out: str | Path, size: Size, options, console, *,
                   markdown: Callable[[Mapping[str, Any]], str], thresholds: Thresholds = Thresholds(), lease=None,
                   model=None) -> dict[str, Any]:
    """Compute what ``out`` lacks of the card's suite (the normal run), probe the samples,
    judge, and write ``card.json`` and ``card.md`` there. Returns the card.

    The run directory's lease is held throughout (the crops, the records, the probe and
    the card are all written by this process); a caller that holds it passes ``lease``.
    ``model``: an `SRModel` instance for the probe instead of building the spec again.
    ``markdown``: renders ``card.md`` (`idard.bench.report.validity.render_markdown`).
    """
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.run.jobs import run_suite
    from idard.bench.store.lease import RunLease

    lease = lease if lease is not None else RunLease(RecordStore(out))
    with contextlib.nullcontext() if lease.held else lease.hold():
        store = lease.store
        suite = validity_suite(spec, prepare_images(store, size), size)
        summary = run_suite(suite, out, options, console, lease=lease)
        probe = run_probe(suite, store, size.batch_images, model=model,
                          log=lambda line: console.print(line, highlight=False, markup=False))
        sha = summary.records.select(pl.col("weights_hash").drop_nulls().first()).collect().item()
        card = build_card(suite, summary.records, probe, thresholds, size, sha)
        write_card(store, card, markdown)
    return card
