"""Reading weight files safely and matching them to a network: one way for every model family.

Weight files from the internet are untrusted, so nothing here runs code from them:
safetensors, or ``torch.load(weights_only=True)`` (tensors and plain containers only).
Published checkpoints come wrapped in various ways: a dict around the state dict
(``{'state_dict': ...}``, ``{'params_ema': ...}``), keys prefixed by the wrapper they were
saved from (``module.`` for ``DataParallel``, ``_orig_mod.`` for ``torch.compile``); the
helpers below undo both. A file that does not fit its network is refused with one message
naming the file and the first missing, unexpected and mis-shaped keys.

Each family keeps its own error type (the runner tells setup errors apart by type), so the
helpers take ``fail``: it turns a message about the file into that family's error, naming
the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

#: State-dict key -> tensor shape.
Shapes = dict[str, tuple[int, ...]]
#: Builds a family's error from a message (the family's error names the file).
Fail = Callable[[str], Exception]

#: Key prefixes left by the wrappers a network was saved from: DataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint(path: str | Path, fail: Fail, map_location: str | torch.device = "cpu") -> tuple[object, dict[str, str]]:
    """What ``path`` holds and its safetensors metadata ({} for other files), read without
    running code from it."""
    p = Path(path)
    if not p.is_file():
        raise fail("no such weights file")
    if p.suffix == ".safetensors":
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(p), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
            return load_file(str(p), device=str(map_location)), meta
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise fail(f"not a readable safetensors file ({exc})") from None
    try:
        return torch.load(p, map_location=map_location, weights_only=True), {}
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, bad zip...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(f"not loadable as plain tensors with torch.load(weights_only=True) ({first}); "
                   "re-save it as a state dict or safetensors") from None


def state_dict_of(obj: object, fail: Fail, wrappers: Sequence[str] = (),
                  prefixes: Sequence[str] = WRAPPER_PREFIXES) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` state dict in a checkpoint: taken out of the first of
    ``wrappers`` that holds it (only when the checkpoint holds no tensors itself), each of
    ``prefixes`` removed from the keys."""
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in wrappers:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise fail(f"holds a {type(obj).__name__}, not a state dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise fail(f"is not a state dict of tensors (entry {key!r} is a {type(value).__name__}, not a tensor)")
    return strip_prefixes(obj, prefixes)


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: Sequence[str] = WRAPPER_PREFIXES) -> dict[str, torch.Tensor]:
    """``state`` with each of ``prefixes`` removed, in order, from the start of every key."""
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def shapes(state: Mapping[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}


def key_mismatch(found: Shapes, expected: Shapes, limit: int = 4) -> tuple[int, str]:
    """How far ``found`` is from ``expected`` (0: exactly its keys and shapes) and a summary
    naming the first missing, unexpected and mis-shaped keys."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {found[k]} (expected {expected[k]})" for k in expected if k in found and found[k] != expected[k]]

    def first(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    parts = [f"{len(items)} {label}: {first(items)}"
             for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
             if items]
    return len(missing) + len(unexpected) + len(wrong), "; ".join(parts)


def require_keys(state: Mapping[str, torch.Tensor], expected: Shapes, fail: Fail, what: str) -> None:
    """Raise ``fail("not <what>: ...")`` unless ``state`` has exactly the keys and shapes of
    ``expected`` (a network's `shapes` of its ``state_dict()``)."""
    count, summary = key_mismatch(shapes(state), expected)
    if count:
        raise fail(f"not {what}: {summary}")
