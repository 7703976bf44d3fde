"""The registered diffusion SR models: ``resshift(...)`` and the embedded ``resshift-tiny-4x``.

Both are one residual-shifting chain (`ResShiftSchedule`) sampled by one sampler
(`sample_residual_shift`): they differ only in the denoiser and the space the chain runs in.

* ``resshift(weights='resshift_realsrx4_s4_v3.pth', autoencoder='autoencoder_vq_f4.pth')``:
  the authors' published 4x real-SR checkpoints (Swin-UNet denoiser in the latent space of
  their VQGAN-f4). The defaults are the v3 (journal, 4-step) chain; the 15-step v1/v2
  checkpoints need ``steps=15, min_noise_level=0.04`` (``configs/realsr_swinunet_realesrgan256.yaml``).
  A checkpoint whose published file name states its step count (``_s15_``, ``_s4_``) is
  refused with another ``steps``: its denoiser was trained for that chain only.
* ``resshift-tiny-4x``: idard's embedded model (``idard/weights/RESSHIFT_MODEL_CARD.md``);
  its chain is stored in the weights file, so the file's hash covers it.

Every parameter that changes samples is a field (so it is in the model id) or inside a
hashed weights file; ``max_batch`` bounds rows per denoiser call and changes nothing else,
so it is left out of the id.

Precision: ``resshift`` runs float32 by default, where the authors' inference script runs
under fp16 autocast (ResShift ``inference_resshift.py`` line 176 ``use_amp=True``;
``sampler.py`` lines 185-216 wrap each chain in ``torch.cuda.amp.autocast``).
``precision='float16'`` or ``'bfloat16'`` runs the networks under ``torch.autocast`` with
that type (meant for GPUs; CPUs run it too, slowly); the noise and the chain's arithmetic
stay float32, so a sample is still a function of its seed. It is part of the id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS, ModelRuntime, sha256_file
from idard.measure.registry import Plugin, SpecError
from idard.measure.weights import WeightsNotFound, resolve_weights

if TYPE_CHECKING:
    import torch

    from idard.measure.models.diffusion import checkpoint, sampler
    from idard.measure.models.diffusion import schedule as schedules
else:  # imported on first use: naming, listing and validating the plug-in needs no torch
    torch = lazy_import("torch")
    checkpoint = lazy_import("idard.measure.models.diffusion.checkpoint")
    sampler = lazy_import("idard.measure.models.diffusion.sampler")
    schedules = lazy_import("idard.measure.models.diffusion.schedule")

WEIGHTS_DIR = Path(__file__).resolve().parents[3] / "weights"
TINY_4X_WEIGHTS = WEIGHTS_DIR / "resshift-tiny-4x.safetensors"
_STEPS_IN_NAME = re.compile(r"_s(\d+)(?:_|\.)")
#: ``precision`` values: the name of the networks' autocast dtype in torch (None: plain
#: float32). Names, not dtypes, so that naming the plug-in imports no torch.
PRECISIONS: dict[str, str | None] = {"float32": None, "float16": "float16", "bfloat16": "bfloat16"}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The networks' precision as a context: nothing for float32, else ``torch.autocast``."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=getattr(torch, dtype))


@dataclasses.dataclass
class _Loaded:
    denoiser: torch.nn.Module
    schedule: schedules.ResShiftSchedule
    space: sampler.Space
    multiple: int
    scale: int


class _DiffusionModel(Plugin):
    """Shared plumbing: lazy loading once per process and device, hashing, sampling."""

    max_batch: int
    _runtime: ModelRuntime
    precision = "float32"

    def weight_files(self) -> list[Path]:
        raise NotImplementedError

    def _load(self, device: torch.device) -> _Loaded:
        raise NotImplementedError

    def _resolve(self, ref: str) -> Path:
        try:
            return resolve_weights(ref)
        except WeightsNotFound as exc:
            raise checkpoint.DiffusionWeightsError(ref, str(exc).removeprefix(f"{ref}: ")) from None

    @property
    def weights_hash(self) -> str:
        """SHA-256 of the weights file, or of the files' hashes joined when there are several."""
        rt = self._runtime
        with rt.lock:
            if rt.sha256 is None:
                hashes = [sha256_file(p) for p in self.weight_files()]
                rt.sha256 = hashes[0] if len(hashes) == 1 else hashlib.sha256(",".join(hashes).encode()).hexdigest()
            return rt.sha256

    def loaded(self, device: torch.device | str | None = None) -> _Loaded:
        rt = self._runtime
        with rt.lock:
            dev = torch.device(device) if device is not None else (rt.device or torch.device("cpu"))
            if rt.loaded is None or rt.device != dev:
                rt.loaded = self._load(dev)
                rt.device = dev
            return rt.loaded  # type: ignore[return-value]

    @property
    def scale(self) -> int:
        return self.loaded().scale

    def to(self, device: torch.device | str) -> "_DiffusionModel":
        self.loaded(device)
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor:
        """Samples (B, K, 3, h*scale, w*scale). ``temperature`` must be None: a diffusion
        chain has no temperature (its noise levels are the schedule, part of the id)."""
        if temperature is not None:
            raise ValueError(f"{self.id} has no temperature; its noise levels are set by its schedule")
        m = self.loaded(lr.device)
        with autocast(lr.device, self.precision):
            return sampler.sample_residual_shift(m.denoiser, m.schedule, lr.to(torch.float32), seeds, m.scale,
                                                 space=m.space, max_batch=self.max_batch, multiple=m.multiple)


