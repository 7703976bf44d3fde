"""The residual-shifting Markov chain of ResShift (Yue et al., NeurIPS 2023; TPAMI 2024).

The chain moves from the HR image x0 to its upsampled LR y by shifting the residual
e0 = y - x0 and adding noise (arithmetic learned from ``models/gaussian_diffusion.py`` of
github.com/zsyOAOA/ResShift: ``get_named_eta_schedule`` lines 32-66, ``GaussianDiffusion``
``__init__``, ``q_sample``, ``q_posterior_mean_variance``, ``prior_sample`` and
``_scale_input``, about lines 107-230 and 517-610):

    q(x_t | x0, y)        = N(x0 + eta_t (y - x0), kappa^2 eta_t I)
    q(x_{t-1} | x_t, x0)  = N(eta_{t-1}/eta_t x_t + alpha_t/eta_t x0,
                              kappa^2 eta_{t-1}/eta_t alpha_t I),    alpha_t = eta_t - eta_{t-1}

with sqrt(eta_t) growing geometrically in ``t ** power`` from
``min(min_noise_level / kappa, min_noise_level)`` to ``sqrt(etas_end)``. Sampling starts
from x_T = y + kappa sqrt(eta_T) noise and, at every step, replaces x0 by the denoiser's
prediction. This module is only that arithmetic (the "scheduler" in diffusers' terms):
no network, no randomness; the sampler (``sampler``) owns the noise and the batching.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class ResShiftSchedule:
    """A residual-shifting chain: T steps, noise scale kappa and the eta schedule.

    ``normalize`` is how the chain state is scaled before the denoiser sees it (ResShift's
    ``_scale_input``): ``latent`` divides by sqrt(kappa^2 eta_t + 1) (latent codes have
    variance about 1), ``pixel`` by (3 kappa sqrt(eta_t) + 1), ``none`` leaves it.
    """

    steps: int = 4
    kappa: float = 2.0
    min_noise_level: float = 0.2
    etas_end: float = 0.99
    power: float = 0.3
    normalize: Literal["latent", "pixel", "none"] = "latent"

    def __post_init__(self) -> None:
        if self.steps < 2:
            raise ValueError(f"residual-shifting chain needs steps >= 2, got {self.steps}")
        if not (self.kappa > 0 and 0 < self.min_noise_level and 0 < self.etas_end <= 1 and self.power > 0):
            raise ValueError(f"invalid residual-shifting schedule {self}")

    # -- the eta schedule (float64, as the reference) -----------------------------------
    @functools.cached_property
    def sqrt_etas(self) -> np.ndarray:
        """sqrt(eta_t) for t = 0 .. T-1 (index 0 is the last sampling step)."""
        start = min(self.min_noise_level / self.kappa, self.min_noise_level)
        ratio = math.exp(math.log(self.etas_end / start) / (self.steps - 1))
        exponent = np.linspace(0.0, 1.0, self.steps) ** self.power * (self.steps - 1)
        return np.power(ratio, exponent) * start

    @functools.cached_property
    def etas(self) -> np.ndarray:
        etas = self.sqrt_etas**2
        if not ((etas > 0).all() and (etas <= 1).all()):
            raise ValueError(f"schedule {self} gives etas outside (0, 1]")
        return etas

    @functools.cached_property
    def etas_prev(self) -> np.ndarray:
        return np.append(0.0, self.etas[:-1])

    @functools.cached_property
    def posterior_std(self) -> np.ndarray:
        """Standard deviation of q(x_{t-1} | x_t, x0); 0 at t = 0 (no noise on the last step)."""
        alpha = self.etas - self.etas_prev
        return np.sqrt(self.kappa**2 * self.etas_prev / self.etas * alpha)

    # -- per-step arithmetic on tensors ---------------------------------------------------
    def _at(self, array: np.ndarray, t: int, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float(array[t]), dtype=like.dtype, device=like.device)

    def prior(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_T = y + kappa sqrt(eta_T) noise: where sampling starts."""
        return y + self.kappa * float(self.sqrt_etas[-1]) * noise

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x0, y) for a batch of step indices ``t`` (training)."""
        eta = torch.as_tensor(self.etas, dtype=x0.dtype, device=x0.device)[t].view(-1, 1, 1, 1)
        return x0 + eta * (y - x0) + self.kappa * eta.sqrt() * noise

    def scale_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The chain state as the denoiser sees it, for a batch of step indices ``t``."""
        if self.normalize == "none":
            return x_t
        eta = torch.as_tensor(self.etas, dtype=x_t.dtype, device=x_t.device)[t].view(-1, 1, 1, 1)
        if self.normalize == "latent":
            return x_t / torch.sqrt(eta * self.kappa**2 + 1)
        return x_t / (eta.sqrt() * self.kappa * 3 + 1)

    def step(self, x_t: torch.Tensor, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """x_{t-1} from the posterior given the predicted x0 (noise unused at t = 0)."""
        coef1 = float(self.etas_prev[t] / self.etas[t])
        coef2 = float((self.etas[t] - self.etas_prev[t]) / self.etas[t])
        mean = coef1 * x_t + coef2 * x0
        return mean if t == 0 else mean + float(self.posterior_std[t]) * noise


#: ResShift's published real-SR 4x schedules (configs/realsr_swinunet_realesrgan256*.yaml).
RESSHIFT_V3 = ResShiftSchedule(steps=4, kappa=2.0, min_noise_level=0.2, etas_end=0.99, power=0.3)
RESSHIFT_V1 = ResShiftSchedule(steps=15, kappa=2.0, min_noise_level=0.04, etas_end=0.99, power=0.3)
