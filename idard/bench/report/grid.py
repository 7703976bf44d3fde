"""The supplement's Figure 3 as a tool for looking: HR, LR, SR samples and difference maps
of chosen images, downscalers and seeds, as zoomed crops at full resolution.

Records hold no pixels, so the samples are recomputed from the records' seeds on the
worker's own path (`idard.bench.report.samples.RunSamples`: one batched work unit per
image, every sample computed once) and every tile says whether its value equals the
record's, exactly. What the grid shows:

* per image, an overview of the HR image with the crop marked, then one row per
  downscaler: the HR crop, the LR crop (nearest-neighbour zoom, so LR pixels stay
  visible), each SR sample's crop and its difference map, all the same crop;
* the crop is the user's (``crop``) or the region where the shown samples differ most
  from HR, in HR pixels at 1:1, zoomed by the browser without smoothing;
* one colour scale for every difference map of the page, with its colour bar;
* a layout of fluid columns that fits a laptop window (no horizontal scroll at 1400 px).

HR files are read only from the sources the user names or the run's ``suite.yaml``, and
shown only when their SHA-256 is the records' (see `samples`); images whose records are
errors are listed with their errors instead of tiles.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from idard.bench.report.model import downscaler_labels
from idard.bench.report.samples import ImageSamples, RunSamples, SampleRecord, difference_map

#: Most downscalers shown per image by default (the page stays readable).
GRID_DOWNSCALERS = 4
#: Images with error records listed by name in the grid section (the rest are counted).
ERROR_IMAGES_LISTED = 10


@dataclasses.dataclass(frozen=True)
class GridOptions:
    """What the grid shows; empty tuples mean the defaults (first ``n_images`` images with
    scored records, bicubic and nearest then the most lossy downscalers, the first
    ``n_samples`` seeds)."""

    images: tuple[str, ...] = ()
    downscalers: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    n_images: int = 2
    n_samples: int = 3
    crop: tuple[int, int] | None = None  # (x, y) of the crop's top-left corner, HR pixels
    crop_size: int = 64  # HR pixels per side
    sources: tuple[str, ...] = ()  # image sources to read HR files from (default: the run's suite.yaml)
    device: str | None = None


@dataclasses.dataclass(frozen=True)
class Crop:
    x: int
    y: int
    size: int
    chosen_by: str  # "user" or "largest difference"


# ------------------------------------------------------------------------ choices

def _model_and_metric(table: pl.DataFrame) -> tuple[str | None, str | None]:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.reference import PREFIX

    models = [m for m in table["model"].unique(maintain_order=True).to_list() if not str(m).startswith(PREFIX)]
    if not models:
        return None, None
    metrics = table.filter(pl.col("model") == models[0])["metric"].unique(maintain_order=True).to_list()
    return models[0], "lpips-alex" if "lpips-alex" in metrics else metrics[0]


def _default_downscalers(table: pl.DataFrame, model: str, limit: int) -> list[str]:
    """Bicubic and nearest when present, then the others from the most to the least
    information lost."""
    ranked = (table.filter((pl.col("model") == model) & pl.col("ida_rd").is_not_null())
              .sort("ida_rd", descending=True)["downscaler"].unique(maintain_order=True).to_list())
    first = [d for d in ("bicubic", "nearest") if d in ranked]
    return (first + [d for d in ranked if d not in first])[:limit]


def _choose(records: pl.LazyFrame, table: pl.DataFrame, model: str, metric: str,
            options: GridOptions) -> tuple[list[str], list[str], list[int], list[str]]:
    """Images, downscalers and seeds to show, and notes on asked-for ones the run lacks."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import _canonical

    scored = records.filter((pl.col("model") == model) & (pl.col("metric") == metric))
    notes: list[str] = []
    held_ds = set(scored.select(pl.col("downscaler").unique()).collect()["downscaler"].to_list())
    if options.downscalers:
        downscalers = [d if d in held_ds else _canonical(d, "downscaler") for d in options.downscalers]
        notes += [f"no records of downscaler {d!r}" for d in downscalers if d not in held_ds]
        downscalers = [d for d in downscalers if d in held_ds]
    else:
        downscalers = _default_downscalers(table, model, GRID_DOWNSCALERS)
    held_seeds = sorted(scored.select(pl.col("seed").unique()).collect()["seed"].to_list())
    if options.seeds:
        notes += [f"no records with seed {s}" for s in options.seeds if s not in held_seeds]
        seeds = [s for s in options.seeds if s in held_seeds]
    else:
        seeds = held_seeds[:options.n_samples]
    if options.images:
        held = set(scored.filter(pl.col("image").is_in(list(options.images))).select(pl.col("image").unique())
                   .collect()["image"].to_list())
        notes += [f"no records of image {i!r}" for i in options.images if i not in held]
        images = [i for i in options.images if i in held]
    else:
        ok = scored.filter(pl.col("error").is_null()).select(pl.col("image").unique()).collect()["image"]
        images = sorted(ok.to_list())[:options.n_images]
    return images, downscalers, seeds, notes


