"""Age-, gender- and ethnicity-balanced subsets of a labelled face dataset (supplement Sec. 4).

The paper evaluates on FFHQ subsets "balanced in age, gender and ethnicity for a fair
evaluation": four age groups (Minors 0-18, Youth 19-36, Middle Aged 36-54, Seniors 54+),
three ethnic groups (Asian, White, Black) and two genders make 4 x 3 x 2 = 24 groups, and
images are selected from them evenly. Table 8 reports how balanced the result is by its
joint entropy over the 24 groups; a perfectly balanced subset has log2(24) = 4.585 bits.

The labels come from the user (the paper used FFHQ-features-dataset for age and gender and
DeepFace for ethnicity) as a CSV with one row per image. The draw is deterministic for a
seed: each group's images are shuffled by a generator seeded with (seed, group) and the
group takes the first ones. Quotas are filled evenly: every group gets size / 24, a group
with fewer images gives all it has and the shortfall is shared among the others (water
filling), so a subset is as balanced as the labels allow. The paper's K-means step
clusters by these same three labels, so grouping by them directly selects the same groups.

Age boundaries: the paper's ranges share their end points (36, 54); here an age belongs to
the first range that holds it (36 is Youth, 54 Middle Aged). Images with another ethnicity
label (DeepFace also says Indian, Middle Eastern, Latino Hispanic), a missing label or an
unreadable age are left out and counted.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath

import numpy as np

AGE_GROUPS = ("minor", "youth", "middle", "senior")
ETHNICITIES = ("asian", "white", "black")
GENDERS = ("male", "female")
#: Inclusive upper bounds of the first three age groups (the paper's 18, 36, 54).
AGE_BOUNDS = (18, 36, 54)
IDEAL_ENTROPY = math.log2(len(AGE_GROUPS) * len(ETHNICITIES) * len(GENDERS))

_ALIASES = {
    "gender": {"male": "male", "man": "male", "m": "male", "female": "female", "woman": "female", "f": "female"},
    "ethnicity": {"asian": "asian", "white": "white", "black": "black", "caucasian": "white",
                  "african american": "black"},
    "age": {"minor": "minor", "minors": "minor", "youth": "youth", "middle": "middle", "middle aged": "middle",
            "middle-aged": "middle", "senior": "senior", "seniors": "senior"},
}


class LabelsError(ValueError):
    """A labels file that cannot be read as asked; the message names the file and column."""


Group = tuple[str, str, str]  # (age group, ethnicity, gender)


def age_group(value: str) -> str | None:
    """A number of years or a group name -> one of `AGE_GROUPS` (None when unreadable)."""
    text = str(value).strip().lower()
    if text in _ALIASES["age"]:
        return _ALIASES["age"][text]
    try:
        years = float(text)
    except ValueError:
        return None
    if not math.isfinite(years) or years < 0:
        return None
    for bound, group in zip(AGE_BOUNDS, AGE_GROUPS):
        if years <= bound:
            return group
    return AGE_GROUPS[-1]


def _label(kind: str, value: str) -> str | None:
    return _ALIASES[kind].get(str(value).strip().lower())


@dataclasses.dataclass(frozen=True)
class Labelled:
    image: str
    group: Group


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which CSV columns hold the image name and the three labels."""

    image: str = "image"
    age: str = "age"
    gender: str = "gender"
    ethnicity: str = "ethnicity"


