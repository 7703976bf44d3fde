"""StyleGAN FFHQ 1024 as a PULSE generator: PULSE's latent parameterisation around it.

PULSE does not search StyleGAN's z space. It optimises 18 vectors of 512 values on the
sphere and maps each through the Gaussian fit of the mapping network's output, undoing
its final leaky ReLU: ``w = LeakyReLU(0.2)(latent * std + mean)``, where mean and std are
those of ``LeakyReLU(5)(mapping(z))`` over a million z. GEOCROSS acts on those w.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from idard.measure.models.pulse.generators import GeneratorWeightsError, LatentGenerator, load_tensors
from idard.measure.models.pulse.stylegan import StyleGANGenerator


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
            mean, std = generator.gaussian_fit()
        else:
            fit = load_tensors(gaussian_fit)
            if not isinstance(fit, dict) or not {"mean", "std"} <= set(fit):
                raise GeneratorWeightsError(f"{gaussian_fit}: expected a dict with 'mean' and 'std' tensors")
            mean, std = fit["mean"], fit["std"]
        return cls(generator, mean, std)

    def noise_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(shape) for shape in self.generator.noise_shapes()]

    def latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(latent * self.std + self.mean, negative_slope=0.2)

    def synthesize(self, latent_in: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        return (self.generator.synthesize(latent_in, noise) + 1) / 2
