"""Balanced subsets (supplement Sec. 4, Table 8): 24 age x ethnicity x gender groups."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest

from idard.bench.suite.subset import (IDEAL_ENTROPY, LabelsError, Labelled, Statistics, age_group, draw_subset,
                                joint_entropy, quotas, read_labels)


def _labels(path: Path, rows: list[tuple[str, object, str, str]], header=("image", "age", "gender", "ethnicity")) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _population(n: int, seed: int = 1) -> list[tuple[str, object, str, str]]:
    """A skewed population (mostly white, young, male), as FFHQ is."""
    rng = random.Random(seed)
    return [(f"{i:05d}.png", rng.choice([5, 25, 25, 25, 30, 45, 60]), rng.choice(["male", "male", "female"]),
             rng.choice(["white", "white", "white", "asian", "black", "indian"])) for i in range(n)]


def test_the_ideal_joint_entropy_is_log2_24() -> None:
    assert IDEAL_ENTROPY == pytest.approx(4.5850, abs=1e-4)
    groups = [(a, e, g) for a in "ABCD" for e in "xyz" for g in "mf"]
    assert joint_entropy(groups * 3) == pytest.approx(IDEAL_ENTROPY)


def test_age_groups_follow_the_papers_ranges() -> None:
    assert [age_group(v) for v in ("0", "18", "19", "36", "37", "54", "55", "90")] == [
        "minor", "minor", "youth", "youth", "middle", "middle", "senior", "senior"]
    assert age_group("Middle Aged") == "middle" and age_group("n/a") is None and age_group("-3") is None


def test_a_skewed_population_gives_an_almost_balanced_subset(tmp_path: Path) -> None:
    labelled, dropped = read_labels(_labels(tmp_path / "l.csv", _population(3000)))
    assert dropped["ethnicity not Asian, White or Black"] > 0  # 'indian' is not one of the three groups
    stats = Statistics.of(draw_subset(labelled, 240, seed=0))
    assert stats.size == 240 and set(stats.groups.values()) == {10}  # every group has enough: exact balance
    assert stats.entropy == pytest.approx(IDEAL_ENTROPY)
    assert stats.gender == {"male": 120, "female": 120}


def test_the_draw_is_deterministic_for_a_seed_and_independent_of_row_order(tmp_path: Path) -> None:
    rows = _population(800)
    a, _ = read_labels(_labels(tmp_path / "a.csv", rows))
    b, _ = read_labels(_labels(tmp_path / "b.csv", list(reversed(rows))))
    first = [x.image for x in draw_subset(a, 100, seed=3)]
    assert first == [x.image for x in draw_subset(b, 100, seed=3)]
    assert first != [x.image for x in draw_subset(a, 100, seed=4)]


def test_scarce_groups_give_all_they_have_and_the_rest_share_the_shortfall() -> None:
    available = {("senior", "black", "female"): 2, ("youth", "white", "male"): 100, ("minor", "asian", "female"): 100}
    quota = quotas(available, 50)
    assert quota[("senior", "black", "female")] == 2 and sum(quota.values()) == 50
    assert abs(quota[("youth", "white", "male")] - quota[("minor", "asian", "female")]) <= 1


def test_asking_for_more_than_the_labels_hold_says_how_many_there_are() -> None:
    labelled = [Labelled(f"{i}", ("youth", "white", "male")) for i in range(5)]
    with pytest.raises(LabelsError, match="only 5 images"):
        draw_subset(labelled, 6)


def test_bad_labels_files_name_the_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="no column 'ethnicity'"):
        read_labels(_labels(tmp_path / "l.csv", [("a", 3, "male")], header=("image", "age", "gender")))
    with pytest.raises(LabelsError, match="listed twice"):
        read_labels(_labels(tmp_path / "d.csv", [("a", 3, "male", "white"), ("a", 4, "male", "white")]))


def test_the_subset_command_prints_table_8s_row(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from idard.bench.cli import app

    labels = _labels(tmp_path / "l.csv", _population(600))
    images = tmp_path / "images"
    images.mkdir()
    for name, *_ in _population(600):
        (images / name).write_bytes(b"png")
    result = CliRunner().invoke(app, ["subset", str(labels), "--size", "48", "--seed", "1", "--out",
                                      str(tmp_path / "s.csv"), "--images", str(images), "--copy-to", str(tmp_path / "sub")])
    assert result.exit_code == 0, result.output
    assert "| 48 |" in result.output and "joint entropy 4.5850 bits" in result.output
    assert len(list((tmp_path / "sub").iterdir())) == 48
    assert sum(1 for _ in open(tmp_path / "s.csv")) == 49
    assert math.isclose(IDEAL_ENTROPY, math.log2(24))


def test_a_labels_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Excel writes "CSV UTF-8" with a BOM: its first column read as '\\ufeffimage' and was
    refused as missing."""
    path = tmp_path / "excel.csv"
    path.write_text("image,age,gender,ethnicity\n0001.png,25,male,white\n", encoding="utf-8-sig")
    kept, _ = read_labels(path)
    assert kept == [Labelled("0001.png", ("youth", "white", "male"))]


@pytest.mark.parametrize("hostile", ["../secret.txt", "sub/../../secret.txt", "ABSOLUTE", "../secret"])
def test_image_names_from_labels_stay_inside_the_images_folder(tmp_path: Path, hostile: str) -> None:
    """``subset --copy-to`` copied a label row ``../../../etc/passwd`` or ``/etc/hostname``
    into the subset folder."""
    from idard.bench.suite.subset import copy_images

    secret = tmp_path / "secret.txt"
    secret.write_text("not an image of the dataset")
    hostile = hostile.replace("ABSOLUTE", str(secret))
    images, target = tmp_path / "images", tmp_path / "subset"
    (images / "sub").mkdir(parents=True)
    (images / "0001.png").write_bytes(b"png")
    chosen = [Labelled("0001.png", ("youth", "white", "male")), Labelled(hostile, ("youth", "white", "female"))]
    with pytest.raises(LabelsError, match=rf"^{images}: image {hostile!r} .*not inside the folder"):
        copy_images(chosen, images, target)
    assert not target.exists() or not any(target.iterdir())  # refused before anything was copied


def test_image_names_may_name_subfolders_and_omit_the_suffix(tmp_path: Path) -> None:
    from idard.bench.suite.subset import copy_images

    images = tmp_path / "images"
    (images / "00000").mkdir(parents=True)
    (images / "00000" / "00001.png").write_bytes(b"png")
    (images / "[x].png").write_bytes(b"png")  # glob characters in a name are a name
    chosen = [Labelled("00000/00001", ("youth", "white", "male")), Labelled("[x]", ("youth", "white", "female"))]
    assert copy_images(chosen, images, tmp_path / "subset") == 2
    assert sorted(p.name for p in (tmp_path / "subset").iterdir()) == ["00001.png", "[x].png"]
