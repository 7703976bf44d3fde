"""``subset``: draw a demographically balanced subset of labelled face images (the
paper's supplement, Sec. 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from idard.bench.cli.shared import UsageError, app, console, user_errors


@app.command()
def subset(
    labels: Annotated[Path, typer.Argument(help="CSV with one row per image: image name, age, gender, ethnicity.")],
    size: Annotated[int, typer.Option(min=1, help="Number of images in the subset.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the draw (same labels and seed, same subset).")] = 0,
    out: Annotated[Path, typer.Option(help="CSV of the chosen images and their groups.")] = Path("subset.csv"),
    images: Annotated[Path | None, typer.Option(help="Folder holding the labelled images: copy the chosen ones...")] = None,
    copy_to: Annotated[Path | None, typer.Option(help="...into this folder (an image source for a suite).")] = None,
    image_column: Annotated[str, typer.Option(help="Column of the image name.")] = "image",
    age_column: Annotated[str, typer.Option(help="Column of the age (years, or minor/youth/middle/senior).")] = "age",
    gender_column: Annotated[str, typer.Option(help="Column of the gender (male/female, man/woman).")] = "gender",
    ethnicity_column: Annotated[str, typer.Option(help="Column of the ethnicity (asian/white/black; others are left out).")] = "ethnicity",
) -> None:
    """Draw an age-, gender- and ethnicity-balanced subset (supplement Sec. 4, Table 8).

    4 age groups x 3 ethnicities x 2 genders = 24 groups filled as evenly as the labels
    allow; prints the paper's Table 8 row with the joint entropy (ideal log2 24 = 4.585 bits).
    """
    # lazy: start-up time
    from idard.bench.suite.subset import IDEAL_ENTROPY, Columns, Statistics, copy_images, draw_subset, read_labels, write_subset

    with user_errors():
        if (images is None) != (copy_to is None):
            raise UsageError("--images and --copy-to go together: where the labelled images are, and where to copy the subset")
        labelled, dropped = read_labels(labels, Columns(image_column, age_column, gender_column, ethnicity_column))
        chosen = draw_subset(labelled, size, seed)
        stats = Statistics.of(chosen)
        write_subset(chosen, out)
        console.print(f"{len(labelled)} labelled images usable" + (
            "; left out: " + ", ".join(f"{n} ({reason})" for reason, n in dropped.items()) if dropped else ""),
            highlight=False)
        console.print(stats.table8_row(), highlight=False, end="")
        console.print(f"joint entropy {stats.entropy:.4f} bits (fully balanced: {IDEAL_ENTROPY:.4f}); "
                      f"{sum(v > 0 for v in stats.groups.values())} of 24 groups present; subset: {out}",
                      highlight=False)
        if images is not None and copy_to is not None:
            console.print(f"copied {copy_images(chosen, images, copy_to)} images to {copy_to}", highlight=False)
