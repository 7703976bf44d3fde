"""Finding weight files: as given, then by name in the weights cache; URLs cached once."""

from __future__ import annotations

from pathlib import Path

import pytest

from idard.measure.weights import ENV_WEIGHTS_DIR, WeightsNotFound, resolve_weights, verdict


def test_a_path_that_exists_is_used_as_given(tmp_path: Path) -> None:
    path = tmp_path / "G.pt"
    path.write_bytes(b"x")
    assert resolve_weights(str(path)) == path


def test_a_missing_file_is_found_by_name_in_the_cache(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    (cache / "ckpt").mkdir(parents=True)
    (cache / "ckpt" / "SRFlow_DF2K_4X.pth").write_bytes(b"x")
    (cache / "mapping.pt").write_bytes(b"x")
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(cache))
    assert resolve_weights("ckpt/SRFlow_DF2K_4X.pth") == cache / "ckpt" / "SRFlow_DF2K_4X.pth"
    assert resolve_weights("/suite/dir/mapping.pt") == cache / "mapping.pt"  # a suite made it absolute


def test_a_file_found_nowhere_names_every_place_looked_at(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFound, match=r"synthesis\.pt: no such weights file \(looked at .*cache/synthesis\.pt"):
        resolve_weights("/nowhere/synthesis.pt")


def test_a_url_already_in_the_cache_is_not_downloaded_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    (tmp_path / "SRFlow_DF2K_8X.pth").write_bytes(b"x")
    assert resolve_weights("https://example.invalid/models/SRFlow_DF2K_8X.pth?dl=1") == tmp_path / "SRFlow_DF2K_8X.pth"


def test_known_files_are_verified_by_hash() -> None:
    name = Path("srflow-tiny-4x.safetensors")
    assert verdict(name, "20248c5f3327021a0859c33e7a7f487d2d3432a9203efb96577e903c758887ea") == "verified"
    assert verdict(name, "0" * 64).startswith("MISMATCH")
    assert verdict(Path("my.pth"), "0" * 64) == "unknown"
