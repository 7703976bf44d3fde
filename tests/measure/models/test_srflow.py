"""SRFlow: published-checkpoint layout, invertibility, reproducible sampling, safe loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from idard.measure.models import MODELS
from idard.measure.models.base import SRModel, sha256_file
from idard.measure.registry import SpecError
from idard.measure.models.srflow import (
    DF2K_4X,
    OFFICIAL_CONFIGS,
    TINY_4X,
    SRFlow,
    SRFlowNet,
    SRFlowWeightsError,
    save_weights,
)
from idard.measure.models.srflow import checkpoint as checkpoint_module

FIXTURE = Path(__file__).parent / "fixtures" / "srflow_official_keys.json"


def _perturbed_tiny(seed: int = 0) -> SRFlowNet:
    """An untrained TINY_4X whose couplings and priors are not the identity.

    Zero-initialised layers make an untrained flow trivial; small random weights there,
    plus Glow's data-dependent ActNorm init, give a generic invertible network.
    """
    torch.manual_seed(seed)
    net = SRFlowNet(TINY_4X)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.add_(torch.randn_like(p) * 0.01)
    gen = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 3, 32, 32, generator=gen)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    net.data_dependent_init(hr, lr)
    return net.eval()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("srflow") / "tiny.safetensors"
    save_weights(_perturbed_tiny(), path)
    return path


# -- (a) the published networks' state-dict layout -------------------------------------

@pytest.mark.parametrize("name", sorted(OFFICIAL_CONFIGS))
def test_state_dict_keys_and_shapes_equal_the_official_network(name: str) -> None:
    official = json.loads(FIXTURE.read_text())[f"SRFlow_{name}"]
    with torch.device("meta"):
        ours = SRFlowNet(OFFICIAL_CONFIGS[name]).state_dict()
    assert sorted(ours) == sorted(official)
    assert {k: list(v.shape) for k, v in ours.items()} == official


# -- (b) published-style checkpoints load through the plug-in --------------------------

def test_full_size_checkpoint_loads_with_auto_config_with_or_without_module_prefix(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    state = SRFlowNet(DF2K_4X).state_dict()
    plain, wrapped = tmp_path / "SRFlow_DF2K_4X.pth", tmp_path / "dataparallel.pth"
    torch.save(state, plain)
    torch.save({f"module.{k}": v for k, v in state.items()}, wrapped)
    for path in (plain, wrapped):
        model = MODELS.create(f"srflow(weights={str(path)!r})")
        assert isinstance(model, SRModel)
        assert model.architecture == DF2K_4X and model.scale == 4
        loaded = model.to("cpu").network().state_dict()
        key = "flowUpsamplerNet.layers.5.affine.fAffine.0.weight"
        assert torch.equal(loaded[key], state[key])
        assert torch.equal(loaded["RRDB.RRDB_trunk.22.RDB3.conv5.bias"], state["RRDB.RRDB_trunk.22.RDB3.conv5.bias"])
        out = model.sample(torch.rand(1, 3, 3, 5), seeds=[0])
        assert out.shape == (1, 1, 3, 12, 20)


def test_the_default_heat_is_the_reference_notebooks_else_the_checkpoints_own_config(tiny_weights: Path) -> None:
    """IDA_RD_SRFlow.ipynb samples SRFlow_DF2K_4X at 1.1 and SRFlow_CelebA_8X at 1.0; it never
    runs SRFlow_DF2K_8X, whose own config (SRFlow confs/SRFlow_DF2K_8X.yml) says 0.9. An
    explicit heat wins; the embedded model keeps its own."""
    from idard.measure.models.srflow import configs

    heats = {name: configs.reference_heat(cfg) for name, cfg in configs.OFFICIAL_CONFIGS.items()}
    assert heats == {"DF2K_4X": 1.1, "DF2K_8X": 0.9, "CelebA_8X": 1.0}
    assert MODELS.create(f"srflow(weights={str(tiny_weights)!r})").default_heat == 1.1  # a 4x checkpoint
    assert MODELS.create(f"srflow(weights={str(tiny_weights)!r}, heat=0.5)").default_heat == 0.5
    assert MODELS.create("srflow-tiny-4x").default_heat == 0.7
    lr = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    unset = MODELS.create(f"srflow(weights={str(tiny_weights)!r})").sample(lr, [3])
    assert torch.equal(unset, MODELS.create(f"srflow(weights={str(tiny_weights)!r}, heat=1.1)").sample(lr, [3]))


def test_named_config_and_canonical_id(tiny_weights: Path) -> None:
    model = MODELS.create(f"srflow(weights={str(tiny_weights)!r}, config='TINY_4X', heat=0.9)")
    assert model.id == f"srflow(weights={tiny_weights.name!r},config='TINY_4X',heat=0.9)"  # by name, not path
    assert MODELS.create(f"srflow(weights={str(tiny_weights)!r})").id == f"srflow(weights={tiny_weights.name!r})"
    assert model.scale == 4
    assert model.weights_hash == sha256_file(tiny_weights)
    with pytest.raises(SpecError, match="unknown SRFlow config 'DF2K_16X'"):
        MODELS.create(f"srflow(weights={str(tiny_weights)!r}, config='DF2K_16X')")
    with pytest.raises(SpecError, match="heat"):
        MODELS.create(f"srflow(weights={str(tiny_weights)!r}, heat=-1)")


# -- (c) both directions -----------------------------------------------------------------

def test_normal_then_reverse_reconstructs_the_hr_image() -> None:
    net = _perturbed_tiny(seed=1)
    gen = torch.Generator().manual_seed(5)
    hr = torch.rand(2, 3, 32, 48, generator=gen)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    with torch.no_grad():
        enc = net.encode(hr, lr)
        (z_shape, eps_shapes) = net.latent_shapes(32, 48)
        assert enc.z.shape[1:] == z_shape and [e.shape[1:] for e in enc.eps] == eps_shapes
        rec, logdet = net.decode(enc.z, enc.eps, net.condition(lr))
    assert (rec - hr).abs().max() < 1e-5  # measured: 1.1e-6 at most over seeds 1-3
    # |log-det| is ~2900 here, where one float32 step is 2.4e-4; measured: 1e-3 at most
    torch.testing.assert_close(logdet, -enc.logdet, atol=2e-3, rtol=0)


def test_nll_is_finite_per_example_and_a_training_step_lowers_it() -> None:
    net = _perturbed_tiny(seed=2).train()
    gen = torch.Generator().manual_seed(3)
    hr = torch.rand(2, 3, 16, 16, generator=gen)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return net.nll_bits_per_dim(hr, lr, quant=32, generator=torch.Generator().manual_seed(0))

    first = loss()
    assert first.shape == (2,) and torch.isfinite(first).all()
    first.mean().backward()
    opt.step()
    assert loss().mean() < first.mean()


# -- (d) sampling ------------------------------------------------------------------------

def test_samples_are_reproducible_per_seed_and_independent_of_batching(tiny_weights: Path) -> None:
    model = MODELS.create(f"srflow(weights={str(tiny_weights)!r})")
    gen = torch.Generator().manual_seed(9)
    lr = torch.rand(2, 3, 9, 12, generator=gen)  # odd height: reflect-padded, cropped back
    rng_before = torch.random.get_rng_state()
    batch = model.sample(lr, seeds=[11, 4, 29])
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    assert batch.shape == (2, 3, 3, 36, 48)
    assert torch.isfinite(batch).all()
    assert torch.equal(model.sample(lr, seeds=[11, 4, 29]), batch)
    for b in range(2):
        for k, seed in enumerate([11, 4, 29]):
            alone = model.sample(lr[b : b + 1], seeds=[seed])[0, 0]
            assert (alone - batch[b, k]).abs().max() < 1e-5
    assert (batch[:, 0] - batch[:, 1]).abs().mean() > 1e-3
    cold = model.sample(lr, seeds=[1, 2], temperature=0.0)
    assert torch.equal(cold[:, 0], cold[:, 1])  # heat 0: the mode, whatever the seed


def test_conditioning_runs_once_per_lr_batch_not_per_sample(tiny_weights: Path) -> None:
    model = MODELS.create(f"srflow(weights={str(tiny_weights)!r}, heat=0.8)")
    net = model.network("cpu")
    calls: list[int] = []
    handle = net.RRDB.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        model.sample(torch.rand(2, 3, 8, 8), seeds=[1, 2, 3, 4])
    finally:
        handle.remove()
    assert calls == [2]


def test_weights_are_read_once_and_shared_but_not_pickled(
    tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    original = checkpoint_module.read_state_dict

    def counting(path):  # type: ignore[no-untyped-def]
        reads.append(str(path))
        return original(path)

    monkeypatch.setattr(checkpoint_module, "read_state_dict", counting)  # the model reads through its module
    copy = tiny_weights.with_name("copy.safetensors")
    copy.write_bytes(tiny_weights.read_bytes())
    a = SRFlow(weights=str(copy), heat=1.0)
    b = SRFlow(weights=str(copy), heat=0.5)
    assert a.to("cpu").network() is b.to("cpu").network()
    a.sample(torch.rand(1, 3, 4, 4), seeds=[0])
    assert reads == [str(copy)]
    clone = pickle.loads(pickle.dumps(a))
    assert clone == a and clone._runtime.loaded is None


# -- (f) bad weights ---------------------------------------------------------------------

class _NotATensor:
    pass


def test_bad_weights_files_are_reported_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(SRFlowWeightsError, match="nowhere.pth"):
        SRFlow(weights=str(missing)).to("cpu")

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SRFlowWeightsError, match="garbage.pth"):
        SRFlow(weights=str(garbage)).scale

    pickled = tmp_path / "object.pth"
    torch.save({"net": _NotATensor()}, pickled)  # weights_only refuses to unpickle it
    with pytest.raises(SRFlowWeightsError, match="object.pth.*weights_only"):
        SRFlow(weights=str(pickled)).to("cpu")

    not_tensors = tmp_path / "numbers.pth"
    torch.save({"a": 1}, not_tensors)
    with pytest.raises(SRFlowWeightsError, match="numbers.pth.*not a tensor"):
        SRFlow(weights=str(not_tensors)).to("cpu")

    state = SRFlowNet(TINY_4X).state_dict()
    del state["RRDB.conv_first.bias"]
    state["extra.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(SRFlowWeightsError, match=r"partial.pth.*closest is TINY_4X.*RRDB\.conv_first\.bias.*extra\.weight"):
        SRFlow(weights=str(partial)).to("cpu")
    with pytest.raises(SRFlowWeightsError, match="partial.pth.*does not match config DF2K_4X"):
        SRFlow(weights=str(partial), config="DF2K_4X").to("cpu")
