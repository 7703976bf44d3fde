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
import functools
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from idard.measure.models.checkpoints import read_checkpoint, require_keys, shapes, state_dict_of
from idard.measure.models.diffusion.schedule import ResShiftSchedule
from idard.measure.models.diffusion.tiny import TinyDenoiser, TinyDenoiserConfig

DENOISER_METADATA_KEY = "idard.diffusion.denoiser"
SCHEDULE_METADATA_KEY = "idard.diffusion.schedule"
_WRAPPERS = ("state_dict", "params_ema", "model")


class DiffusionWeightsError(ValueError):
    """A weights file that is missing, unreadable, or not the network it should hold."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"diffusion weights {str(path)!r}: {message}")
        self.path = str(path)


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict with wrapper prefixes removed, safetensors metadata or {})."""
    fail = functools.partial(DiffusionWeightsError, path)
    obj, meta = read_checkpoint(path, fail)
    return state_dict_of(obj, fail, _WRAPPERS), meta


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Copy ``state`` into ``module``, naming missing/unexpected keys and bad shapes."""
    require_keys(state, shapes(module.state_dict()), functools.partial(DiffusionWeightsError, path),
                 f"a {type(module).__name__}")
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
