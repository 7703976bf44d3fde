"""The measure's single steps on real files: ``downscale``, ``upscale``, ``distortion``
check each part of IDA-RD alone; ``faces`` writes HR images for the offline PULSE suite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from idard.bench.cli.shared import UsageError, app, console, err_console, user_errors


def _outputs(inputs: list[Path], out: Path, suffix: str = ".png") -> list[Path]:
    if len(inputs) == 1 and out.suffix:
        return [out]
    return [out / f"{p.stem}{suffix}" for p in inputs]


def _inputs(path: Path) -> list[Path]:
    # lazy: start-up time
    from idard.measure.images import find_images

    if path.is_dir():
        found = find_images(path)
        if not found:
            raise UsageError(f"{path}: folder holds no images")
        return found
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    return [path]


@app.command()
def downscale(
    src: Annotated[Path, typer.Argument(help="HR image file or folder of images.")],
    out: Annotated[Path, typer.Argument(help="Output file (single input) or folder.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Downscaler spec, e.g. bicubic or 'blur(sigma=2)'.")] = "bicubic",
    scale: Annotated[int, typer.Option("--scale", "-s", min=1, help="Downscaling factor.")] = 4,
) -> None:
    """Downscale HR images (centre-cropped to a multiple of the scale) and save 8-bit PNGs."""
    # lazy: start-up time
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.images import crop_to_multiple, load_image, save_image

    with user_errors():
        downscaler = DOWNSCALERS.create(method)
        inputs = _inputs(src)
        for path, target in zip(inputs, _outputs(inputs, out)):
            loaded = load_image(path)
            hr = crop_to_multiple(loaded, scale)
            cropped = "" if (hr.width, hr.height) == (loaded.width, loaded.height) else (
                f"; centre-cropped {loaded.width}x{loaded.height} -> {hr.width}x{hr.height}, a multiple of {scale}")
            save_image(target, downscaler(hr, scale))
            console.print(f"{path} -> {target} ({downscaler.id}, x{scale}{cropped})", highlight=False, markup=False, soft_wrap=True)


@app.command()
def upscale(
    src: Annotated[Path, typer.Argument(help="LR image file or folder of images.")],
    out: Annotated[Path, typer.Argument(help="Output file (single input and seed) or folder.")],
    model: Annotated[str, typer.Option("--model", help="SR model spec.")] = "srflow-tiny-4x",
    seed: Annotated[list[int], typer.Option("--seed", help="Sample seed; repeat for several samples.")] = [0],  # noqa: B006
    heat: Annotated[float | None, typer.Option("--heat", help="Sampling temperature (overrides the model spec).")] = None,
    device: Annotated[str | None, typer.Option(help="torch device; default cuda if available.")] = None,
) -> None:
    """Draw SR samples of LR images; one PNG per (image, seed), converted to 8 bits as records are scored."""
    # lazy: start-up time
    import torch

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import load_image, save_image, to_pixels, to_tensor
    from idard.measure.models import MODELS
    from idard.measure.sr_8bit import to_8bit_grid

    with user_errors():
        sr_model = MODELS.create(model, **({"heat": heat} if heat is not None else {}))
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        sr_model.to(dev)
        inputs = _inputs(src)
        single = len(inputs) == 1 and len(seed) == 1 and out.suffix
        if out.suffix and not single:
            err_console.print(f"note: {len(inputs)} image(s) x {len(seed)} seed(s) give several samples, so {out} is "
                              f"a folder: writing {out}/<image>_seed<k>.png", highlight=False, markup=False, soft_wrap=True)
        failed = 0
        for path in inputs:
            lr = load_image(path)
            with torch.inference_mode():
                samples = sr_model.sample(to_tensor(lr.pixels, dev), seed)[0]
            for k, s in enumerate(seed):
                target = out if single else out / f"{path.stem}_seed{s}.png"
                if not torch.isfinite(samples[k]).all():
                    err_console.print(f"{path} seed {s}: non-finite SR sample, not saved", highlight=False, soft_wrap=True)
                    failed += 1
                    continue
                # the one 8-bit conversion records are scored with (truncation, as the reference)
                save_image(target, to_pixels(to_8bit_grid(samples[k])))
                console.print(f"{path} -> {target} ({sr_model.id}, seed {s})", highlight=False, soft_wrap=True)
        if failed:
            raise typer.Exit(1)


@app.command()
def distortion(
    ref: Annotated[Path, typer.Argument(help="Reference (HR) image.")],
    dist: Annotated[Path, typer.Argument(help="Distorted (SR) image of the same size.")],
    metric: Annotated[str, typer.Option("--metric", help="lpips-alex, lpips-vgg, psnr, ssim or ms-ssim.")] = "lpips-alex",
) -> None:
    """Print the distortion between two images (a reference that downscale would crop is cropped alike)."""
    # lazy: start-up time
    from idard.measure.distortions import DISTORTIONS
    from idard.measure.images import crop_to_multiple, load_image, to_tensor

    with user_errors():
        scorer = DISTORTIONS.create(metric)
        a, b = load_image(ref), load_image(dist)
        scale = _crop_scale((a.width, a.height), (b.width, b.height))
        if scale is not None:
            # An SR sample of an HR image that `downscale` cropped to a multiple of the
            # scale: the reference gets the same centre crop, so the one-step chain works.
            err_console.print(f"note: {ref} centre-cropped {a.width}x{a.height} -> {b.width}x{b.height} (a multiple "
                              f"of {scale}, as downscale crops) to match {dist}", highlight=False, markup=False, soft_wrap=True)
            a = crop_to_multiple(a, scale)
        if a.pixels.shape != b.pixels.shape:
            raise UsageError(f"{dist}: size {b.width}x{b.height} differs from {ref} ({a.width}x{a.height}) "
                             "and is not its crop to a multiple of a scale")
        value = float(scorer(to_tensor(a.pixels), to_tensor(b.pixels))[0])
        print(repr(value))  # every digit: a record's value is compared exactly, not to 6 decimals


def _crop_scale(reference: tuple[int, int], other: tuple[int, int]) -> int | None:
    """The smallest scale whose crop to a multiple turns ``reference`` (w, h) into ``other``."""
    if reference == other:
        return None
    for scale in range(2, 65):
        if all(side - side % scale == target for side, target in zip(reference, other)):
            return scale
    return None


@app.command()
def faces(
    out: Annotated[Path, typer.Argument(help="Folder to write the PNG faces to (created).")],
    count: Annotated[int, typer.Option(min=1, help="Number of faces.")] = 16,
    seed_start: Annotated[int, typer.Option(min=0, help="First latent seed (held out from PULSE's starts).")] = 1_000_000,
    weights: Annotated[str | None, typer.Option(help="The DCGAN's weights.tar (default: the installed gan-face-generate).")] = None,
) -> None:
    """Write 64x64 faces made by the offline face DCGAN: HR images for the offline PULSE suite.

    A stand-in for a folder of aligned face photographs, for machines with no dataset: the
    faces come from the generator PULSE then inverts, from seeds its starts never use.
    """
    # lazy: start-up time
    from PIL import Image

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.images import to_uint8
    from idard.measure.models.pulse.generators import DCGANFaces, dcgan_faces_weights, generate_faces

    with user_errors():
        images = generate_faces(DCGANFaces(dcgan_faces_weights(weights)), range(seed_start, seed_start + count))
        out.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(range(seed_start, seed_start + count), images):
            Image.fromarray(to_uint8(image.permute(1, 2, 0).numpy())).save(out / f"face-{seed}.png")
        console.print(f"wrote {count} faces (seeds {seed_start}-{seed_start + count - 1}) to {out}", highlight=False, soft_wrap=True)
