"""diffusers' super-resolution pipelines behind idard's `SRModel` contract.

* ``diffusers-ldm-sr(model=...)``: `LDMSuperResolutionPipeline` (CompVis'
  ``ldm-super-resolution-4x-openimages``): a UNet on [noise latents, LR image] and a VQ
  decoder; DDIM by default.
* ``diffusers-sd-upscale(model=..., noise_level=20, guidance=1.0)``:
  `StableDiffusionUpscalePipeline` (``stabilityai/stable-diffusion-x4-upscaler``), run with
  an empty prompt. ``noise_level`` is the noise it adds to the LR before conditioning on it
  (an extra degradation, so part of the id); ``guidance`` is classifier-free guidance, which
  with an empty prompt and no negative prompt mixes two identical predictions (1.0 skips it).

``model`` is a local folder saved by ``save_pretrained`` (found as weights are, see
`idard.measure.weights`), or a hub id when the machine is online; the folder's files are
hashed. Per-seed reproducibility: each (image, seed) row gets its own ``torch.Generator``
seeded with the seed (diffusers draws a row's noise from its own generator when given a
list), the scheduler's ``eta`` is fixed at 0 for the LDM pipeline because that pipeline
does not pass its generators to the scheduler (``eta > 0`` would draw from the global RNG).
Input hazards avoided: PIL input is Lanczos-resized to a multiple of 32 and tensors are
resized to the VAE's multiple, so LR images are passed as tensors, reflect-padded to that
multiple and the output cropped; the LDM pipeline takes tensors in [-1, 1], the upscaler
in [0, 1] (it normalises a tensor unless its minimum is negative, so [-1, 1] input that
happens to be non-negative would be normalised twice). The safety checker is not loaded:
it would replace samples by black images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS, ModelRuntime, sha256_file
from idard.measure.registry import Plugin, SpecError
from idard.measure.weights import cache_dir

if TYPE_CHECKING:
    import torch
    from torch.nn import functional as F

    from idard.measure.models.diffusion import sampler
else:  # imported on first use: naming, listing and validating the plug-in needs no torch
    torch = lazy_import("torch")
    F = lazy_import("torch.nn.functional")
    sampler = lazy_import("idard.measure.models.diffusion.sampler")


def _local_or_hub(ref: str) -> tuple[str, Path | None]:
    """A folder path (as given, or by name in the weights cache) or a hub id."""
    for path in (Path(ref).expanduser(), cache_dir() / ref):
        if path.is_dir():
            return str(path), path
    return ref, None


class _Pipeline(Plugin):
    model: str
    steps: int
    max_batch: int
    _runtime: ModelRuntime

    scale_factor = 4

    def _load_pipeline(self, where: str) -> object:
        raise NotImplementedError

    def _run(self, pipe: object, lr: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError

    def _multiple(self, pipe: object) -> int:
        return 1

    @property
    def scale(self) -> int:
        return self.scale_factor

    def weight_files(self) -> list[Path]:
        _, folder = _local_or_hub(self.model)
        if folder is None:
            return []
        return sorted(p for p in folder.rglob("*") if p.is_file())

    @property
    def weights_hash(self) -> str:
        """SHA-256 over the folder's files (relative name and content hash, sorted); for a
        hub id not yet downloaded, of the id itself."""
        rt = self._runtime
        with rt.lock:
            if rt.sha256 is None:
                _, folder = _local_or_hub(self.model)
                if folder is None:
                    rt.sha256 = hashlib.sha256(f"hub:{self.model}".encode()).hexdigest()
                else:
                    parts = [f"{p.relative_to(folder)}:{sha256_file(p)}" for p in self.weight_files()]
                    rt.sha256 = hashlib.sha256("\n".join(parts).encode()).hexdigest()
            return rt.sha256

    def pipeline(self, device: torch.device | str | None = None) -> object:
        rt = self._runtime
        with rt.lock:
            dev = torch.device(device) if device is not None else (rt.device or torch.device("cpu"))
            if rt.loaded is None:
                where, _ = _local_or_hub(self.model)
                pipe = self._load_pipeline(where)
                pipe.set_progress_bar_config(disable=True)
                rt.loaded = pipe
            if rt.device != dev:
                rt.loaded.to(dev)
                rt.device = dev
            return rt.loaded

    def to(self, device: torch.device | str) -> "_Pipeline":
        self.pipeline(device)
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor:
        if temperature is not None:
            raise ValueError(f"{self.id} has no temperature")
        pipe = self.pipeline(lr.device)
        seeds = [int(s) for s in seeds]
        b, _, h, w = lr.shape
        s = self.scale_factor
        padded = sampler.pad_to_multiple(lr.float(), self._multiple(pipe))
        rows = [(i, k) for i in range(b) for k in range(len(seeds))]
        out = []
        for start in range(0, len(rows), self.max_batch):
            part = rows[start : start + self.max_batch]
            images = padded[[i for i, _ in part]]
            gens = [torch.Generator(device="cpu").manual_seed(seeds[k]) for _, k in part]
            out.append(self._run(pipe, images, gens)[..., : h * s, : w * s].float())
        return torch.cat(out).reshape(b, len(seeds), 3, h * s, w * s)


@MODELS.register("diffusers-ldm-sr")
@dataclasses.dataclass(frozen=True)
class LDMSuperResolution(_Pipeline):
    """diffusers' LDMSuperResolutionPipeline (4x), from a local folder or a hub id."""

    model: str = "CompVis/ldm-super-resolution-4x-openimages"
    steps: int = 100
    max_batch: int = dataclasses.field(default=16, metadata={"identity": False})
    _runtime: ModelRuntime = dataclasses.field(default_factory=ModelRuntime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.max_batch < 1:
            raise SpecError("diffusers-ldm-sr needs steps >= 1 and max_batch >= 1")

    def _load_pipeline(self, where: str) -> object:
        from diffusers import LDMSuperResolutionPipeline

        return LDMSuperResolutionPipeline.from_pretrained(where)

    def _multiple(self, pipe: object) -> int:
        return 2 ** (len(pipe.unet.config.block_out_channels) - 1)  # the UNet halves this often

    def _run(self, pipe: object, lr: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        # The pipeline's latents are LR-sized: its VQ decoder does the 4x.
        out = pipe(image=lr * 2 - 1, num_inference_steps=self.steps, eta=0.0, generator=generators,
                   output_type="pt").images
        return out


@MODELS.register("diffusers-sd-upscale")
@dataclasses.dataclass(frozen=True)
class StableDiffusionUpscale(_Pipeline):
    """diffusers' StableDiffusionUpscalePipeline (x4), empty prompt."""

    model: str = "stabilityai/stable-diffusion-x4-upscaler"
    steps: int = 75
    noise_level: int = 20
    guidance: float = 1.0
    max_batch: int = dataclasses.field(default=8, metadata={"identity": False})
    _runtime: ModelRuntime = dataclasses.field(default_factory=ModelRuntime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.max_batch < 1 or not 0 <= self.noise_level <= 350:
            raise SpecError("diffusers-sd-upscale needs steps >= 1, max_batch >= 1 and 0 <= noise_level <= 350")

    def _load_pipeline(self, where: str) -> object:
        from diffusers import StableDiffusionUpscalePipeline

        return StableDiffusionUpscalePipeline.from_pretrained(where, safety_checker=None, feature_extractor=None,
                                                              watermarker=None)

    def _multiple(self, pipe: object) -> int:
        return math.lcm(pipe.vae_scale_factor, 2 ** (len(pipe.unet.config.block_out_channels) - 1))

    def _run(self, pipe: object, lr: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        out = pipe(prompt=[""] * lr.shape[0], image=lr, num_inference_steps=self.steps,
                   guidance_scale=self.guidance, noise_level=self.noise_level, generator=generators,
                   output_type="pt").images
        return out
