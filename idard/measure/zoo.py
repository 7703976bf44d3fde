"""The published weights IDA-RD is computed with: where each file comes from.

One `ZooEntry` per file a published model reads, with the download URL(s) from its
authors' own pages, its file name in the weights cache, size, licence and SHA-256 where
it can be known without downloading it. ``idard-bench weights fetch NAME`` downloads an
entry into the cache (`idard.measure.weights.fetch`: progress, resume, hash check);
``idard-bench list`` shows whether each is present, fetchable or missing. Suites then name
the file by its bare name (``srflow(weights=SRFlow_DF2K_4X.pth)``), which resolves from the
cache on any machine, cluster nodes included.

What is known, and from where:

* SRFlow (andreas128/SRFlow, ``setup.sh`` lines 35-37, README "Download the pretrained
  models"): all checkpoints come in one archive, ``pretrained_models.zip``, which unzips to
  ``pretrained_models/*.pth``. The host has answered 404 since 2024 (andreas128/SRFlow
  issue 64); the URL is kept because it is the authors' and may come back; otherwise
  place the files in the cache by hand. No hash or size is published. Licence: CC BY-NC-SA
  4.0 (the repository's LICENSE; the IDA-RD repository, which uses them, says the same).
* PULSE (adamian98/pulse, ``PULSE.py`` lines 23 and 37): StyleGAN FFHQ 1024 synthesis and
  mapping state dicts on Google Drive (``drive.google.com/uc?id=...``; Drive may answer
  with a quota or confirmation page instead of the file, which `fetch` refuses). They are
  NVIDIA's StyleGAN FFHQ weights (CC BY-NC 4.0, NVlabs/stylegan). ``gaussian_fit.pt`` is in
  the PULSE repository itself (4566 bytes; its SHA-256 computed from the repository's
  blob); the repository carries no licence file.
* Diffusion SR checkpoints are to be added here by the diffusion models (same fields).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from idard.measure.weights import cache_dir, recorded_sha256

SRFLOW_ARCHIVE = "http://data.vision.ee.ethz.ch/alugmayr/SRFlow/pretrained_models.zip"
SRFLOW_SOURCE = "https://github.com/andreas128/SRFlow (setup.sh, README)"
SRFLOW_LICENCE = "CC BY-NC-SA 4.0 (research only)"
PULSE_SOURCE = "https://github.com/adamian98/pulse (PULSE.py)"
STYLEGAN_LICENCE = "CC BY-NC 4.0 (NVIDIA StyleGAN FFHQ weights)"

GiB = 1 << 30

Availability = Literal["present", "fetchable", "missing"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One published weights file.

    ``urls``: where to download it, in order of preference; ``member``: its path inside
    the archive at the URL, when the URL is an archive (SRFlow's zip). ``size`` in bytes and
    ``sha256`` are None when nobody has published them. ``max_size``: a cap on the bytes
    downloaded (the archive's, for a member) where no size is known, so a server that
    sends without end fills no disk: a generous bound, not the file's size.
    """

    name: str
    file: str
    family: str
    urls: tuple[str, ...]
    licence: str
    source: str
    member: str = ""
    size: int | None = None
    sha256: str | None = None
    max_size: int | None = None
    note: str = ""
    #: False when its host is known not to serve the file (SRFlow's answers 404): the
    #: URL is kept (it is the authors' and may come back) but ``list`` says ``missing``.
    host_answers: bool = True

    @property
    def cached(self) -> Path:
        return cache_dir() / self.file

    def availability(self) -> Availability:
        """``present`` in the cache, ``fetchable`` (a URL is known and its host serves
        it, as far as idard knows; nothing is asked over the network) or ``missing``."""
        if self.cached.is_file():
            return "present"
        return "fetchable" if self.urls and self.host_answers else "missing"

    @property
    def download_size(self) -> int | None:
        """The known size of what is downloaded: ``size``, unless that is an archive member's."""
        return None if self.member else self.size

    @property
    def size_cap(self) -> int | None:
        """At most this many bytes are downloaded for this entry."""
        return self.download_size if self.download_size is not None else self.max_size

    def expected_sha256(self) -> str | None:
        """The published hash, else the one recorded when the file was first fetched."""
        return self.sha256 or recorded_sha256(self.file)


def _srflow(name: str, note: str = "") -> ZooEntry:
    return ZooEntry(name=name, file=f"{name}.pth", family="srflow", urls=(SRFLOW_ARCHIVE,),
                    member=f"pretrained_models/{name}.pth", licence=SRFLOW_LICENCE, source=SRFLOW_SOURCE,
                    max_size=8 * GiB,  # the archive of every SRFlow checkpoint; its size was never published
                    note=note or "host answers 404 since 2024 (andreas128/SRFlow#64): place the file by hand",
                    host_answers=False)


ENTRIES: tuple[ZooEntry, ...] = (
    _srflow("SRFlow_DF2K_4X"),
    _srflow("SRFlow_DF2K_8X"),
    _srflow("SRFlow_CelebA_8X"),
    ZooEntry(name="pulse-stylegan-ffhq-synthesis", file="synthesis.pt", family="pulse",
             urls=("https://drive.google.com/uc?id=1TCViX1YpQyRsklTVYEJwdbmK91vklCo8",),
             licence=STYLEGAN_LICENCE, source=PULSE_SOURCE, max_size=2 * GiB,  # one StyleGAN network
             note="Google Drive; may answer with a quota page"),
    ZooEntry(name="pulse-stylegan-ffhq-mapping", file="mapping.pt", family="pulse",
             urls=("https://drive.google.com/uc?id=14R6iHGf5iuVx3DMNsACAl7eBr7Vdpd0k",),
             licence=STYLEGAN_LICENCE, source=PULSE_SOURCE, max_size=2 * GiB,  # one StyleGAN network
             note="Google Drive; may answer with a quota page"),
    ZooEntry(name="pulse-gaussian-fit", file="gaussian_fit.pt", family="pulse",
             urls=("https://raw.githubusercontent.com/adamian98/pulse/master/gaussian_fit.pt",),
             licence="none stated (adamian98/pulse has no licence file)", source=PULSE_SOURCE, size=4566,
             sha256="6c638855d24ea56d40512cc6d8e7a6cac4c3db6fec232a0bf58e0f78d6336d16"),
)
ZOO: dict[str, ZooEntry] = {e.name: e for e in ENTRIES}


def find_entry(name: str) -> ZooEntry:
    """An entry by its name or its file name (``SRFlow_DF2K_4X`` or ``SRFlow_DF2K_4X.pth``)."""
    for entry in ENTRIES:
        if name in (entry.name, entry.file):
            return entry
    raise KeyError(f"no published weights named {name!r}; known: {', '.join(ZOO)}")
