"""The StyleGAN (v1) generator that PULSE inverts, loadable from PULSE's own weight files.

PULSE (Menon et al., CVPR 2020) searches the latent space of the official FFHQ 1024x1024
StyleGAN for a face that downscales to the input. Its code ships a PyTorch port of that
generator (adapted from lernapparat) and two weight files saved with
``torch.save(module.state_dict())``: ``mapping.pt`` (the 8-layer mapping MLP) and
``synthesis.pt`` (the image synthesis network). This module is an independent
implementation whose state-dict keys, shapes and numerics match that port exactly, so the
published files load with ``load_state_dict(strict=True)`` and produce the same images.

Architecture summary (all layers use StyleGAN's *equalised learning rate*: parameters are
stored at unit scale and multiplied by a He constant at run time, which is why loaded
weights must go through the same run-time scales as the reference):

* mapping: pixel norm of ``z``, then 8 x (dense 512->512 with learning-rate multiplier 0.01,
  LeakyReLU(0.2)). Output ``w`` is one 512-vector per sample, *after* the last LeakyReLU.
* synthesis: a learned 4x4 constant, then one block per resolution 4, 8, ..., R, each with
  two "layers" (conv, per-pixel noise, LeakyReLU(0.2), instance norm, style modulation by
  its own slice of ``w``), giving ``2*log2(R) - 2`` layers (18 at 1024) and as many noise
  inputs; a final 1x1 ``torgb`` conv with no activation. Up-sampling blocks blur with a
  [1, 2, 1] filter; from output resolution 128 up they use the fused transposed conv of the
  official TensorFlow code (as the reference does), below it nearest-neighbour + conv.
  Outputs match the reference port bitwise on CPU (checked at 32, 128 and 256 with random
  weights).

The generator can also be built at smaller resolutions and channel widths (same structure),
for quick tests, and at full size with random weights, for benchmarks.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from idard.measure.models.checkpoints import Shapes, require_keys

__all__ = [
    "FUSED_UPSAMPLE_MIN_RESOLUTION",
    "StyleGANConfig",
    "StyleGANGenerator",
    "StyleGANMapping",
    "StyleGANSynthesis",
]

#: Blocks whose *output* resolution is at least this use the fused up-sample + conv
#: (transposed conv); smaller ones up-sample by pixel repetition, then convolve. The
#: official TensorFlow StyleGAN (``fused_scale='auto'``) and PULSE's port both switch here.
#: The fused path amounts to the same operation with the 3x3 kernel rotated 180 degrees,
#: so the paths are not interchangeable: trained weights depend on where the switch is.
FUSED_UPSAMPLE_MIN_RESOLUTION = 128

#: Slope of every LeakyReLU inside the mapping and synthesis networks.
LRELU_SLOPE = 0.2

_SQRT2 = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class StyleGANConfig:
    """Hyper-parameters of a StyleGAN v1 generator; the defaults are the FFHQ 1024 model.

    Channel width of the block at resolution ``r = 2**k`` is
    ``min(int(fmap_base / 2**((k - 1) * fmap_decay)), fmap_max)``: 512 up to 32x32, then
    256, 128, 64, 32, 16 at 64 ... 1024 for the defaults. Shrinking ``fmap_base`` /
    ``fmap_max`` / ``latent`` gives a structurally identical network cheap enough for tests.
    """

    resolution: int = 1024
    latent: int = 512
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    num_channels: int = 3
    mapping_layers: int = 8
    mapping_lrmul: float = 0.01

    def __post_init__(self) -> None:
        r = self.resolution
        if not isinstance(r, int) or r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r!r}")
        for name in ("latent", "fmap_base", "fmap_max", "num_channels", "mapping_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.mapping_lrmul > 0:
            raise ValueError(f"mapping_lrmul must be positive, got {self.mapping_lrmul!r}")
        if self.channels(r) < 1:
            raise ValueError(f"fmap_base {self.fmap_base} leaves no channels at {r}x{r}")

    @property
    def resolution_log2(self) -> int:
        """``log2(resolution)``: 10 for the FFHQ model."""
        return self.resolution.bit_length() - 1

    @property
    def num_layers(self) -> int:
        """Number of styled layers = number of ``w`` rows and noise inputs (18 at 1024)."""
        return 2 * self.resolution_log2 - 2

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """Output resolution of each synthesis block, in order: 4, 8, ..., resolution."""
        return tuple(2**k for k in range(2, self.resolution_log2 + 1))

    def channels(self, resolution: int) -> int:
        """Feature maps of the synthesis block whose output is ``resolution`` x ``resolution``."""
        stage = resolution.bit_length() - 2  # log2(resolution) - 1, as in the official nf()
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)


# -- building blocks ---------------------------------------------------------------------
# Parameters are stored at unit scale (what the weight files hold) and rescaled in forward
# by ``weight_scale`` / ``bias_scale``: StyleGAN's equalised learning rate.


class _EqualizedLinear(nn.Module):
    """Dense layer with run-time He scaling and a learning-rate multiplier (``lrmul``).

    The stored weight is ``N(0, 1/lrmul^2)`` at init and multiplied by
    ``gain / sqrt(fan_in) * lrmul`` at run time; the bias is multiplied by ``lrmul``.
    The mapping network uses ``lrmul = 0.01``, so its stored values are 100x the effective.
    """

    def __init__(self, fan_in: int, fan_out: int, gain: float, lrmul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lrmul)
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.weight_scale = gain / math.sqrt(fan_in) * lrmul
        self.bias_scale = lrmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_scale, self.bias * self.bias_scale)


class _EqualizedConv2d(nn.Module):
    """Same-padded square conv with run-time He scaling (stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_scale = gain / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.weight.shape[-1] // 2
        return F.conv2d(x, self.weight * self.weight_scale, self.bias, padding=pad)


class _Blur(nn.Module):
    """Depthwise 3x3 binomial low-pass ([1, 2, 1] outer product / 16) after up-sampling.

    The kernel is a persistent buffer because the reference registers it as one, so it is
    a key of ``synthesis.pt`` (``blocks.{r}x{r}.conv0_up.intermediate.kernel``); the loaded
    value, not a constant, is what gets applied.
    """

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, -1, -1)
        return F.conv2d(x, weight, padding=self.kernel.shape[-1] // 2, groups=channels)


class _UpsampleConv2d(nn.Module):
    """2x up-sampling 3x3 conv followed by the blur and the bias (``conv0_up`` in the files).

    Below `FUSED_UPSAMPLE_MIN_RESOLUTION` (output) the input is repeated 2x2 and convolved;
    from there up, the 3x3 kernel is turned into a 4x4 kernel and applied as a stride-2
    transposed conv, like the official code. A transposed conv correlates with the flipped
    kernel, so this equals "repeat, then conv with the kernel rotated 180 degrees": the
    FFHQ weights of the >= 128 blocks were trained in that orientation and must be applied
    so. The bias is added after the blur in both paths, as in the reference.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_scale = _SQRT2 / math.sqrt(in_channels * 9)
        self.intermediate = _Blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.weight_scale
        if 2 * min(x.shape[-2:]) >= FUSED_UPSAMPLE_MIN_RESOLUTION:
            # conv_transpose2d wants (in, out, k, k). Each input pixel feeds a 2x2 patch
            # of the repeated image, so the 4x4 kernel is the 3x3 one accumulated at the
            # four 2x2 offsets (pads are (left, right, top, bottom)); summed in this order
            # it is bitwise the reference's kernel, so outputs match it bitwise.
            k = weight.transpose(0, 1)
            kernel = F.pad(k, (0, 1, 0, 1)) + F.pad(k, (0, 1, 1, 0))
            kernel = kernel + F.pad(k, (1, 0, 0, 1))
            kernel = kernel + F.pad(k, (1, 0, 1, 0))
            x = F.conv_transpose2d(x, kernel, stride=2, padding=1)
        else:
            x = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
            x = F.conv2d(x, weight, padding=1)
        x = self.intermediate(x)
        return x + self.bias.view(1, -1, 1, 1)


class _NoiseInjection(nn.Module):
    """Adds single-channel per-pixel noise, scaled by a learned per-channel weight.

    Zero-initialised as in StyleGAN, so an untrained network ignores its noise inputs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight.view(1, -1, 1, 1) * noise


class _StyleModulation(nn.Module):
    """Adaptive instance-norm style: ``x * (1 + scale(w)) + shift(w)`` per channel.

    ``lin`` maps ``w`` to ``2 * channels`` values (scales first, then shifts), gain 1.
    """

    def __init__(self, latent: int, channels: int) -> None:
        super().__init__()
        self.lin = _EqualizedLinear(latent, 2 * channels, gain=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.lin(w).view(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class _LayerEpilogue(nn.Module):
    """End of every styled layer: noise, LeakyReLU(0.2), instance norm, style modulation.

    The activation and the (non-affine) instance norm have no parameters, so, as in the
    reference files, only ``noise.weight`` and ``style_mod.lin.*`` appear in the state dict.
    """

    def __init__(self, channels: int, latent: int) -> None:
        super().__init__()
        self.noise = _NoiseInjection(channels)
        self.style_mod = _StyleModulation(latent, channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self.noise(x, noise)
        x = F.leaky_relu(x, LRELU_SLOPE)
        x = F.instance_norm(x, eps=1e-5)
        return self.style_mod(x, w)


class _InputBlock(nn.Module):
    """4x4 block: learned constant (+ a learned per-channel bias), layer, 3x3 conv, layer.

    Both ``const`` and ``bias`` start at ones, as in the reference.
    """

    def __init__(self, channels: int, latent: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.bias = nn.Parameter(torch.ones(channels))
        self.epi1 = _LayerEpilogue(channels, latent)
        self.conv = _EqualizedConv2d(channels, channels, 3, gain=_SQRT2)
        self.epi2 = _LayerEpilogue(channels, latent)

    def forward(self, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.const.expand(w.shape[0], -1, -1, -1) + self.bias.view(1, -1, 1, 1)
        x = self.epi1(x, w[:, 0], noise[0])
        x = self.conv(x)
        return self.epi2(x, w[:, 1], noise[1])


class _UpBlock(nn.Module):
    """Block doubling the resolution: up-sampling conv, layer, 3x3 conv, layer."""

    def __init__(self, in_channels: int, out_channels: int, latent: int) -> None:
        super().__init__()
        self.conv0_up = _UpsampleConv2d(in_channels, out_channels)
        self.epi1 = _LayerEpilogue(out_channels, latent)
        self.conv1 = _EqualizedConv2d(out_channels, out_channels, 3, gain=_SQRT2)
        self.epi2 = _LayerEpilogue(out_channels, latent)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        x = self.conv0_up(x)
        x = self.epi1(x, w[:, 0], noise[0])
        x = self.conv1(x)
        return self.epi2(x, w[:, 1], noise[1])


# -- the two networks --------------------------------------------------------------------


class StyleGANMapping(nn.Module):
    """Mapping network ``z (B, latent) -> w (B, latent)``; keys ``dense{i}.weight/bias``.

    ``z`` is pixel-normalised first (divided by its RMS over the latent axis, eps 1e-8), so
    its scale does not matter; every dense layer, the last included, is followed by
    LeakyReLU(0.2). No truncation trick and no broadcast to per-layer ``w``: PULSE uses
    this network only to fit its latent prior (`StyleGANGenerator.gaussian_fit`).
    """

    def __init__(self, config: StyleGANConfig = StyleGANConfig()) -> None:
        super().__init__()
        self.config = config
        for i in range(config.mapping_layers):
            layer = _EqualizedLinear(config.latent, config.latent, _SQRT2, config.mapping_lrmul)
            self.add_module(f"dense{i}", layer)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i in range(self.config.mapping_layers):
            x = F.leaky_relu(getattr(self, f"dense{i}")(x), LRELU_SLOPE)
        return x


class StyleGANSynthesis(nn.Module):
    """Synthesis network ``(w (B, L, latent), noise[L]) -> image (B, 3, R, R)``.

    ``L = config.num_layers``; layer ``i`` uses ``w[:, i]`` and ``noise[i]`` of shape
    ``(B or 1, 1, r, r)`` with ``r = 2 ** (i // 2 + 2)`` (two layers per resolution). The
    output is the raw ``torgb`` value (no tanh, no clamp); the trained FFHQ model puts
    images in about ``[-1, 1]``. Keys: ``blocks.{r}x{r}.*`` and ``torgb.*``.
    """

    def __init__(self, config: StyleGANConfig = StyleGANConfig()) -> None:
        super().__init__()
        self.config = config
        # torgb is registered first only to list the keys in the reference files' order.
        last = config.channels(config.resolution)
        self.torgb = _EqualizedConv2d(last, config.num_channels, 1, gain=1.0)
        blocks: dict[str, nn.Module] = {}
        previous = 0
        for r in config.block_resolutions:
            width = config.channels(r)
            if r == 4:
                blocks[f"{r}x{r}"] = _InputBlock(width, config.latent)
            else:
                blocks[f"{r}x{r}"] = _UpBlock(previous, width, config.latent)
            previous = width
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        layers = self.config.num_layers
        if w.dim() != 3 or w.shape[1] != layers or w.shape[2] != self.config.latent:
            raise ValueError(
                f"w must have shape (batch, {layers}, {self.config.latent}), got {tuple(w.shape)}"
            )
        if len(noise) != layers:
            raise ValueError(f"expected {layers} noise tensors, got {len(noise)}")
        first, *rest = self.blocks.values()
        x = first(w[:, 0:2], noise[0:2])
        for i, block in enumerate(rest, start=1):
            x = block(x, w[:, 2 * i : 2 * i + 2], noise[2 * i : 2 * i + 2])
        return self.torgb(x)


# -- weight files ------------------------------------------------------------------------

_Shapes = Shapes
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)x\1\.")
_DENSE_KEY = re.compile(r"^dense(\d+)\.weight$")


@functools.lru_cache(maxsize=None)
def _expected_shapes(config: StyleGANConfig) -> tuple[_Shapes, _Shapes]:
    """Key -> shape of the mapping and synthesis state dicts (built on meta: free)."""
    with torch.device("meta"):
        mapping, synthesis = StyleGANMapping(config), StyleGANSynthesis(config)
    return (
        {k: tuple(v.shape) for k, v in mapping.state_dict().items()},
        {k: tuple(v.shape) for k, v in synthesis.state_dict().items()},
    )


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _load_error_summary(exc: BaseException) -> str:
    """The informative line of a torch.load failure (torch's first line is boilerplate).

    For a refused pickle it is the "WeightsUnpickler error: Unsupported global ..." line,
    which names what the file would have needed to import.
    """
    lines = [ln.strip() for ln in _ANSI_ESCAPE.sub("", str(exc)).splitlines() if ln.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line:
            return line.split(". ")[0].rstrip(".")  # drop torch's "how to allowlist it"
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _read_state_dict(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """A plain ``{str: Tensor}`` from ``path``, read with ``weights_only=True`` only.

    Never unpickles code: a file that needs more than tensors and plain containers is
    refused, since weight files from the internet are untrusted.
    """
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:  # missing / unreadable file: the OS error already names it
        raise
    except Exception as exc:  # refused pickle, junk (KeyError, EOFError...), bad zip, device
        raise ValueError(
            f"{str(path)!r} could not be loaded with torch.load(weights_only=True) "
            f"({_load_error_summary(exc)}); it must be a plain state dict of tensors, "
            "as written by torch.save(module.state_dict(), path)"
        ) from None
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{str(path)!r} holds a {type(obj).__name__}; it must be a plain state dict of tensors"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{str(path)!r}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "it must be a plain state dict of tensors"
            )
    return dict(obj)


def _check_shapes(path: Path, what: str, got: Mapping[str, torch.Tensor], want: _Shapes) -> None:
    """Raise ValueError naming ``path`` and the first offending keys unless keys/shapes match."""
    require_keys(got, want, lambda message: ValueError(f"{str(path)!r}: {message}"),
                 f"a matching StyleGAN {what} state dict")


def _vote(state: Mapping[str, torch.Tensor], keys: Sequence[str], dim: int) -> int | None:
    """The most common size along ``dim`` of those of ``keys`` present with enough dims.

    Voting over every tensor that carries a size keeps one damaged entry from changing the
    inferred architecture, so the error points at that entry and not at the whole file.
    """
    sizes = [
        int(t.shape[dim])
        for k in keys
        if isinstance(t := state.get(k), torch.Tensor) and t.dim() > dim
    ]
    return collections.Counter(sizes).most_common(1)[0][0] if sizes else None


def _infer_config(
    mapping: Mapping[str, torch.Tensor], synthesis: Mapping[str, torch.Tensor]
) -> StyleGANConfig:
    """The architecture the two state dicts describe, as far as they are well formed.

    Fields that cannot be read from the files fall back to the FFHQ defaults, so a damaged
    file is then reported by the key/shape check rather than by an obscure error here.
    Widths are summarised as ``fmap_max = widest block`` and ``fmap_base = last width *
    2**(log2(R) - 1)`` (``fmap_decay = 1``), which reproduces every official width rule.
    """
    default = StyleGANConfig()
    fields: dict[str, int] = {}
    dense = sorted(int(m.group(1)) for k in mapping if (m := _DENSE_KEY.match(k)))
    if dense:
        fields["mapping_layers"] = dense[-1] + 1
    latent = _vote(mapping, [f"dense{i}.weight" for i in dense], dim=1)
    if latent is not None:
        fields["latent"] = latent
    sizes = {int(m.group(1)) for k in synthesis if (m := _BLOCK_KEY.match(k))}
    if sizes:
        fields["resolution"] = max(sizes)
    num_channels = _vote(synthesis, ["torgb.weight", "torgb.bias"], dim=0)
    if num_channels is not None:
        fields["num_channels"] = num_channels
    resolution = fields.get("resolution", default.resolution)
    widths: list[int] = []
    for r in (2**k for k in range(2, resolution.bit_length())):
        p = f"blocks.{r}x{r}."
        first = ("conv",) if r == 4 else ("conv0_up", "conv1")
        keys = [p + f"{layer}.{name}" for layer in first for name in ("weight", "bias")]
        keys += [p + f"epi{i}.noise.weight" for i in (1, 2)]
        width = _vote(synthesis, keys, dim=0)
        if width is None:
            widths = []
            break
        widths.append(width)
    if widths:
        fields["fmap_max"] = max(widths)
        fields["fmap_base"] = widths[-1] * 2 ** (resolution.bit_length() - 2)
    try:
        return dataclasses.replace(default, **fields)
    except ValueError:
        return default


# -- the generator -----------------------------------------------------------------------


class StyleGANGenerator(nn.Module):
    """Mapping + synthesis networks, loadable from PULSE's ``mapping.pt`` / ``synthesis.pt``.

    ``StyleGANGenerator()`` is the FFHQ 1024 architecture with random (StyleGAN-style)
    weights, for benchmarks; `from_files` loads trained weights.
    """

    config: StyleGANConfig
    mapping: StyleGANMapping
    synthesis: StyleGANSynthesis

    def __init__(self, config: StyleGANConfig = StyleGANConfig()) -> None:
        super().__init__()
        self.config = config
        self.mapping = StyleGANMapping(config)
        self.synthesis = StyleGANSynthesis(config)

    @classmethod
    def from_files(
        cls,
        mapping: str | Path,
        synthesis: str | Path,
        map_location: str | torch.device = "cpu",
        *,
        config: StyleGANConfig | None = None,
    ) -> StyleGANGenerator:
        """Load PULSE-format state dicts (``torch.save(module.state_dict())``), strictly.

        Files are read with ``torch.load(weights_only=True)`` only. The architecture is
        ``config`` if given, else inferred from the files (resolution, latent size, widths),
        so the official files give the FFHQ 1024 model and smaller test files their own.
        Raises ValueError naming the file if it is not a plain state dict of tensors, or if
        its keys or shapes do not match (first missing / unexpected / mis-shaped keys).
        """
        mapping_path, synthesis_path = Path(mapping), Path(synthesis)
        mapping_sd = _read_state_dict(mapping_path, map_location)
        synthesis_sd = _read_state_dict(synthesis_path, map_location)
        if config is None:
            config = _infer_config(mapping_sd, synthesis_sd)
        want_mapping, want_synthesis = _expected_shapes(config)
        _check_shapes(mapping_path, "mapping", mapping_sd, want_mapping)
        _check_shapes(synthesis_path, "synthesis", synthesis_sd, want_synthesis)
        # Build without random init (meta), allocate on the target device, then fill every
        # parameter and buffer from the files (strict: nothing is left uninitialised).
        with torch.device("meta"):
            generator = cls(config)
        generator.to_empty(device=map_location)
        generator.mapping.load_state_dict(mapping_sd, strict=True)
        generator.synthesis.load_state_dict(synthesis_sd, strict=True)
        return generator

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per-sample shape ``(1, r, r)`` of each noise input, in synthesis order.

        Two per resolution: ``r = 2 ** (i // 2 + 2)``, i.e. 4, 4, 8, 8, ..., R, R — the same
        layout PULSE builds its noise list with.
        """
        return [(1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2)) for i in range(self.config.num_layers)]

    def synthesize(self, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """Image ``(B, 3, R, R)`` from per-layer ``w (B, num_layers, latent)`` and noise.

        ``noise[i]`` has shape ``(B, 1, r, r)`` (or ``(1, 1, r, r)``, broadcast) with
        ``r`` from `noise_shapes`. ``w`` is used as given: PULSE's LeakyReLU(0.2) of its
        Gaussian-fitted latent is the caller's job. The output is not clamped; the trained
        model's range is about ``[-1, 1]`` (PULSE maps it to ``[0, 1]`` by ``(x + 1) / 2``).
        """
        return self.synthesis(w, noise)

    def forward(self, z: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """Plain StyleGAN sampling: ``mapping(z)`` broadcast to every layer, no truncation."""
        w = self.mapping(z)
        return self.synthesis(w.unsqueeze(1).expand(-1, self.config.num_layers, -1), noise)

    @torch.no_grad()
    def gaussian_fit(
        self, n: int = 1_000_000, seed: int = 0, batch: int = 10_000
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PULSE's latent prior: mean and std of ``LeakyReLU(5)(mapping(z))``, ``z ~ N(0, I)``.

        LeakyReLU with slope 5 undoes the mapping's final LeakyReLU(0.2), so the statistics
        are those of the last dense layer's pre-activation, which PULSE models as Gaussian.
        ``n`` vectors ``z`` are drawn in successive batches from one
        ``torch.Generator().manual_seed(seed)`` on the CPU (so the draws do not depend on the
        device), mapped on the mapping network's device, and reduced in float64 with
        Chan's pairwise update (exact merging, no large-sum cancellation). ``std`` is the
        unbiased (n - 1) estimate, like ``Tensor.std`` in the reference. Returns float32
        ``(mean, std)``, each ``(latent,)``, on the mapping's device.

        The reference draws ``torch.randn(1_000_000, 512)`` on CUDA after
        ``torch.manual_seed(0)``; those exact draws are not reproducible on other devices,
        so results agree with its shipped ``gaussian_fit.pt`` statistically, not bitwise.
        """
        if n < 2:
            raise ValueError(f"n must be at least 2 to estimate a std, got {n}")
        if batch < 1:
            raise ValueError(f"batch must be positive, got {batch}")
        weight = next(self.mapping.parameters())  # the device and dtype to map on
        generator = torch.Generator().manual_seed(seed)
        latent = self.config.latent
        count = 0
        mean = torch.zeros(latent, dtype=torch.float64)
        m2 = torch.zeros(latent, dtype=torch.float64)
        while count < n:
            size = min(batch, n - count)
            z = torch.randn(size, latent, generator=generator)
            y = F.leaky_relu(self.mapping(z.to(device=weight.device, dtype=weight.dtype)), 5.0)
            y = y.to(device="cpu", dtype=torch.float64)
            batch_mean = y.mean(dim=0)
            batch_m2 = (y - batch_mean).square().sum(dim=0)
            delta = batch_mean - mean
            total = count + size
            mean += delta * (size / total)
            m2 += batch_m2 + delta.square() * (count * size / total)
            count = total
        std = (m2 / (count - 1)).sqrt()
        return mean.to(weight.device, torch.float32), std.to(weight.device, torch.float32)
