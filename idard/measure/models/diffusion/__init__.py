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

from idard.measure.models.diffusion.model import ResShift, ResShiftTiny4x
from idard.measure.models.diffusion.pipelines import LDMSuperResolution, StableDiffusionUpscale
from idard.measure.models.diffusion.sampler import PixelSpace, draw_noise, sample_residual_shift
from idard.measure.models.diffusion.schedule import RESSHIFT_V1, RESSHIFT_V3, ResShiftSchedule

__all__ = ["RESSHIFT_V1", "RESSHIFT_V3", "LDMSuperResolution", "PixelSpace", "StableDiffusionUpscale", "ResShift", "ResShiftSchedule", "ResShiftTiny4x",
           "draw_noise", "sample_residual_shift"]
