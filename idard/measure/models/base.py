"""The contract every stochastic super-resolution model fulfils.

IDA-RD needs many independent samples of x_hat ~ p(x | y) for one LR image y, and needs
each sample to be reproducible on its own: a record (image, downscaler, model, metric,
seed) must be recomputable alone, whatever batch it was first computed in. So a model
draws all of its randomness for a sample from a generator seeded with that sample's seed,
never from a global RNG, and a batch of seeds gives the same samples as those seeds one
at a time (up to floating-point reassociation in batched kernels).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from idard.measure.lazy import lazy_import
from idard.measure.registry import Registry

if TYPE_CHECKING:
    import torch
else:  # imported on first use: naming, listing and validating models needs no torch
    torch = lazy_import("torch")


class Samples(NamedTuple):
    """Samples of a model whose samples can fail to reach their goal (PULSE's eps).

    ``images`` is what `SRModel.sample` returns; ``converged`` (B, K) says which samples
    reached it. Models without such a notion return the images tensor alone.
    """

    images: torch.Tensor
    converged: torch.Tensor


@runtime_checkable
class SRModel(Protocol):
    """A blind stochastic SR decoder."""

    @property
    def id(self) -> str:
        """Canonical identity: family, weights and sampling parameters (e.g. heat)."""

    @property
    def scale(self) -> int:
        """Upscaling factor: an LR of h x w yields an SR of (h*scale) x (w*scale)."""

    @property
    def weights_hash(self) -> str:
        """SHA-256 (hex) of the weights file(s), so records say exactly what decoded them."""

    def to(self, device: torch.device | str) -> "SRModel":
        """Move the model to a device, loading weights on first use."""

    def sample(
        self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None
    ) -> torch.Tensor | Samples:
        """Draw ``len(seeds)`` SR samples for every LR image.

        ``lr`` is float RGB in [0, 1] of shape (B, 3, h, w) on the model's device. The
        result has shape (B, K, 3, h*scale, w*scale), K = len(seeds), is NOT clamped, and
        may hold non-finite values: callers check and report them. Sample (b, k) depends
        only on lr[b], seeds[k] and the temperature (``None`` means the model's default).
        Work that depends only on the LR image (e.g. conditioning features) is done once
        per LR image, not once per sample.
        """


class ModelRuntime:
    """A plug-in's loaded state (network, device, weights hash), built on first use.

    Plug-ins are frozen dataclasses that travel to Ray workers by pickling; their loaded
    state must not travel with them (a worker loads its own copy on its own device), so it
    pickles to a fresh, empty runtime.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded: object | None = None
        self.device: torch.device | None = None
        self.sha256: str | None = None

    def __reduce__(self) -> tuple[type[ModelRuntime], tuple[()]]:
        return (type(self), ())


#: Registered SR model families and named embedded models, e.g. ``srflow(weights=...)``.
MODELS: Registry[SRModel] = Registry("SR model")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed so that multi-GB checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def seeded_normal(
    shape: Sequence[int], seed: int, device: torch.device | str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Standard normal noise that depends only on ``seed`` and ``shape``, on any device.

    Drawn on the CPU so that a sample is the same whether it was computed on a GPU or a
    CPU worker, then moved to the device.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32).to(device=device, dtype=dtype or torch.float32)
