"""The supplement's Figure 3 for a report: HR, LR, SR samples and difference maps of a few
images, recomputed from the records' seeds (records hold no pixels; see `idard.bench.report.page`).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

#: Most downscalers shown per image in the sample grid (the page stays readable).
GRID_DOWNSCALERS = 4
#: Records and recomputation may differ by this much (8-bit rounding paths) without a flag.
MATCH_TOLERANCE = 2e-3


# ------------------------------------------------------------------------ sample grid

@dataclasses.dataclass(frozen=True)
class Tile:
    label: str
    uri: str
    value: float | None = None  # recomputed distortion
    recorded: float | None = None  # the record's value for the same key


@dataclasses.dataclass(frozen=True)
class GridRow:
    image: str
    downscaler: str
    tiles: list[Tile]


def _thumb(pixels: np.ndarray, width: int = 200, nearest: bool = False) -> str:
    from PIL import Image

    from idard.measure.images import to_uint8

    image = Image.fromarray(to_uint8(np.clip(pixels, 0, 1).astype(np.float32)))
    height = max(1, round(image.height * width / image.width))
    image = image.resize((width, height), Image.NEAREST if nearest else Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _difference_map(hr: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """|SR - HR| averaged over channels, on the inferno colour map (0 -> black, >= 0.25 -> white-yellow)."""
    import matplotlib

    diff = np.abs(sr - hr).mean(axis=2)
    return matplotlib.colormaps["inferno"](np.clip(diff / 0.25, 0, 1))[..., :3].astype(np.float32)


def _grid_downscalers(table: pl.DataFrame, model: str, limit: int) -> list[str]:
    """Which downscalers the grid shows: bicubic and nearest when present, then the others
    from the most to the least information lost."""
    ranked = (table.filter((pl.col("model") == model) & pl.col("ida_rd").is_not_null())
              .sort("ida_rd", descending=True)["downscaler"].unique(maintain_order=True).to_list())
    first = [d for d in ("bicubic", "nearest") if d in ranked]
    return (first + [d for d in ranked if d not in first])[:limit]


def sample_grid(run_dir: str, table: pl.DataFrame, records: pl.LazyFrame, n_images: int, n_samples: int,
                log: Callable[[str], None] = print) -> tuple[list[GridRow], str]:
    """Figure 3's rows, recomputed from the records' seeds; and a note (why none, or what)."""
    import torch
    import yaml

    from idard.bench.checks import read_run_file
    from idard.bench.fullref import PREFIX
    from idard.bench.sources import list_images
    from idard.measure.distortions import DISTORTIONS
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.images import crop_to_multiple, decode_image, quantize_8bit, to_tensor
    from idard.measure.models import MODELS, Samples

    if n_images == 0:
        return [], "no sample grid asked for (--grid-images 0)"
    models = [m for m in table["model"].unique(maintain_order=True).to_list() if not str(m).startswith(PREFIX)]
    if not models:
        return [], "a full-reference run draws no SR samples: no sample grid"
    model_id = models[0]
    metric_id = "lpips-alex" if "lpips-alex" in table["metric"].to_list() else table["metric"][0]
    try:
        suite = yaml.safe_load(read_run_file(run_dir, "suite.yaml"))
        refs = list_images(list(suite["images"]), Path(suite.get("base_dir", ".")))
        model = MODELS.create(model_id)
        metric = DISTORTIONS.create(metric_id)
    except Exception as exc:  # noqa: BLE001 - the page is still worth writing without the grid
        return [], f"sample grid not recomputed: {type(exc).__name__}: {exc}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    metric.to(device)
    # Only the few images shown are read whole: a run's records may be tens of millions.
    scored = records.filter((pl.col("model") == model_id) & (pl.col("metric") == metric_id))
    names = set(scored.select(pl.col("image").unique()).collect(engine="streaming")["image"].to_list())
    seeds = sorted(scored.select(pl.col("seed").unique()).collect(engine="streaming")["seed"].to_list())[:n_samples]
    scale = int(model.scale)
    chosen = [r for r in refs if r.name in names][:n_images]
    held = scored.filter(pl.col("image").is_in([r.name for r in chosen])).select(
        "image", "downscaler", "seed", "value").collect()
    rows: list[GridRow] = []
    for ref in chosen:
        hr = crop_to_multiple(decode_image(ref.read(), name=ref.name, source=ref.location), scale)
        hr_tensor = to_tensor(hr.pixels, device)
        for ds_id in _grid_downscalers(table, model_id, GRID_DOWNSCALERS):
            lr = quantize_8bit(DOWNSCALERS.create(ds_id)(hr, scale))
            with torch.inference_mode():
                out = model.sample(to_tensor(lr, device), seeds)
                sr = (out.images if isinstance(out, Samples) else out)[0]
                sr = torch.round(sr.clamp(0, 1) * 255) / 255  # as scored (README: SR samples are 8-bit)
                values = metric(hr_tensor, sr).tolist()
            recorded = {s: v for s, v in held.filter((pl.col("image") == ref.name) & (pl.col("downscaler") == ds_id))
                        .select("seed", "value").iter_rows()}
            tiles = [Tile("HR", _thumb(hr.pixels)), Tile(f"LR x{scale} ({ds_id})", _thumb(lr, nearest=True))]
            pixels = [s.permute(1, 2, 0).cpu().numpy() for s in sr]
            tiles += [Tile(f"SR{k + 1} (seed {s})", _thumb(p), values[k], recorded.get(s))
                      for k, (s, p) in enumerate(zip(seeds, pixels))]
            tiles += [Tile(f"MD{k + 1}", _thumb(_difference_map(hr.pixels, p)), values[k], recorded.get(s))
                      for k, (s, p) in enumerate(zip(seeds, pixels))]
            rows.append(GridRow(ref.name, ds_id, tiles))
            log(f"grid: {ref.name} / {ds_id}: {len(seeds)} samples recomputed")
    return rows, (f"{model_id}, {metric_id}: samples recomputed from their seeds {seeds}; each tile shows the "
                  "recomputed value and, in brackets, the record's")



def grid_html(rows: Sequence[GridRow], note: str) -> str:
    if not rows:
        return f"<p class=note>{html.escape(note)}</p>"
    out = [f"<p class=note>{html.escape(note)}</p><table class=grid id=sample-grid>"]
    for row in rows:
        cells = []
        for tile in row.tiles:
            badge = ""
            if tile.value is not None:
                mismatch = tile.recorded is not None and abs(tile.value - tile.recorded) > MATCH_TOLERANCE
                badge = (f"<span>{tile.value:.3f}" + (f" [{tile.recorded:.3f}]" if tile.recorded is not None else "")
                         + (" ≠" if mismatch else "") + "</span>")
            cells.append(f"<td><div class=tile><img src='{tile.uri}' alt='{html.escape(tile.label)}' width=200>{badge}"
                         f"</div><br>{html.escape(tile.label)}</td>")
        out.append(f"<tr><td class=l><b>{html.escape(row.image)}</b><br>{html.escape(row.downscaler)}</td>"
                   + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"
