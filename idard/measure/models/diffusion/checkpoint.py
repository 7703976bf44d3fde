"""Reading diffusion weights safely: published ``.pth`` files and idard's safetensors.

Every file is read without running code: ``torch.load(weights_only=True)`` (tensors and
plain containers only) or safetensors. ResShift's published checkpoints are plain state
dicts, some saved from ``DataParallel`` or ``torch.compile`` wrappers (keys prefixed
``module.`` or ``_orig_mod.``; the reference strips neither and matches keys instead:
``utils/util_net.py`` ``reload_model``), some wrapped in ``{'state_dict': ...}``
(``sampler.py`` ``load_model``). The embedded model's safetensors carry the denoiser
config and the chain's schedule in their metadata, so the file alone says how to sample.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from idard.measure.models.diffusion.schedule import ResShiftSchedule
from idard.measure.models.diffusion.tiny import TinyDenoiser, TinyDenoiserConfig

DENOISER_METADATA_KEY = "idard.diffusion.denoiser"
SCHEDULE_METADATA_KEY = "idard.diffusion.schedule"
_WRAPPERS = ("state_dict", "params_ema", "model")
_PREFIXES = ("module.", "_orig_mod.")


class DiffusionWeightsError(ValueError):
    """A weights file that is missing, unreadable, or not the network it should hold."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"diffusion weights {str(path)!r}: {message}")
        self.path = str(path)


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict with wrapper prefixes removed, safetensors metadata or {})."""
    p = Path(path)
    if not p.is_file():
        raise DiffusionWeightsError(p, "no such file")
    meta: dict[str, str] = {}
    if p.suffix == ".safetensors":
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(p), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
            obj: object = load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise DiffusionWeightsError(p, f"not a readable safetensors file ({exc})") from None
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DiffusionWeightsError(p, f"not readable with torch.load(weights_only=True) ({first})") from None
    if isinstance(obj, Mapping):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DiffusionWeightsError(p, "does not hold a state dict (a mapping of names to tensors)")
    state = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        state[key] = value
    return state, meta


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Copy ``state`` into ``module``, naming missing/unexpected keys and bad shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
           for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        if bad:
            parts.append(f"{len(bad)} wrong shapes (first: {bad[0]})")
        raise DiffusionWeightsError(path, f"not a {type(module).__name__}: " + "; ".join(parts))
    # float32 whatever the file stores (some checkpoints are saved in half precision)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=True)


def save_tiny(net: TinyDenoiser, schedule: ResShiftSchedule, path: str | Path) -> None:
    """Write the embedded denoiser as safetensors with its config and schedule embedded."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={
        "format": "pt",
        DENOISER_METADATA_KEY: json.dumps(net.config.to_dict()),
        SCHEDULE_METADATA_KEY: json.dumps(dataclasses.asdict(schedule)),
    })


def load_tiny(path: str | Path) -> tuple[TinyDenoiser, ResShiftSchedule]:
    """The embedded denoiser (eval mode, CPU) and the schedule it was trained with."""
    state, meta = read_tensors(path)
    try:
        config = TinyDenoiserConfig.from_dict(json.loads(meta[DENOISER_METADATA_KEY]))
        schedule = ResShiftSchedule(**json.loads(meta[SCHEDULE_METADATA_KEY]))
    except (KeyError, ValueError, TypeError) as exc:
        raise DiffusionWeightsError(path, f"no usable idard diffusion metadata ({exc})") from None
    net = TinyDenoiser(config)
    load_into(net, state, path)
    return net.eval().requires_grad_(False), schedule
