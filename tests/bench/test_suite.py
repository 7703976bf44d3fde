"""Suites: YAML that is validated on load, with errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from idard.bench.suite import SuiteError, load_suite, parse_suite, run_dir_name, suite_document

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
    # The id (record key) names the folder by name and content; the spec a worker builds
    # it from holds the resolved path.
    assert suite.downscalers[0].startswith("precomputed(folder='lr_x4',content=")
    assert str(tmp_path.resolve() / "lr_x4") in suite.spec(suite.downscalers[0])
    assert suite.base_dir == str(tmp_path.resolve())


def test_a_missing_precomputed_folder_is_refused_on_load(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"downscalers\[0\].*lr_x4 does not exist"):
        load_suite(_write(tmp_path, MINIMAL.replace("[bicubic]", "['precomputed(folder=lr_x4)']")))


def test_ids_and_digest_do_not_depend_on_where_the_suite_sits(tmp_path: Path) -> None:
    text = MINIMAL.replace("[bicubic]", "['precomputed(folder=lr_x4)', bicubic]")
    suites = []
    for where in ("one", "two/deeper"):
        folder = tmp_path / where
        (folder / "lr_x4").mkdir(parents=True)
        (folder / "lr_x4" / "a.png").write_bytes(b"same bytes")
        suites.append(load_suite(_write(folder, text)))
    assert suites[0].downscalers == suites[1].downscalers
    assert suites[0].digest() == suites[1].digest()
    (tmp_path / "one" / "lr_x4" / "a.png").write_bytes(b"other bytes")  # another LR set: another id
    assert load_suite(tmp_path / "one" / "suite.yaml").downscalers != suites[1].downscalers


def test_the_digest_follows_what_is_computed_not_the_name() -> None:
    data = {"images": ["bundled:held-out"], "downscalers": ["bicubic"], "models": ["srflow-tiny-4x"]}
    a = parse_suite({**data, "name": "a"})
    assert a.digest() == parse_suite({**data, "name": "b"}).digest()
    assert a.digest() != parse_suite({**data, "downscalers": ["bicubic", "box"]}).digest()
    assert a.digest() != parse_suite({**data, "models": ["srflow-tiny-4x(heat=0.5)"]}).digest()


def _load_guarded(path: Path) -> str:
    """`load_suite` of ``path`` in a child capped at 2 GiB of data and 60 s: what it says
    (the error, or the length of the description it accepted). A bomb whose bound broke
    fails the test at once instead of growing past the machine's memory."""
    from tests.guarded import run_guarded

    return run_guarded(f"""
from idard.bench.suite import SuiteError, load_suite
try:
    _report(f"accepted, description of {{len(load_suite({str(path)!r}).description)}} characters")
except SuiteError as exc:
    _report(str(exc))
""", memory_bytes=2 << 30, timeout_s=60).result


def _long_value_aliased(key: str, length: int) -> str:
    """A suite whose ``key`` holds one ``length``-character scalar named ~57,000 times
    through aliases: under the node limit, but gigabytes once written out."""
    s = "[&s " + "x" * length + ", &l1 [" + ", ".join(["*s"] * 16) + "], &l2 [" + ", ".join(["*l1"] * 16)
    s += "], &l3 [" + ", ".join(["*l2"] * 16) + "], [" + ", ".join(["*l3"] * 13) + "]]"
    return "images: [bundled:held-out]\nmodels: [srflow-tiny-4x]\ndownscalers: [bicubic]\n" + f"{key}: {s}\n"


def test_a_yaml_alias_bomb_is_refused_in_one_line_before_it_is_built(tmp_path: Path) -> None:
    """412 bytes of nested aliases once took 2.6 GB and printed a 312 MB error."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
               f"*a{i - 1}, *a{i - 1}]" for i in range(1, 10)]  # 9**10 nodes once expanded
    path = _write(tmp_path, MINIMAL + "description:\n  " + "\n  ".join(levels) + "\n")
    message = _load_guarded(path)
    assert message.startswith(f"{path}: refused: more than 100000 YAML nodes") and len(message) < 300


@pytest.mark.parametrize(("key", "length"), [("name", 4000), ("description", 16000)])
def test_one_long_value_named_by_many_aliases_is_refused(tmp_path: Path, key: str, length: int) -> None:
    """Under the node limit, a 4.4 KB suite gave a 231 MB error message (``name:`` quotes
    its value) and a 16 KB suite was accepted with a 922 MB description (2.5 GB)."""
    path = _write(tmp_path, _long_value_aliased(key, length))
    assert path.stat().st_size < 17_000
    message = _load_guarded(path)
    assert message.startswith(f"{path}: refused: more than 1,048,576 characters of text once its aliases "
                              "are expanded") and len(message) < 300


def test_a_suite_file_past_the_byte_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "# padding\n" * 200_000)  # 2 MB of comments
    with pytest.raises(SuiteError, match=rf"^{path}: refused: more than 1,048,576 bytes"):
        load_suite(path)


def test_an_error_quotes_a_long_value_in_a_few_hundred_characters(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "name: [" + ", ".join(["y" * 1000] * 300) + "]\n")  # 300 KB: allowed
    with pytest.raises(SuiteError, match=rf"^{path}: key 'name': must be a non-empty string, got \['yyy") as refused:
        load_suite(path)
    assert len(str(refused.value)) < 600


def test_a_description_is_free_text_not_a_structure(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="key 'description': must be free text"):
        load_suite(_write(tmp_path, MINIMAL + "description: [a, b]\n"))
    assert load_suite(_write(tmp_path, MINIMAL + "description: 2024\n")).description == "2024"


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="recursive"):
        load_suite(_write(tmp_path, MINIMAL + "description: &d [*d]\n"))


def test_a_duplicate_key_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"duplicate key 'downscalers'.*line 4"):
        load_suite(_write(tmp_path, MINIMAL + "downscalers: [nearest]\n"))


@pytest.mark.parametrize(("name", "folder"), [("../../x", "x"), ("/abs", "abs"), ("a/b c", "a_b_c"), ("..", "suite"),
                                              ("faces-pulse_2.1", "faces-pulse_2.1")])
def test_a_suite_name_gives_one_folder_under_runs(name: str, folder: str) -> None:
    assert run_dir_name(name) == folder


def test_the_run_directorys_copy_of_a_suite_loads_as_the_same_suite(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    suite = load_suite(_write(tmp_path, "name: s\nimages: [images, bundled:coffee]\ndownscalers: [bicubic]\n"
                                        "models: [srflow-tiny-4x]\nseeds: [3, 5]\n"))
    elsewhere = tmp_path / "run" / "suite.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(yaml.safe_dump(suite_document(suite), sort_keys=False))
    again = load_suite(elsewhere)
    same = ("name", "downscalers", "models", "metrics", "seeds", "scales", "hr_policy", "max_batch")
    assert [getattr(again, k) for k in same] == [getattr(suite, k) for k in same]
    assert again.images == (str(tmp_path / "images"), "bundled:coffee")  # the same folder, from anywhere