def _error_images(records: pl.LazyFrame, model: str) -> pl.DataFrame:
    """Images with error records of ``model``: how many, and the first error."""
    return (records.filter((pl.col("model") == model) & pl.col("error").is_not_null())
            .group_by("image").agg(pl.len().alias("n"), pl.col("error").first())
            .sort("image").collect())


# ------------------------------------------------------------------------ crops

def largest_difference_crop(diff: np.ndarray, size: int, step: int) -> tuple[int, int]:
    """Top-left (x, y), multiples of ``step``, of the ``size`` x ``size`` window with the
    largest summed difference (a summed-area table: every window in one pass)."""
    h, w = diff.shape
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = diff.astype(np.float64).cumsum(0).cumsum(1)
    ys = np.arange(0, h - size + 1, step)
    xs = np.arange(0, w - size + 1, step)
    sums = (table[ys[:, None] + size, xs[None, :] + size] - table[ys[:, None], xs[None, :] + size]
            - table[ys[:, None] + size, xs[None, :]] + table[ys[:, None], xs[None, :]])
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(xs[ix]), int(ys[iy])


def _crop_for(found: ImageSamples, scale: int, options: GridOptions) -> Crop:
    """The crop shown for every tile of one image: the user's (snapped to the LR grid and
    kept inside the image) or the region of largest mean difference over the shown samples."""
    h, w = found.hr.shape[:2]
    size = max(scale, min(options.crop_size, h, w) // scale * scale)
    if options.crop is not None:
        x = min(max(0, options.crop[0]) // scale * scale, w - size)
        y = min(max(0, options.crop[1]) // scale * scale, h - size)
        return Crop(x, y, size, "user")
    if not found.sr:
        return Crop((w - size) // 2 // scale * scale, (h - size) // 2 // scale * scale, size, "centre")
    mean = np.mean([difference_map(found.hr, sr) for sr in found.sr.values()], axis=0)
    x, y = largest_difference_crop(mean, size, scale)
    return Crop(x, y, size, "largest difference")


# ------------------------------------------------------------------------ pixels -> HTML

def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import to_uint8

    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _inferno(values: np.ndarray) -> np.ndarray:
    import matplotlib

    return matplotlib.colormaps["inferno"](np.clip(values, 0, 1))[..., :3].astype(np.float32)


def _overview(hr: np.ndarray, crop: Crop, width: int = 240) -> str:
    """The whole HR image, small, with the crop outlined."""
    from PIL import Image, ImageDraw

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import to_uint8

    image = Image.fromarray(to_uint8(hr))
    factor = min(1.0, width / image.width)
    small = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.BOX)
    draw = ImageDraw.Draw(small)
    box = [crop.x * factor, crop.y * factor, (crop.x + crop.size) * factor - 1, (crop.y + crop.size) * factor - 1]
    draw.rectangle(box, outline=(0, 255, 255), width=2)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _nice_ceiling(value: float) -> float:
    """``value`` rounded up to 1, 2 or 5 times a power of ten (a readable colour-bar end)."""
    if value <= 0 or not math.isfinite(value):
        return 0.1
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _badge(record: SampleRecord | None) -> str:
    if record is None or record.value is None:
        return "<span class=sg-v>—</span>"
    exact = f"recomputed {record.value!r}, record {record.stored!r}"
    if record.equal:
        return f"<span class=sg-v title='{html.escape(exact)}'>{record.value:.4f} = record</span>"
    stored = "none" if record.stored is None else f"{record.stored:.4f}"
    return f"<span class='sg-v sg-ne' title='{html.escape(exact)}'>{record.value:.4f} ≠ record {stored}</span>"


def _tile(uri: str, label: str, badge: str = "", css: str = "") -> str:
    return (f"<figure class='sg-t {css}'><img src='{uri}' alt='{html.escape(label)}'>{badge}"
            f"<figcaption>{html.escape(label)}</figcaption></figure>")


def _colour_bar(top: float) -> str:
    stops = ", ".join(f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}) {p * 100:.0f}%"
                      for p, (r, g, b) in zip(np.linspace(0, 1, 11), _inferno(np.linspace(0, 1, 11))))
    ticks = "".join(f"<span style='left:{p * 100:.0f}%'>{'≥ ' if p == 1 else ''}{p * top:.3g}</span>"
                    for p in (0, 0.25, 0.5, 0.75, 1))
    return (f"<div id=sample-grid-colourbar class=sg-bar><div class=sg-bar-title>difference maps: |SR − HR| "
            f"averaged over R, G, B (pixel values 0–1), one scale for every map on this page</div>"
            f"<div class=sg-ramp style='background:linear-gradient(to right, {stops})'></div>"
            f"<div class=sg-ticks>{ticks}</div></div>")


_CSS = """<style>
#sample-grid{max-width:1400px}
#sample-grid .sg-row{display:grid;gap:4px;margin:2px 0;align-items:start}
#sample-grid .sg-t{margin:0;position:relative;min-width:0}
#sample-grid .sg-t img{width:100%;height:auto;display:block;image-rendering:pixelated;border:1px solid #ccc}
#sample-grid .sg-t figcaption{font-size:11px;color:#444;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#sample-grid .sg-v{position:absolute;left:2px;top:2px;color:#fff;background:rgba(0,0,0,.6);padding:0 3px;
font-size:11px;white-space:nowrap;max-width:calc(100% - 8px);overflow:hidden}
#sample-grid .sg-ne{background:#c62828}
#sample-grid .sg-l{font-size:12px;overflow-wrap:anywhere}
#sample-grid .sg-head{display:flex;gap:12px;align-items:flex-start;margin-top:14px}
#sample-grid .sg-head img{max-width:240px;image-rendering:auto;border:1px solid #ccc}
#sample-grid .sg-bar{max-width:520px;margin:8px 0 12px}
#sample-grid .sg-bar-title{font-size:12px;color:#444}
#sample-grid .sg-ramp{height:14px;border:1px solid #999}
#sample-grid .sg-ticks{position:relative;height:16px;font-size:11px}
#sample-grid .sg-ticks span{position:absolute;transform:translateX(-50%)}
#sample-grid .sg-ticks span:first-child{transform:none}#sample-grid .sg-ticks span:last-child{transform:translateX(-100%)}
#sample-grid .sg-err{color:#c62828}
</style>"""


@dataclasses.dataclass
class _Shown:
    found: ImageSamples
    crop: Crop | None = None
    scale: int = 1


def _row(cells: Sequence[str], columns: int) -> str:
    return (f"<div class=sg-row style='grid-template-columns:minmax(70px,110px) repeat({columns},minmax(0,1fr))'>"
            + "".join(cells) + "</div>")


def _image_block(shown: _Shown, downscalers: Sequence[str], seeds: Sequence[int], top: float,
                 labels: dict[str, str]) -> str:
    found, crop, s = shown.found, shown.crop, shown.scale
    if found.why:
        return f"<p class=sg-err><b>{html.escape(found.image)}</b>: {html.escape(found.why)}</p>"
    assert crop is not None and found.hr is not None
    box = (slice(crop.y, crop.y + crop.size), slice(crop.x, crop.x + crop.size))
    lr_box = (slice(crop.y // s, (crop.y + crop.size) // s), slice(crop.x // s, (crop.x + crop.size) // s))
    hr_crop = found.hr[box]
    by_key = {(r.downscaler, r.seed): r for r in found.records}
    failures = sum(not r.equal for r in found.records)
    head = (f"<div class=sg-head><img src='{_overview(found.hr, crop)}' alt='{html.escape(found.image)} HR'>"
            f"<div><b>{html.escape(found.image)}</b> ({found.hr.shape[1]}x{found.hr.shape[0]}; file "
            f"{html.escape(str(found.location))}, SHA-256 as in the records)<br>crop {crop.size}x{crop.size} HR px at "
            f"x={crop.x}, y={crop.y} ({crop.chosen_by}), shown at 1:1 and zoomed without smoothing; LR x{s}<br>"
            + ("all recomputed values equal their records" if not failures
               else f"<span class=sg-err>{failures} recomputed value(s) differ from their records (≠)</span>")
            + "".join(f"<br><span class=sg-err>{html.escape(n)}</span>" for n in found.notes) + "</div></div>")
    rows = [head]
    columns = 2 + 2 * len(seeds)
    for downscaler in downscalers:
        label = labels.get(downscaler, downscaler)  # as the tables call it
        cells = [f"<div class=sg-l><b>{html.escape(label)}</b></div>", _tile(_png(hr_crop), "HR")]
        lr = found.lr.get(downscaler)
        cells.append(_tile(_png(lr[lr_box]), f"LR x{s}") if lr is not None else "<div></div>")
        diffs = []
        for k, seed in enumerate(seeds):
            sr = found.sr.get((downscaler, seed))
            record = by_key.get((downscaler, seed))
            if sr is None:
                error = (record.error or record.stored_error) if record else "not recomputed"
                cells.append(f"<div class='sg-l sg-err'>seed {seed}: {html.escape(str(error))}</div>")
                diffs.append("<div></div>")
                continue
            cells.append(_tile(_png(sr[box]), f"SR seed {seed}", _badge(record)))
            diffs.append(_tile(_png(_inferno(difference_map(hr_crop, sr[box]) / top)), f"|SR−HR| seed {seed}"))
        rows.append(_row(cells + diffs, columns))
    return "".join(rows)


def _errors_html(errors: pl.DataFrame) -> str:
    if errors.is_empty():
        return ""
    items = "".join(f"<li><b>{html.escape(r['image'])}</b>: {r['n']} error record(s): {html.escape(str(r['error']))}</li>"
                    for r in errors.head(ERROR_IMAGES_LISTED).iter_rows(named=True))
    more = errors.height - ERROR_IMAGES_LISTED
    return (f"<p class=sg-err>{errors.height} image(s) have error records (no samples to show):</p><ul class=sg-err>"
            f"{items}{f'<li>… and {more} more (run.json lists them all)</li>' if more > 0 else ''}</ul>")


def _cache_folder(run_dir: str) -> Path | None:
    """Where recomputed samples are kept between reports: beside the records of a run on
    this disk (none for an object-store run)."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.store.records import is_uri

    return None if is_uri(str(run_dir)) else Path(str(run_dir)) / "cache" / "samples"


def grid_html(run_dir: str, table: pl.DataFrame, records: pl.LazyFrame, options: GridOptions = GridOptions(),
              log: Callable[[str], None] = print) -> str:
    """The sample grid as one self-contained HTML fragment (its own CSS, images embedded);
    never raises for missing images or models: it says why instead."""
    def note(text: str, body: str = "") -> str:
        return f"<div id=sample-grid>{_CSS}<p class=note>{html.escape(text)}</p>{body}</div>"

    if options.n_images == 0 and not options.images:
        return note("no sample grid asked for (--grid-images 0)")
    model, metric = _model_and_metric(table)
    if model is None:
        return note("a full-reference run draws no SR samples: no sample grid")
    errors = _errors_html(_error_images(records, model))
    images, downscalers, seeds, notes = _choose(records, table, model, metric, options)
    samples = RunSamples(run_dir, records, options.sources, device=options.device, cache=_cache_folder(run_dir))
    lead = (f"{model}, {metric}: samples recomputed from their seeds on the run's worker path; "
            f"{samples.origin}; a file is shown only if its SHA-256 is the records' hr_sha256. "
            "Each SR tile shows its recomputed value and whether it equals the record exactly."
            + "".join(f" {n}." for n in notes))
    if not images or not downscalers or not seeds:
        return note(lead + " Nothing to show.", errors)
    shown = []
    for image in images:
        try:
            found = samples.recompute(image, model, downscalers, [metric], seeds)
        except Exception as exc:  # noqa: BLE001 - e.g. the model cannot be built here: say so, write the page
            found = ImageSamples(image, [], why=f"not recomputed: {type(exc).__name__}: {exc}")
        item = _Shown(found)
        if found.why is None and found.hr is None:
            found.why = "no samples: " + "; ".join(sorted({str(r.error) for r in found.records if r.error}))
        if found.why is None:
            lr = next(iter(found.lr.values()), None)
            item.scale = found.hr.shape[0] // lr.shape[0] if lr is not None else 1
            item.crop = _crop_for(found, item.scale, options)
        shown.append(item)
        log(f"grid: {image}: {len(found.sr)} samples shown, {samples.computed} recomputed so far"
            + (f" ({found.why})" if found.why else ""))
    crops = [difference_map(i.found.hr[i.crop.y:i.crop.y + i.crop.size, i.crop.x:i.crop.x + i.crop.size],
                            sr[i.crop.y:i.crop.y + i.crop.size, i.crop.x:i.crop.x + i.crop.size])
             for i in shown if i.crop is not None for sr in i.found.sr.values()]
    # the 98th percentile, so a few extreme pixels (nearest's blocks) do not darken every map
    top = _nice_ceiling(float(np.percentile(np.concatenate([c.ravel() for c in crops]), 98))) if crops else 0.1
    labels = downscaler_labels(table)
    body = (_colour_bar(top) if crops else "") + "".join(_image_block(i, downscalers, seeds, top, labels)
                                                         for i in shown)
    return note(lead, body + errors)
