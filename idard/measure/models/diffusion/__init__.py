"""Diffusion SR decoders, split as diffusers splits them: scheduler, sampler, denoiser.

* ``schedule``: `ResShiftSchedule`, the residual-shifting chain's arithmetic (no network,
  no randomness).
* ``sampler``: `sample_residual_shift`, the only place noise is drawn (per seed), batching
  bounded by ``max_batch``; any `Denoiser` in any `Space` (pixels or a latent space).
* ``tiny``: the embedded pixel-space denoiser; ``training``: its trainer.
* ``swin_unet`` / ``vqgan`` / ``published``: ResShift's published Swin-UNet denoiser and
  VQGAN-f4 autoencoder, loaded by their keys.
* ``pipelines``: diffusers' LDM and Stable Diffusion x4 upscalers behind the same contract.
* ``model``: the registered plug-ins ``resshift`` and ``resshift-tiny-4x``.
"""

from __future__ import annotations

import importlib
from typing import Any

# The plug-ins register on import; they load torch only when they compute.
from idard.measure.models.diffusion.model import ResShift, ResShiftTiny4x
from idard.measure.models.diffusion.pipelines import LDMSuperResolution, StableDiffusionUpscale

#: Names imported from their module on first use (PEP 562): these modules import torch.
_LAZY = {"PixelSpace": "sampler", "draw_noise": "sampler", "sample_residual_shift": "sampler",
         "RESSHIFT_V1": "schedule", "RESSHIFT_V3": "schedule", "ResShiftSchedule": "schedule"}

__all__ = ["RESSHIFT_V1", "RESSHIFT_V3", "LDMSuperResolution", "PixelSpace", "StableDiffusionUpscale", "ResShift",
           "ResShiftSchedule", "ResShiftTiny4x", "draw_noise", "sample_residual_shift"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
