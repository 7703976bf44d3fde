"""PULSE's latent search, batched over (image, seed) samples without coupling them.

For each sample: draw a latent (and noise maps) from the sample's own seed, then run Adam
on "100*L2 + 0.05*GEOCROSS" with a linear one-cycle-then-drop learning rate, projecting
every latent vector (and trainable noise map) back onto the sphere of its initial radius
after each step. L2 is the mean squared error between the downscaled candidate and the
LR image, clamped below at ``eps`` (so a sample under eps gets no L2 gradient and
GEOCROSS alone moves it).

When to stop and which image to return (``PulseSettings.stop``):

* ``"reference"`` (default), the rule of the reference, ``PULSE.py`` of adamian98/pulse,
  lines 134-179 (the loop and the lines after it): never stop early; run all ``steps``;
  track the lowest L2 over the steps (lines 160-163); if it is <= eps return the image
  generated at the *last* step (line 176-177: ``gen_im``, not the lowest-loss
  ``best_im``), otherwise return nothing (line 179). A sample that reached eps at some
  step and drifted away under GEOCROSS is still "converged", and its returned image is
  the drifted one. idard returns the last image of an unconverged sample too, flagged
  ``converged`` False, so that tables can count what the reference silently drops.
* ``"first-hit"``: stop a sample at its first step with L2 <= eps and return that step's
  image (an unconverged sample returns its lowest-loss image). Not the reference's rule;
  kept, under its own name in the model id, because it is cheaper and because earlier
  idard results used it.

Batching is the speed lever (one generator call for many samples), so it must not change
any sample. Everything here is per sample: losses are summed over the batch (so each
sample's gradient is its own), Adam is element-wise, the spherical projection is per
vector, convergence is judged on each sample's own L2, and under ``first-hit`` a finished
sample leaves the batch at once (its rows dropped from the parameters and the Adam state),
exactly as if it had been optimised alone and stopped. The reference judges convergence
on the *batch-summed* L2 (so with more than one image per batch it returns nothing;
run.py's default batch is 1): idard's per-sample rule is the reference's at batch 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from idard.measure.models.pulse.downsample import bicubic_downsample
from idard.measure.models.pulse.generators import LatentGenerator, initial_state
from idard.measure.models.pulse.stop import StopRule

#: ``reference``: all steps, last image, converged = min L2 <= eps (PULSE.py 134-179);
#: ``first-hit``: stop at the first step with L2 <= eps and return that image.
STOP_RULES: tuple[str, ...] = ("reference", "first-hit")


@dataclasses.dataclass(frozen=True)
class PulseSettings:
    """PULSE's parameters; defaults are the reference's (run.py / PULSE.py)."""

    steps: int = 100
    lr: float = 0.4
    eps: float = 2e-3
    l2_weight: float = 100.0
    geocross_weight: float = 0.05
    trainable_noise: int = 5  # the first noise maps are optimised; the others stay fixed
    zero_noise: tuple[int, ...] = (17,)  # noise maps set to zero ("bad noise layers")
    stop: StopRule = "reference"  # see the module docstring

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0 or self.eps < 0:
            raise ValueError(f"PULSE needs steps >= 1, lr > 0 and eps >= 0, got {self}")
        if self.stop not in STOP_RULES:
            raise ValueError(f"PULSE stop must be one of {', '.join(STOP_RULES)}, got {self.stop!r}")


@dataclasses.dataclass
class Inversion:
    """Per sample: the returned image (N, 3, R, R) in [0, 1], whether its lowest L2 over
    the steps it ran reached eps, that lowest L2, and the number of steps it ran."""

    images: torch.Tensor
    converged: torch.Tensor
    l2: torch.Tensor
    steps: torch.Tensor


def one_cycle_then_drop(step: int, steps: int) -> float:
    """The reference's "linear1cycledrop": up from 0.1 to 1 and back to 0.1 over 90 % of
    the steps, then a linear drop to 0.001 (a factor of the base learning rate)."""
    peak_span = 0.9 * steps
    if step < peak_span:
        return (9 * (1 - abs(step / peak_span - 0.5) * 2) + 1) / 10
    return 0.1 + (step - peak_span) / (0.1 * steps) * (0.001 - 0.1)


def geocross(latent_in: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over pairs of its vectors of (angle between them)^2, times dim / 8,
    the reference's scaling. Pulls StyleGAN's 18 style vectors towards one another."""
    x, y = latent_in.unsqueeze(1), latent_in.unsqueeze(2)
    a = ((x - y).pow(2).sum(-1) + 1e-9).sqrt()
    b = ((x + y).pow(2).sum(-1) + 1e-9).sqrt()
    angle = 2 * torch.atan2(a, b)
    return (angle.pow(2) * latent_in.shape[-1]).mean((1, 2)) / 8


