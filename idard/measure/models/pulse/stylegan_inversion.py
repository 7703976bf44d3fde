"""StyleGAN FFHQ 1024 as a PULSE generator: PULSE's latent parameterisation around it.

PULSE does not search StyleGAN's z space. It optimises 18 vectors of 512 values on the
sphere and maps each through the Gaussian fit of the mapping network's output, undoing
its final leaky ReLU: ``w = LeakyReLU(0.2)(latent * std + mean)``, where mean and std are
those of ``LeakyReLU(5)(mapping(z))`` over a million z. GEOCROSS acts on those w.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from idard.measure.models.base import sha256_file
from idard.measure.models.pulse.generators import GeneratorWeightsError, LatentGenerator, load_tensors
from idard.measure.models.pulse.stylegan import StyleGANGenerator
from idard.measure.weights import atomic_path, cache_dir


def load_gaussian_fit(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` from a file holding a dict with those two tensors (PULSE's
    ``gaussian_fit.pt``, or a cache file written by `cached_gaussian_fit`)."""
    fit = load_tensors(path)
    if not isinstance(fit, dict) or not {"mean", "std"} <= set(fit):
        raise GeneratorWeightsError(f"{path}: expected a dict with 'mean' and 'std' tensors")
    return fit["mean"], fit["std"]


def gaussian_fit_cache(mapping: str | Path) -> Path:
    """Where the fit of the mapping file ``mapping`` is cached: named by the file's SHA-256,
    so a changed mapping file can never be paired with a stale fit."""
    return cache_dir() / "gaussian-fit" / f"{sha256_file(mapping)}.safetensors"


def cached_gaussian_fit(generator: StyleGANGenerator, mapping: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """`StyleGANGenerator.gaussian_fit`, computed once per mapping file and machine.

    A fit maps a million z: minutes on a CPU, seconds on a GPU, and otherwise paid by
    every actor that loads the model. The first actor writes it to the weights cache
    (atomically, so concurrent actors never read half a file); the rest read it. A cache
    that cannot be written only costs the time, with a warning.
    """
    path = gaussian_fit_cache(mapping)
    if path.is_file():
        return load_gaussian_fit(path)
    mean, std = generator.gaussian_fit()
    try:
        _save_atomic({"mean": mean, "std": std}, path)
    except OSError as exc:
        warnings.warn(f"could not cache the Gaussian fit at {path}: {exc}", stacklevel=2)
    return mean, std


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


class StyleGANInversion(LatentGenerator):
    """A `StyleGANGenerator` with PULSE's Gaussian-fit latent and [0, 1] output."""

    def __init__(self, generator: StyleGANGenerator, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.resolution = generator.config.resolution
        self.layers = generator.config.num_layers
        self.dim = generator.config.latent
        self.register_buffer("mean", mean.detach().clone().float().reshape(self.dim))
        self.register_buffer("std", std.detach().clone().float().reshape(self.dim))

    @classmethod
    def from_files(
        cls, mapping: str | Path, synthesis: str | Path, gaussian_fit: str | Path | None = None
    ) -> StyleGANInversion:
        """PULSE's two weight files; ``gaussian_fit`` (PULSE's ``gaussian_fit.pt``, a dict
        with ``mean`` and ``std``) saves fitting it again over a million mapped z."""
        generator = StyleGANGenerator.from_files(mapping, synthesis)
        if gaussian_fit is None:
            mean, std = cached_gaussian_fit(generator, mapping)
        else:
            mean, std = load_gaussian_fit(gaussian_fit)
        return cls(generator, mean, std)

    def noise_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(shape) for shape in self.generator.noise_shapes()]

    def latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(latent * self.std + self.mean, negative_slope=0.2)

    def synthesize(self, latent_in: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        return (self.generator.synthesize(latent_in, noise) + 1) / 2
