"""The registered ``srflow`` SR model: SRFlow checkpoints behind the `SRModel` contract.

``srflow(weights='SRFlow_DF2K_4X.pth')`` wraps a published checkpoint (or one written
by `save_weights`); the architecture is recognised from the file's keys and shapes
(``config='auto'``) or named (``config='DF2K_8X'``).

Default heat: per checkpoint (`configs.DEFAULT_HEAT`): the IDA-RD reference notebook's
where it runs the checkpoint, 1.1 for SRFlow_DF2K_4X and 1.0 for SRFlow_CelebA_8X; 0.9,
the value in SRFlow's own config, for SRFlow_DF2K_8X, which the notebook never runs. A heat given in
the spec is part of the id, so records made at different heats never mix; the default
(no heat in the id) is fixed by the weights, whose SHA-256 every record carries.

Weights are read lazily (on ``to(device)``, ``scale`` or the first ``sample``) and each
file is loaded once per process and device, however many plug-in instances (e.g. one per
heat) use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS, ModelRuntime, sha256_file
from idard.measure.models.srflow.configs import SRFlowConfig, get_config, reference_heat
from idard.measure.registry import Plugin, SpecError
from idard.measure.weights import WeightsNotFound, resolve_weights

if TYPE_CHECKING:
    import torch

    from idard.measure.models.srflow import checkpoint, sampling
    from idard.measure.models.srflow.network import SRFlowNet
else:  # the networks and torch load when a model computes, not when it is named or listed
    torch = lazy_import("torch")
    checkpoint = lazy_import("idard.measure.models.srflow.checkpoint")
    sampling = lazy_import("idard.measure.models.srflow.sampling")

_FileKey = tuple[str, int, int, str]  # realpath, size, mtime_ns, requested config


class _Checkpoint:
    """One weights file, read once: its config and a network per device."""

    def __init__(self, config: SRFlowConfig, cpu_state: dict[str, torch.Tensor]) -> None:
        self.config = config
        self._cpu_state: dict[str, torch.Tensor] | None = cpu_state
        self.networks: dict[str, SRFlowNet] = {}

    def network(self, device: torch.device) -> SRFlowNet:
        key = str(device)
        with _CACHE_LOCK:
            return self.networks[key] if key in self.networks else self._build(key, device)

    def _build(self, key: str, device: torch.device) -> SRFlowNet:
        if self._cpu_state is not None:
            net = checkpoint.build_network(self._cpu_state, self.config, device)
            self._cpu_state = None  # the network now owns (a copy of) the tensors
        else:
            source = next(iter(self.networks.values()))
            net = checkpoint.build_network(source.state_dict(), self.config, device)
        self.networks[key] = net
        return net


_CACHE: OrderedDict[_FileKey, _Checkpoint] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.RLock()


def _file_key(path: str, config: str) -> _FileKey:
    try:
        st = os.stat(path)
    except OSError:
        raise checkpoint.SRFlowWeightsError(path, "no such file") from None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, config)


def _checkpoint(path: str, config: str) -> _Checkpoint:
    key = _file_key(path, config)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        sd, embedded = checkpoint.read_state_dict(path)
        ckpt = _Checkpoint(checkpoint.detect_config(path, sd, config, embedded), sd)
        _CACHE[key] = ckpt
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return ckpt


def _normalise_device(device: torch.device | str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


@MODELS.register("srflow")
@dataclasses.dataclass(frozen=True)
class SRFlow(Plugin):
    """SRFlow normalizing-flow SR (Lugmayr et al. 2020) from a checkpoint file.

    ``weights``: a ``.pth`` state dict (read with ``weights_only=True``) or a
    ``.safetensors`` file. ``config``: ``auto`` or DF2K_4X, DF2K_8X, CelebA_8X, TINY_4X.
    ``heat``: latent temperature (standard deviation of z and of every split's eps);
    unset, the checkpoint's default (`configs.DEFAULT_HEAT`: 1.1 DF2K_4X, 1.0 CelebA_8X,
    0.9 DF2K_8X).
    """

    weights: str = dataclasses.field(metadata={"path": "file"})
    config: str = "auto"
    heat: float | None = None
    _runtime: ModelRuntime = dataclasses.field(
        default_factory=ModelRuntime, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.weights:
            raise SpecError("srflow needs weights='path/to/SRFlow_*.pth' (or .safetensors)")
        if self.config != "auto":
            try:
                get_config(self.config)
            except KeyError as exc:
                raise SpecError(str(exc.args[0])) from None
        if self.heat is not None and (not math.isfinite(self.heat) or self.heat < 0):
            raise SpecError(f"srflow heat must be a finite number >= 0, got {self.heat}")

    # -- SRModel ------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        """The architecture's: named by ``config`` (then the file is only looked for, and
        its keys are checked when it is loaded), else read from the weights. So a suite of
        ``srflow-tiny-4x`` is validated (``status``) without loading torch."""
        if self.config != "auto":
            self.weight_files()  # a missing file is still refused where the suite is validated
            return get_config(self.config).scale
        return self._checkpoint().config.scale

    @property
    def weights_hash(self) -> str:
        rt = self._runtime
        with rt.lock:
            if rt.sha256 is None:
                rt.sha256 = sha256_file(self.weight_files()[0])
            return rt.sha256

    def weight_files(self) -> list[Path]:
        """The checkpoint, found as `idard.measure.weights.resolve_weights` finds files."""
        try:
            return [resolve_weights(self.weights)]
        except WeightsNotFound as exc:  # this model's own error type, as for unreadable files
            raise checkpoint.SRFlowWeightsError(self.weights, str(exc).removeprefix(f"{self.weights}: ")) from None

    def to(self, device: torch.device | str) -> SRFlow:
        self.network(device)
        return self

    def sample(
        self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None
    ) -> torch.Tensor:
        net = self.network(lr.device)
        heat = self.default_heat if temperature is None else float(temperature)
        return sampling.sample_sr(net, lr.to(torch.float32), seeds, heat)

    @property
    def default_heat(self) -> float:
        """The heat samples are drawn at: the spec's, else the checkpoint's default."""
        return self.heat if self.heat is not None else reference_heat(self.architecture)

    # -- extras -------------------------------------------------------------------------
    @property
    def architecture(self) -> SRFlowConfig:
        """The matched architecture (reads the weights if not yet read)."""
        return self._checkpoint().config

    def network(self, device: torch.device | str | None = None) -> SRFlowNet:
        """The loaded network on ``device`` (default: the current one, else CPU)."""
        rt = self._runtime
        with rt.lock:
            if device is None:
                dev = rt.device or torch.device("cpu")
            else:
                dev = _normalise_device(device)
            net = self._checkpoint().network(dev)
            rt.device = dev
            return net

    def _checkpoint(self) -> _Checkpoint:
        rt = self._runtime
        with rt.lock:
            if rt.loaded is None:
                rt.loaded = _checkpoint(str(self.weight_files()[0]), self.config)
            return rt.loaded