def _radius(t: torch.Tensor) -> torch.Tensor:
    return (t.pow(2).sum(tuple(range(2, t.ndim)), keepdim=True) + 1e-9).sqrt()


def invert(
    generator: LatentGenerator, lr: torch.Tensor, seeds: Sequence[int], settings: PulseSettings = PulseSettings()
) -> Inversion:
    """PULSE for N samples at once: ``lr`` (N, 3, h, w) in [0, 1], one seed per sample."""
    n = lr.shape[0]
    if len(seeds) != n:
        raise ValueError(f"{n} LR images but {len(seeds)} seeds")
    factor = generator.resolution // lr.shape[-1]
    if lr.shape[-1] != lr.shape[-2] or factor * lr.shape[-1] != generator.resolution:
        raise ValueError(f"PULSE with a {generator.resolution}px generator needs square LR images whose "
                         f"side divides {generator.resolution}, got {lr.shape[-2]}x{lr.shape[-1]}")
    device = lr.device
    with torch.inference_mode(False), torch.enable_grad():
        target = lr.detach().clone().float()
        latent, noise = initial_state(generator, seeds, device)
        for i in settings.zero_noise:
            if i < len(noise):
                noise[i].zero_()
        trained = [i for i in range(min(settings.trainable_noise, len(noise))) if i not in settings.zero_noise]
        params = [latent, *(noise[i] for i in trained)]
        for p in params:
            p.requires_grad_(True)
        radii = [_radius(p.detach()) for p in params]
        optimizer = torch.optim.Adam(params, lr=settings.lr)

        images = torch.zeros((n, 3, generator.resolution, generator.resolution), device=device)
        best_loss = torch.full((n,), float("inf"), device=device)
        min_l2 = torch.full((n,), float("inf"), device=device)
        ran = torch.zeros(n, dtype=torch.long, device=device)
        alive = torch.arange(n, device=device)  # batch row -> sample index

        first_hit = settings.stop == "first-hit"
        for step in range(settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * one_cycle_then_drop(step, settings.steps)
            optimizer.zero_grad(set_to_none=True)
            latent_in = generator.latent_in(latent)
            candidate = generator.synthesize(latent_in, noise)
            l2 = (bicubic_downsample(candidate, factor) - target).pow(2).mean((1, 2, 3))
            loss = settings.l2_weight * l2.clamp(min=settings.eps) + settings.geocross_weight * geocross(latent_in)
            with torch.no_grad():
                ran[alive] += 1
                min_l2[alive] = torch.minimum(min_l2[alive], l2.detach())
                done = l2.detach() <= settings.eps
                if first_hit:  # converged: this image; not yet: its lowest-loss one so far
                    keep_image = done | (loss.detach() < best_loss[alive])
                    best_loss[alive[keep_image]] = loss.detach()[keep_image]
                else:  # the reference returns the last step's image (PULSE.py line 177)
                    keep_image = torch.ones_like(done)
                images[alive[keep_image]] = candidate.detach()[keep_image]
            if first_hit and bool(done.all()):
                break
            loss.sum().backward()  # summed: each sample's gradient is its own
            optimizer.step()
            with torch.no_grad():
                for p, r in zip(params, radii):
                    p.mul_(r / _radius(p))
            if first_hit and bool(done.any()):
                latent, noise, params, radii, optimizer, target, alive = _drop_rows(
                    ~done, noise, trained, params, radii, optimizer, target, alive)
        converged = min_l2 <= settings.eps  # the reference's test (PULSE.py line 176)
    return Inversion(images=images.clamp(0, 1), converged=converged, l2=min_l2, steps=ran)


def _drop_rows(
    keep: torch.Tensor, noise: list[torch.Tensor], trained: list[int], params: list[torch.Tensor],
    radii: list[torch.Tensor], optimizer: torch.optim.Adam, target: torch.Tensor, alive: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.optim.Adam,
           torch.Tensor, torch.Tensor]:
    """The optimisation state without the rows of finished samples (Adam moments included),
    so they cost nothing more and the others go on exactly as before."""
    old_state = [optimizer.state.get(p, {}) for p in params]
    lr = optimizer.param_groups[0]["lr"]
    new_params = [p.detach()[keep].clone().requires_grad_(True) for p in params]
    latent = new_params[0]
    noise = [t[keep] for t in noise]
    for slot, i in enumerate(trained, start=1):
        noise[i] = new_params[slot]
    radii = [r[keep] for r in radii]
    optimizer = torch.optim.Adam(new_params, lr=lr)
    for p, state in zip(new_params, old_state):
        if state:
            optimizer.state[p] = {k: (v[keep] if v.ndim > 0 else v).clone() if torch.is_tensor(v) else v
                                  for k, v in state.items()}
    return latent, noise, new_params, radii, optimizer, target[keep], alive[keep]
