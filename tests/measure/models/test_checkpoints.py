"""Reading weight files for every model family (idard.measure.models.checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from idard.measure.models.checkpoints import read_checkpoint, require_keys, shapes, state_dict_of
from idard.measure.models.diffusion.checkpoint import DiffusionWeightsError, load_into, read_tensors
from idard.measure.models.pulse.generators import DCGANFaces, GeneratorWeightsError


def _fail(message: str) -> ValueError:
    return ValueError(f"w.pth: {message}")


def test_wrappers_and_wrapper_prefixes_are_taken_off(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 3)
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module._orig_mod.{k}": v for k, v in net.state_dict().items()}}, path)
    obj, meta = read_checkpoint(path, _fail)
    state = state_dict_of(obj, _fail, wrappers=("params_ema", "state_dict"))
    assert meta == {} and set(state) == {"weight", "bias"}
    require_keys(state, shapes(net.state_dict()), _fail, "a Linear")  # matches: no error


def test_a_file_of_another_network_names_the_file_and_the_keys_in_every_family(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}, path)
    with pytest.raises(DiffusionWeightsError, match=r"other\.pth.*not a Linear: 1 missing keys: bias; "
                                                    r"1 unexpected keys: extra"):
        load_into(torch.nn.Linear(2, 3), read_tensors(path)[0], path)
    with pytest.raises(GeneratorWeightsError, match=r"other\.pth: not a face DCGAN generator: \d+ missing keys: .*"
                                                    r"2 unexpected keys: weight, extra"):
        DCGANFaces(path)
    torch.save({"weight": torch.zeros(4, 2), "bias": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"1 wrong shapes: weight \(4, 2\) \(expected \(3, 2\)\)"):
        require_keys(torch.load(path), shapes(torch.nn.Linear(2, 3).state_dict()), _fail, "a Linear")


def test_what_is_not_plain_tensors_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="w.pth: no such weights file"):
        read_checkpoint(tmp_path / "missing.pth", _fail)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"w.pth: not loadable as plain tensors with torch.load\(weights_only=True\)"):
        read_checkpoint(tmp_path / "junk.pth", _fail)
    with pytest.raises(ValueError, match="entry 'a' is a int, not a tensor"):
        state_dict_of({"a": 1}, _fail)
