"""Distortion measures D(x, x_hat): the "D" of IDA-RD.

Every plug-in is called as ``metric(ref, dist)`` with float RGB tensors in [0, 1] of shape
(N, 3, H, W), or ``ref`` of shape (1, 3, H, W) against N distorted images (the usual IDA-RD
case: one HR image against K SR samples), and returns a float64 tensor of shape (N,) on
the CPU. ``higher_is_better`` says which way a metric points (LPIPS: lower is better).

Inputs are not clipped here (the benchmark clips and quantises SR samples before
measuring, as the reference computation does), but non-finite inputs are refused with the
indices of the offending images, so that a NaN sample can never be scored silently.

Get one by name: ``DISTORTIONS.create("lpips-alex")``, ``DISTORTIONS.create("ssim")``.

SSIM and MS-SSIM are implemented here in torch: the usual libraries for batched torch
SSIM (torchmetrics, pytorch-msssim, piq) are not dependencies of idard, and scikit-image's
version works on one numpy image at a time. The tests check SSIM against scikit-image.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from idard.measure.lazy import lazy_import
from idard.measure.registry import Plugin, Registry

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
else:  # imported on first use: naming and listing the metrics needs no torch
    torch = lazy_import("torch")
    F = lazy_import("torch.nn.functional")

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _no_grad(method: _Method) -> _Method:
    """``@torch.no_grad()`` without touching torch when the class is defined."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

__all__ = [
    "DISTORTIONS",
    "Distortion",
    "LPIPSAlex",
    "LPIPSVGG",
    "PSNR",
    "SSIM",
    "MSSSIM",
    "ms_ssim_min_size",
]