def read_labels(path: str | Path, columns: Columns = Columns()) -> tuple[list[Labelled], Counter]:
    """The labelled images of a CSV and why the others were left out (reason -> count)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # Excel's "CSV UTF-8" starts with a BOM
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            for column in dataclasses.astuple(columns):
                if column not in header:
                    raise LabelsError(f"{path}: no column {column!r}; the columns are {', '.join(header) or 'none'}")
            rows = list(reader)
    except FileNotFoundError:
        raise LabelsError(f"{path}: no such labels file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"{path}: cannot read labels ({exc})") from None
    kept, dropped = [], Counter()
    seen: set[str] = set()
    for row in rows:
        image = (row.get(columns.image) or "").strip()
        group = (age_group(row.get(columns.age) or ""), _label("ethnicity", row.get(columns.ethnicity) or ""),
                 _label("gender", row.get(columns.gender) or ""))
        if not image:
            dropped["no image name"] += 1
        elif image in seen:
            raise LabelsError(f"{path}: image {image!r} is listed twice")
        elif group[0] is None:
            dropped["age not readable"] += 1
        elif group[1] is None:
            dropped["ethnicity not Asian, White or Black"] += 1
        elif group[2] is None:
            dropped["gender not readable"] += 1
        else:
            seen.add(image)
            kept.append(Labelled(image, group))  # type: ignore[arg-type]
    return kept, dropped


def all_groups() -> list[Group]:
    return [(a, e, g) for a in AGE_GROUPS for e in ETHNICITIES for g in GENDERS]


def quotas(available: Mapping[Group, int], size: int, seed: int = 0) -> dict[Group, int]:
    """How many images each group gives: as equal as availability allows (water filling).

    Groups that cannot give their share give everything; the rest share what is left
    equally, and the last few images of an uneven split go to groups in an order drawn
    from ``seed``. Raises when the labels hold fewer than ``size`` images.
    """
    total = sum(available.values())
    if size > total:
        raise LabelsError(f"a subset of {size} images was asked for, but only {total} images have usable labels")
    groups = [g for g in all_groups() if available.get(g, 0) > 0]
    quota = dict.fromkeys(groups, 0)
    left, open_groups = size, list(groups)
    while left and open_groups:
        share = left // len(open_groups)
        if share == 0:  # fewer images left than open groups: one more each, in a seeded order
            order = np.random.default_rng(_seed(seed, "remainder")).permutation(len(open_groups))
            for i in order[:left]:
                quota[open_groups[i]] += 1
            break
        for g in list(open_groups):
            take = min(share, available[g] - quota[g])
            quota[g] += take
            left -= take
            if quota[g] == available[g]:
                open_groups.remove(g)
    return quota


def _seed(seed: int, *parts: object) -> int:
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def draw_subset(labelled: Sequence[Labelled], size: int, seed: int = 0) -> list[Labelled]:
    """A balanced subset of ``size`` images, the same for the same labels and seed
    (whatever the row order of the labels file)."""
    by_group: dict[Group, list[Labelled]] = {}
    for item in sorted(labelled, key=lambda x: x.image):
        by_group.setdefault(item.group, []).append(item)
    quota = quotas({g: len(v) for g, v in by_group.items()}, size, seed)
    chosen = []
    for group in all_groups():
        members = by_group.get(group, [])
        order = np.random.default_rng(_seed(seed, *group)).permutation(len(members))
        chosen += [members[i] for i in order[: quota.get(group, 0)]]
    return chosen


def joint_entropy(groups: Iterable[Group]) -> float:
    """Entropy in bits of the joint (age, ethnicity, gender) distribution, Table 8's J.E."""
    counts = np.array(list(Counter(groups).values()), dtype=float)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Table 8's row for a subset: counts per label and the joint entropy."""

    size: int
    age: dict[str, int]
    ethnicity: dict[str, int]
    gender: dict[str, int]
    groups: dict[Group, int]
    entropy: float

    @classmethod
    def of(cls, subset: Sequence[Labelled]) -> "Statistics":
        def counts(index: int, names: Sequence[str]) -> dict[str, int]:
            c = Counter(item.group[index] for item in subset)
            return {n: c.get(n, 0) for n in names}

        groups = Counter(item.group for item in subset)
        return cls(len(subset), counts(0, AGE_GROUPS), counts(1, ETHNICITIES), counts(2, GENDERS),
                   {g: groups.get(g, 0) for g in all_groups()}, joint_entropy(item.group for item in subset))

    def table8_row(self) -> str:
        """The subset as a row of the paper's Table 8 (Markdown)."""
        header = ("| Size | MI | Y | MA | S | A | W | B | M | F | J.E. |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|\n")
        cells = [self.size, *self.age.values(), *self.ethnicity.values(), *self.gender.values()]
        return header + "| " + " | ".join(map(str, cells)) + f" | {self.entropy:.4f} |\n"


def write_subset(subset: Sequence[Labelled], path: str | Path) -> Path:
    """The chosen images and their groups as CSV (image, age_group, ethnicity, gender)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "age_group", "ethnicity", "gender"])
        for item in subset:
            writer.writerow([item.image, *item.group])
    return path


def copy_images(subset: Sequence[Labelled], source: str | Path, target: str | Path) -> int:
    """Copy the chosen images from ``source`` into ``target`` (a folder a suite can name).

    A label's image name is a path inside ``source`` (``00000/00001.png``), whose suffix
    may be omitted. Every file is found before any is copied, and a name that is absolute
    or climbs out with ``..`` is refused: a labels file must not copy ``/etc/passwd``
    into a dataset. Raises naming the first image refused or not found."""
    import shutil

    source, target = Path(source), Path(target)
    found = [_image_file(source, item.image) for item in subset]
    target.mkdir(parents=True, exist_ok=True)
    for path in found:
        shutil.copy2(path, target / path.name)
    return len(found)


def _image_file(source: Path, image: str) -> Path:
    """The file a label names inside ``source``: the exact name, else ``name.*``."""
    import glob

    relative = PurePath(image)
    if relative.is_absolute() or ".." in relative.parts:
        raise LabelsError(f"{source}: image {image!r} of the labels is not inside the folder "
                          "(an absolute path or one with '..'); image names are paths inside --images")
    exact = source / relative
    if exact.is_file():
        return exact
    matches = sorted(p for p in source.glob(f"{glob.escape(image)}.*") if p.is_file())
    if not matches:
        raise LabelsError(f"{source}: no image {image!r} (nor {image}.*) for the subset")
    return matches[0]
