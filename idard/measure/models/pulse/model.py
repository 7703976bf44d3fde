"""The registered ``pulse`` SR model: GAN inversion behind the `SRModel` contract.

``pulse(generator=dcgan-faces, scale=8)`` inverts the offline 64x64 face DCGAN;
``pulse(generator=stylegan-ffhq, mapping=mapping.pt, synthesis=synthesis.pt, scale=32)``
the StyleGAN FFHQ 1024 model PULSE was published with. Every PULSE parameter (steps,
learning rate, eps, loss weights, trainable noise maps, stopping rule) is a spec parameter
and part of the model id, so records made with other settings never mix.

The K samples of an LR image are K random starts (one per seed); all samples of all LR
images in a call are optimised as one batch (``batch`` rows at a time), which is what
makes PULSE fast on a GPU: see `idard.measure.models.pulse.optimize`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS, ModelRuntime, Samples, sha256_file
from idard.measure.models.pulse.stop import StopRule
from idard.measure.registry import Plugin, SpecError
from idard.measure.weights import resolve_weights

if TYPE_CHECKING:
    import torch

    from idard.measure.models.pulse import generators, optimize
else:  # imported on first use: naming, listing and validating the plug-in needs no torch
    torch = lazy_import("torch")
    generators = lazy_import("idard.measure.models.pulse.generators")
    optimize = lazy_import("idard.measure.models.pulse.optimize")


GENERATORS = ("dcgan-faces", "stylegan-ffhq")


@MODELS.register("pulse")
@dataclasses.dataclass(frozen=True)
class Pulse(Plugin):
    """PULSE GAN-inversion SR (Menon et al. 2020): K random latent starts per LR image.

    ``generator``: ``dcgan-faces`` (64x64; ``weights`` = its weights.tar, default: the
    installed gan-face-generate package or $IDARD_DCGAN_FACES) or ``stylegan-ffhq``
    (1024x1024; ``mapping``, ``synthesis`` and optionally ``gaussian_fit`` files; without
    the last, the fit is computed once per mapping file and cached).
    ``scale``: the generator's resolution over the LR side. Optimisation defaults are the
    reference's; ``batch`` (rows per optimisation, 0 = all) does not change results.

    ``stop``: ``reference`` (default) is PULSE.py's rule (adamian98/pulse, lines 134-179):
    every sample runs all ``steps``, the returned image is the last step's, and a sample
    has converged when its lowest L2 over the steps is <= ``eps`` (the reference drops
    the others; idard returns them flagged). ``first-hit`` stops a sample at its first
    step with L2 <= eps and returns that image (cheaper; not the reference's rule).
    ``eps`` (2e-3) is where the L2 term stops pulling (it is clamped at eps) and the
    convergence test; ``eps=0`` sets no goal: samples carry no convergence flag.
    """

    generator: str = "dcgan-faces"
    scale: int = 8
    weights: str = dataclasses.field(default="", metadata={"path": "file"})
    mapping: str = dataclasses.field(default="", metadata={"path": "file"})
    synthesis: str = dataclasses.field(default="", metadata={"path": "file"})
    gaussian_fit: str = dataclasses.field(default="", metadata={"path": "file"})
    steps: int = 100
    lr: float = 0.4
    eps: float = 2e-3
    l2_weight: float = 100.0
    geocross_weight: float = 0.05
    trainable_noise: int = 5
    stop: StopRule = "reference"
    batch: int = dataclasses.field(default=0, metadata={"identity": False})
    _runtime: ModelRuntime = dataclasses.field(default_factory=ModelRuntime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise SpecError(f"pulse generator must be one of {', '.join(GENERATORS)}, got {self.generator!r}")
        if self.generator == "stylegan-ffhq" and not (self.mapping and self.synthesis):
            raise SpecError("pulse(generator=stylegan-ffhq) needs mapping=PATH and synthesis=PATH "
                            "(PULSE's mapping.pt and synthesis.pt)")
        if self.scale < 1 or self.batch < 0:
            raise SpecError(f"pulse needs scale >= 1 and batch >= 0, got scale={self.scale}, batch={self.batch}")
        try:
            self.settings
        except ValueError as exc:
            raise SpecError(str(exc)) from None

    @property
    def settings(self) -> optimize.PulseSettings:
        return optimize.PulseSettings(steps=self.steps, lr=self.lr, eps=self.eps, l2_weight=self.l2_weight,
                             geocross_weight=self.geocross_weight, trainable_noise=self.trainable_noise,
                             stop=self.stop)

    def weight_files(self) -> list[Path]:
        """The files this model reads (resolved), in a fixed order."""
        if self.generator == "dcgan-faces":
            return [resolve_weights(self.weights) if self.weights else generators.dcgan_faces_weights()]
        return [resolve_weights(ref) for ref in (self.mapping, self.synthesis, self.gaussian_fit) if ref]

    @property
    def weights_hash(self) -> str:
        """SHA-256 of the weights file, or of the files' hashes joined when there are several."""
        with self._runtime.lock:
            if self._runtime.sha256 is None:
                hashes = [sha256_file(path) for path in self.weight_files()]
                self._runtime.sha256 = hashes[0] if len(hashes) == 1 else hashlib.sha256(
                    ",".join(hashes).encode()).hexdigest()
            return self._runtime.sha256

    def _load(self) -> generators.LatentGenerator:
        files = self.weight_files()
        if self.generator == "dcgan-faces":
            return generators.DCGANFaces(files[0])
        from idard.measure.models.pulse.stylegan_inversion import StyleGANInversion

        return StyleGANInversion.from_files(*files)

    def to(self, device: torch.device | str) -> Pulse:
        with self._runtime.lock:
            device = torch.device(device)
            with torch.inference_mode(False):  # the generator's weights take part in autograd
                if self._runtime.loaded is None:
                    self._runtime.loaded = self._load()
                if self._runtime.device != device:
                    self._runtime.loaded.to(device)
                    self._runtime.device = device
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> Samples:
        """K = len(seeds) inversions per LR image; ``temperature`` has no meaning for PULSE."""
        self.to(lr.device)
        generator = self._runtime.loaded
        b, k = lr.shape[0], len(seeds)
        if lr.shape[-1] * self.scale != generator.resolution:
            raise ValueError(f"pulse x{self.scale} with a {generator.resolution}px generator needs "
                             f"{generator.resolution // self.scale}px LR images, got {lr.shape[-2]}x{lr.shape[-1]}")
        rows = lr.repeat_interleave(k, dim=0)
        row_seeds = [int(s) for _ in range(b) for s in seeds]
        step = self.batch or len(row_seeds)
        parts = [optimize.invert(generator, rows[i : i + step], row_seeds[i : i + step], self.settings)
                 for i in range(0, len(row_seeds), step)]
        images = torch.cat([p.images for p in parts]).view(b, k, 3, generator.resolution, generator.resolution)
        if self.eps == 0:  # no goal to reach: every sample runs all steps, none "unconverged"
            return images
        converged = torch.cat([p.converged for p in parts]).view(b, k)
        return Samples(images=images, converged=converged)
