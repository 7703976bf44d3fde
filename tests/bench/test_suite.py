"""Suites: YAML that is validated on load, with errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from idard.bench.suite import SuiteError, load_suite, parse_suite

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


MINIMAL = "images: [bundled:held-out]\ndownscalers: [bicubic]\nmodels: [srflow-tiny-4x]\n"


def test_the_quickstart_suite_is_the_embedded_default() -> None:
    suite = load_suite(REPO / "benchmark" / "quickstart.yaml")
    assert suite.images == ("bundled:held-out",)
    assert suite.models == ("srflow-tiny-4x",)
    assert suite.metrics == ("lpips-alex",)
    assert suite.samples == 8 and suite.seeds == tuple(range(8))
    assert {"bicubic", "nearest", "blur(sigma=2.0)"} <= set(suite.downscalers)
    assert suite.scales == (4,)




def test_plug_ins_are_stored_by_canonical_id(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, MINIMAL.replace("[bicubic]", "['blur(sigma=2)', {name: noise, sigma: 0.1}]")))
    assert suite.downscalers == ("blur(sigma=2.0)", "noise(sigma=0.1)")


def test_defaults_and_seed_forms(tmp_path: Path) -> None:
    assert load_suite(_write(tmp_path, MINIMAL)).seeds == tuple(range(8))
    assert load_suite(_write(tmp_path, MINIMAL + "samples: 3\nseed_start: 10\n")).seeds == (10, 11, 12)
    assert load_suite(_write(tmp_path, MINIMAL + "seeds: [5, 1]\n")).seeds == (5, 1)


@pytest.mark.parametrize(
    ("extra", "key", "says"),
    [
        ("colour: red\n", "colour", "allowed keys"),
        ("samples: 0\n", "samples", "positive integer"),
        ("seeds: [1, 1]\n", "seeds", "repeated"),
        ("seeds: [1]\nsamples: 2\n", "seeds", "not both"),
        ("hr_policy: stretch\n", "hr_policy", "center-crop"),
        ("scales: [8]\n", "models[0]", "x4"),
        ("max_batch: -1\n", "max_batch", "positive"),
        ("metrics: [lpips-squeeze]\n", "metrics[0]", "lpips-alex"),
    ],
)
def test_bad_values_name_file_key_and_what_is_allowed(tmp_path: Path, extra: str, key: str, says: str) -> None:
    path = _write(tmp_path, MINIMAL + extra)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and says in message


def test_an_unknown_downscaler_lists_the_registered_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("[bicubic]", "[bicubic, blurr(sigma=2)]"))
    with pytest.raises(SuiteError, match=r"'downscalers\[1\]'.*unknown downscaler 'blurr'.*registered:.*blur"):
        load_suite(path)


def test_a_bad_parameter_names_the_allowed_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("[bicubic]", "['blur(radius=2)']"))
    with pytest.raises(SuiteError, match=r"'downscalers\[0\]'.*radius.*allowed:.*sigma"):
        load_suite(path)


def test_missing_required_keys_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"'models': is required"):
        load_suite(_write(tmp_path, "images: [x]\ndownscalers: [bicubic]\n"))
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(_write(tmp_path, "images: [unclosed\n"))
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "absent.yaml")
    with pytest.raises(SuiteError, match="must be a mapping"):
        load_suite(_write(tmp_path, "- just\n- a list\n"))


def test_relative_paths_resolve_against_the_suite_folder(tmp_path: Path) -> None:
    (tmp_path / "lr_x4").mkdir()
    suite = load_suite(_write(tmp_path, MINIMAL.replace("[bicubic]", "['precomputed(folder=lr_x4)']")))
    assert str(tmp_path.resolve() / "lr_x4") in suite.downscalers[0]
    assert suite.base_dir == str(tmp_path.resolve())


def test_the_digest_follows_what_is_computed_not_the_name() -> None:
    data = {"images": ["bundled:held-out"], "downscalers": ["bicubic"], "models": ["srflow-tiny-4x"]}
    a = parse_suite({**data, "name": "a"})
    assert a.digest() == parse_suite({**data, "name": "b"}).digest()
    assert a.digest() != parse_suite({**data, "downscalers": ["bicubic", "box"]}).digest()
    assert a.digest() != parse_suite({**data, "models": ["srflow-tiny-4x(heat=0.5)"]}).digest()