@MODELS.register("resshift-tiny-4x")
@dataclasses.dataclass(frozen=True)
class ResShiftTiny4x(_DiffusionModel):
    """Embedded 4x diffusion SR (ResShift chain, small pixel-space denoiser; smoke runs only)."""

    weights: str = str(TINY_4X_WEIGHTS)
    max_batch: int = dataclasses.field(default=64, metadata={"identity": False})
    _runtime: ModelRuntime = dataclasses.field(default_factory=ModelRuntime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise SpecError(f"resshift-tiny-4x max_batch must be >= 1, got {self.max_batch}")

    def weight_files(self) -> list[Path]:
        return [self._resolve(self.weights)]

    def _load(self, device: torch.device) -> _Loaded:
        net, schedule = checkpoint.load_tiny(self.weight_files()[0])
        return _Loaded(net.to(device), schedule, sampler.PixelSpace(), net.multiple, net.config.scale)


@MODELS.register("resshift")
@dataclasses.dataclass(frozen=True)
class ResShift(_DiffusionModel):
    """ResShift (Yue et al. 2023) from the authors' published 4x checkpoints.

    ``weights``: the denoiser (``resshift_realsrx4_s4_v3.pth``, ``..._s15_v1.pth``, ...);
    ``autoencoder``: ``autoencoder_vq_f4.pth``; the chain: ``steps``, ``kappa``,
    ``min_noise_level``, ``etas_end``, ``power`` (defaults: the v3 checkpoint's);
    ``precision``: float32 (default), or float16/bfloat16 autocast as the authors' inference.
    """

    weights: str
    autoencoder: str = "autoencoder_vq_f4.pth"
    steps: int = 4
    kappa: float = 2.0
    min_noise_level: float = 0.2
    etas_end: float = 0.99
    power: float = 0.3
    precision: str = "float32"
    max_batch: int = dataclasses.field(default=64, metadata={"identity": False})
    _runtime: ModelRuntime = dataclasses.field(default_factory=ModelRuntime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.weights:
            raise SpecError("resshift needs weights='resshift_realsrx4_s4_v3.pth' (the denoiser checkpoint)")
        if self.max_batch < 1:
            raise SpecError(f"resshift max_batch must be >= 1, got {self.max_batch}")
        if self.precision not in PRECISIONS:
            raise SpecError(f"resshift precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not all(math.isfinite(v) for v in (self.kappa, self.min_noise_level, self.etas_end, self.power)):
            raise SpecError("resshift schedule parameters must be finite numbers")
        try:
            self.schedule  # noqa: B018 - validates the chain now, not on a worker
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        named = _STEPS_IN_NAME.search(Path(self.weights).name)
        if named and int(named.group(1)) != self.steps:
            raise SpecError(f"resshift weights {self.weights!r} were trained for a {named.group(1)}-step chain; "
                            f"got steps={self.steps} (the 15-step v1/v2 checkpoints need steps=15, "
                            "min_noise_level=0.04)")

    @property
    def scale(self) -> int:
        """4: every published ResShift SR checkpoint is 4x (known without reading 0.7 GB)."""
        return 4

    @property
    def schedule(self) -> schedules.ResShiftSchedule:
        return schedules.ResShiftSchedule(steps=self.steps, kappa=self.kappa, min_noise_level=self.min_noise_level,
                                etas_end=self.etas_end, power=self.power, normalize="latent")

    def weight_files(self) -> list[Path]:
        return [self._resolve(self.weights), self._resolve(self.autoencoder)]

    def _load(self, device: torch.device) -> _Loaded:
        from idard.measure.models.diffusion.published import load_published

        denoiser_path, autoencoder_path = self.weight_files()
        denoiser, space = load_published(denoiser_path, autoencoder_path, device)
        return _Loaded(denoiser, self.schedule, space, denoiser.multiple, 4)