def _state_field(default: Any = None) -> Any:
    """Run-time state of a frozen plug-in: not a parameter, not part of id/eq/repr."""
    return dataclasses.field(default=default, init=False, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Distortion(Plugin):
    """Base of all distortion plug-ins: input checks, broadcasting and device handling."""

    higher_is_better: ClassVar[bool]

    _device: torch.device = _state_field()

    @property
    def device(self) -> torch.device:
        return self._device if self._device is not None else torch.device("cpu")

    def to(self, device: torch.device | str) -> "Distortion":
        """Compute on ``device`` from now on (inputs are moved there); returns ``self``."""
        object.__setattr__(self, "_device", torch.device(device))
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle (e.g. to ship to a Ray worker) the parameters only: a loaded network is
        # large and locks do not pickle. The copy starts on the CPU and loads lazily.
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return (_rebuild, (type(self), params))

    # -- helpers ---------------------------------------------------------------------

    def _check(self, ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        name = getattr(self, "registry_name", type(self).__name__)
        for label, x in (("ref", ref), ("dist", dist)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(x).__name__}")
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"{name}: {label} must have shape (N, 3, H, W), got {tuple(x.shape)}")
            if not x.is_floating_point():
                raise TypeError(f"{name}: {label} must be float RGB in [0, 1], got dtype {x.dtype}")
        if ref.shape[2:] != dist.shape[2:]:
            raise ValueError(
                f"{name}: ref is {tuple(ref.shape[2:])} pixels but dist is {tuple(dist.shape[2:])}"
            )
        if ref.shape[0] not in (1, dist.shape[0]):
            raise ValueError(
                f"{name}: ref batch {ref.shape[0]} must be 1 or equal to the dist batch {dist.shape[0]}"
            )
        for label, x in (("ref", ref), ("dist", dist)):
            finite = torch.isfinite(x).flatten(1).all(dim=1)
            if not bool(finite.all()):
                bad = torch.nonzero(~finite).flatten().tolist()
                raise ValueError(f"{name}: {label} images {bad} hold NaN or infinite values")
        return ref.to(self.device), dist.to(self.device)

    @property
    def _exact_dtype(self) -> torch.dtype:
        # float64 everywhere it exists, so that the same record is computed the same way on
        # CPU and GPU; Apple's MPS has no float64.
        return torch.float32 if self.device.type == "mps" else torch.float64


def _rebuild(cls: type, params: dict[str, Any]) -> Any:
    return cls(**params)


DISTORTIONS: Registry[Distortion] = Registry("distortion")


# ----------------------------------------------------------------------------- LPIPS

@dataclasses.dataclass(frozen=True)
class _LPIPS(Distortion):
    """LPIPS v0.1 with offline-resolved trunk weights (shared implementation)."""

    higher_is_better: ClassVar[bool] = False
    _lpips_net: ClassVar[str]

    # Images per forward pass; changes memory use, not the values.
    batch_size: int = dataclasses.field(default=8, metadata={"identity": False})

    _model: Any = _state_field()
    _weights: Any = _state_field()
    _lock: Any = _state_field()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def weights_source(self) -> Any:
        """:class:`~idard.measure.lpips_weights.TrunkWeights` (without loading: ``None``)."""
        return self._weights

    def load(self) -> "_LPIPS":
        """Build the network and load the trunk weights now (otherwise done on first call)."""
        self._network()
        return self

    def _network(self) -> torch.nn.Module:
        with self._lock:
            if self._model is None:
                model, weights = _build_lpips(self._lpips_net)
                object.__setattr__(self, "_model", model)
                object.__setattr__(self, "_weights", weights)
            if next(self._model.parameters()).device != self.device:
                self._model.to(self.device)
            return self._model

    def to(self, device: torch.device | str) -> "_LPIPS":
        super().to(device)
        if self._model is not None:
            with self._lock:
                self._model.to(self.device)
        return self

    def _features(self, model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        import lpips

        x = x.to(torch.float32) * 2 - 1  # LPIPS expects [-1, 1]
        return [lpips.normalize_tensor(f) for f in model.net(model.scaling_layer(x))]

    @_no_grad
    def __call__(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        ref, dist = self._check(ref, dist)
        model = self._network()
        shared = self._features(model, ref) if ref.shape[0] == 1 else None
        out = []
        for start in range(0, dist.shape[0], self.batch_size):
            stop = start + self.batch_size
            feats_d = self._features(model, dist[start:stop])
            feats_r = shared if shared is not None else self._features(model, ref[start:stop])
            value = 0
            for lin, fr, fd in zip(model.lins, feats_r, feats_d):
                value = value + lin((fr - fd) ** 2).mean(dim=(2, 3), keepdim=True)
            out.append(value.flatten())
        return torch.cat(out).to(device="cpu", dtype=torch.float64)


def _build_lpips(net: str) -> tuple[torch.nn.Module, Any]:
    """``lpips.LPIPS`` v0.1 with its own linear layers and the resolved trunk weights."""
    import lpips

    from idard.measure.lpips_weights import resolve_trunk_weights

    weights = resolve_trunk_weights(net)  # raises before building anything if unavailable
    # pnet_rand=True: torchvision builds the trunk without downloading; the real trunk
    # weights are loaded right below, strictly, so a random trunk can never survive.
    with warnings.catch_warnings():
        # lpips calls torchvision's deprecated ``pretrained=False``; harmless, and noisy.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models")
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    mapped = {}
    for name, _ in model.net.named_parameters():  # e.g. "slice2.3.weight"
        _, index, kind = name.split(".")
        key = f"features.{index}.{kind}"
        if key not in weights.state_dict:
            raise RuntimeError(f"trunk weights from {weights.location} lack {key}")
        mapped[name] = weights.state_dict[key]
    unused = set(weights.state_dict) - {f"features.{n.split('.')[1]}.{n.split('.')[2]}" for n in mapped}
    if unused:
        raise RuntimeError(f"trunk weights {sorted(unused)} from {weights.location} match no LPIPS layer")
    # strict=True: every trunk conv weight and bias is replaced, with matching shapes.
    model.net.load_state_dict(mapped, strict=True)
    model.eval().requires_grad_(False)
    return model, weights


@DISTORTIONS.register("lpips-alex")
@dataclasses.dataclass(frozen=True)
class LPIPSAlex(_LPIPS):
    """LPIPS v0.1, AlexNet trunk: the distortion of the IDA-RD paper (lower is better)."""

    _lpips_net: ClassVar[str] = "alex"


@DISTORTIONS.register("lpips-vgg")
@dataclasses.dataclass(frozen=True)
class LPIPSVGG(_LPIPS):
    """LPIPS v0.1, VGG16 trunk (lower is better)."""

    _lpips_net: ClassVar[str] = "vgg"


# ------------------------------------------------------------------------------ PSNR

@DISTORTIONS.register("psnr")
@dataclasses.dataclass(frozen=True)
class PSNR(Distortion):
    """Peak signal-to-noise ratio in dB for data range 1 (higher is better; inf if equal)."""

    higher_is_better: ClassVar[bool] = True

    @_no_grad
    def __call__(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        ref, dist = self._check(ref, dist)
        dtype = self._exact_dtype
        mse = (dist.to(dtype) - ref.to(dtype)).pow(2).flatten(1).mean(dim=1)
        return (10 * torch.log10(1.0 / mse)).to(device="cpu", dtype=torch.float64)


# ---------------------------------------------------------------------- SSIM, MS-SSIM

_WINDOW = 11
_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03  # Wang et al. 2004, data range L = 1
_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(_WINDOW, dtype=torch.float64) - (_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' region only (no padding)."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean SSIM and mean contrast-structure term, shape (N, C).

    Population (not sample) statistics over the Gaussian window, and the mean over the
    valid region: the same numbers as scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``, which filters with
    reflection and then crops the window radius from every border.
    """
    g = _gaussian_1d(x.dtype, x.device)
    n = max(x.shape[0], y.shape[0])
    x, y = x.expand(n, -1, -1, -1), y.expand(n, -1, -1, -1)
    mu_x, mu_y = _blur_valid(x, g), _blur_valid(y, g)
    sxx = _blur_valid(x * x, g) - mu_x**2
    syy = _blur_valid(y * y, g) - mu_y**2
    sxy = _blur_valid(x * y, g) - mu_x * mu_y
    c1, c2 = _K1**2, _K2**2
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    lum_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum_map * cs_map).mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ms_ssim_min_size(scales: int = len(_MS_WEIGHTS)) -> int:
    """Smallest image side for MS-SSIM: the coarsest scale must still hold an 11-px window."""
    # Each scale halves with ceil (odd sides are edge-padded), so side -> ceil(side / 2^k).
    return (_WINDOW - 1) * 2 ** (scales - 1) + 1


@DISTORTIONS.register("ssim")
@dataclasses.dataclass(frozen=True)
class SSIM(Distortion):
    """Structural similarity (Wang et al. 2004), Gaussian 11/1.5, mean over RGB (higher is better)."""

    higher_is_better: ClassVar[bool] = True

    @_no_grad
    def __call__(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        ref, dist = self._check(ref, dist)
        if min(ref.shape[2:]) < _WINDOW:
            raise ValueError(
                f"ssim needs images of at least {_WINDOW}x{_WINDOW} pixels, got "
                f"{ref.shape[2]}x{ref.shape[3]}"
            )
        dtype = self._exact_dtype
        ssim, _ = _ssim_cs(ref.to(dtype), dist.to(dtype))
        return ssim.mean(dim=1).to(device="cpu", dtype=torch.float64)


@DISTORTIONS.register("ms-ssim")
@dataclasses.dataclass(frozen=True)
class MSSSIM(Distortion):
    """Multi-scale SSIM (Wang et al. 2003), 5 scales, standard weights (higher is better)."""

    higher_is_better: ClassVar[bool] = True

    @_no_grad
    def __call__(self, ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        ref, dist = self._check(ref, dist)
        need = ms_ssim_min_size()
        if min(ref.shape[2:]) < need:
            raise ValueError(
                f"ms-ssim needs images of at least {need}x{need} pixels ({len(_MS_WEIGHTS)} scales "
                f"with an {_WINDOW}-pixel window at the coarsest), got {ref.shape[2]}x{ref.shape[3]}; "
                "use 'ssim' for smaller images"
            )
        dtype = self._exact_dtype
        x, y = ref.to(dtype), dist.to(dtype)
        terms = []
        for scale in range(len(_MS_WEIGHTS)):
            ssim, cs = _ssim_cs(x, y)
            last = scale == len(_MS_WEIGHTS) - 1
            # Negative cs/ssim (anti-correlated content) raised to a fractional weight
            # would be NaN; clamp at 0 as the common implementations do.
            terms.append((ssim if last else cs).clamp_min(0))
            if not last:
                x, y = _halve(x), _halve(y)
        weights = torch.tensor(_MS_WEIGHTS, dtype=dtype, device=x.device).view(-1, 1, 1)
        per_channel = torch.prod(torch.stack(terms) ** weights, dim=0)  # (N, C)
        return per_channel.mean(dim=1).to(device="cpu", dtype=torch.float64)


def _halve(x: torch.Tensor) -> torch.Tensor:
    """2x2 average and subsample, odd sides edge-padded (as Wang's MATLAB 'symmetric')."""
    pad_h, pad_w = x.shape[2] % 2, x.shape[3] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, kernel_size=2, stride=2)
