"""Reading SRFlow weights safely and matching them to an architecture.

Checkpoints are read with ``torch.load(weights_only=True)`` (tensors and plain
containers only, never arbitrary pickled objects) or with safetensors. The published
``SRFlow_*.pth`` files are plain state dicts, sometimes saved from a ``DataParallel``
wrapper (keys prefixed ``module.``). Files written by `save_weights` are safetensors and
carry their `SRFlowConfig` in the metadata, so new architectures load without a name.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from idard.measure.models.checkpoints import Shapes, key_mismatch, read_checkpoint, shapes, state_dict_of
from idard.measure.models.srflow.configs import KNOWN_CONFIGS, get_config
from idard.measure.models.srflow.network import SRFlowConfig, SRFlowNet

#: safetensors metadata key holding the JSON of the network's `SRFlowConfig`.
CONFIG_METADATA_KEY = "idard.srflow.config"

# Containers some training scripts wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "params", "params_ema", "model", "netG")


class SRFlowWeightsError(ValueError):
    """A weights file that is missing, unreadable, or not an SRFlow network we know."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"SRFlow weights {str(path)!r}: {message}")
        self.path = str(path)
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Pickled as its two arguments: a worker's error must reach the driver whole
        # (pickling only the formatted text made Ray's driver fail to deserialise it).
        return type(self), (self.path, self.message)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], SRFlowConfig | None]:
    """The state dict in ``path`` (``module.`` stripped) and its embedded config, if any."""
    fail = functools.partial(SRFlowWeightsError, path)
    obj, meta = read_checkpoint(path, fail)
    embedded: SRFlowConfig | None = None
    if CONFIG_METADATA_KEY in meta:
        try:
            embedded = SRFlowConfig.from_dict(json.loads(meta[CONFIG_METADATA_KEY]))
        except (ValueError, TypeError, KeyError) as exc:
            raise SRFlowWeightsError(path, f"bad embedded SRFlow config ({exc})") from None
    return state_dict_of(obj, fail, _WRAPPER_KEYS), embedded


@functools.lru_cache(maxsize=None)
def expected_shapes(config: SRFlowConfig) -> Shapes:
    """State-dict key -> shape of a network (built on the meta device: no memory, fast)."""
    with torch.device("meta"):
        net = SRFlowNet(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def detect_config(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    requested: str = "auto",
    embedded: SRFlowConfig | None = None,
) -> SRFlowConfig:
    """The config whose network has exactly the keys and shapes of ``state_dict``.

    ``requested`` names one (checked), or ``"auto"`` tries the embedded config and then
    every known one. Errors name the file and list a few missing/unexpected keys against
    the closest candidate.
    """
    found = shapes(state_dict)
    if requested != "auto":
        try:
            candidates = [get_config(requested)]
        except KeyError as exc:
            raise SRFlowWeightsError(path, str(exc.args[0])) from None
    else:
        candidates = ([embedded] if embedded is not None else []) + list(KNOWN_CONFIGS.values())
    scored = []
    for cfg in candidates:
        score, summary = key_mismatch(found, expected_shapes(cfg))
        if score == 0:
            return cfg
        scored.append((score, cfg.name, summary))
    score, name, summary = min(scored)
    what = f"does not match config {name}" if requested != "auto" else (
        f"matches no known SRFlow config ({', '.join(c.name for c in candidates)}); "
        f"closest is {name}"
    )
    raise SRFlowWeightsError(path, f"{what}: {summary}")


def load_network(
    path: str | Path, config: str = "auto", device: torch.device | str = "cpu"
) -> SRFlowNet:
    """Read, match and build the network in ``path`` on ``device``, in eval mode."""
    sd, embedded = read_state_dict(path)
    cfg = detect_config(path, sd, config, embedded)
    return build_network(sd, cfg, device)


def build_network(
    state_dict: Mapping[str, torch.Tensor], config: SRFlowConfig, device: torch.device | str = "cpu"
) -> SRFlowNet:
    """An eval-mode network holding ``state_dict`` (no random initialisation is run)."""
    with torch.device("meta"):
        net = SRFlowNet(config)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in state_dict.items()}
    net.load_state_dict(sd, strict=True, assign=True)
    net.requires_grad_(False)
    return net.to(device).eval()


def save_weights(net: SRFlowNet, path: str | Path) -> None:
    """Write ``net`` as safetensors with its config embedded (what `read_state_dict` reads)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    save_file(
        tensors,
        str(path),
        metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(net.config.to_dict())},
    )
