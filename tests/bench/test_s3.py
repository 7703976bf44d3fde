"""Runs against a real S3 API on 127.0.0.1 (moto's server, `tests/s3server.py`), reached
the way users reach MinIO, R2 or Ceph: the AWS variables plus ``AWS_ENDPOINT_URL``.

Every command runs as a user runs it, ``idard-bench`` in its own process; the suites are
tiny (48 px crops, 2 samples) and most use the ``latency`` model and PSNR, so a test pays
for Ray and HTTP, not for SR. What is under test is the object-store path: listing and
reading images, one PUT per part, the lease by write-wait-verify, compaction by manifest,
and one clear line for each way a store can fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from idard.measure.records import KEY_COLUMNS
from tests.bench.conftest import write_crops
from tests.s3server import Outage, S3Server, s3_server, wait_for

REPO = Path(__file__).resolve().parents[2]
#: A fast model (sleeps, then upsamples) and metric: the store is under test, not SR.
FAST = "models: ['latency(ms=50)']\nmetrics: [psnr]\n"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One server for the module (each test uses its own bucket); stopped at the end."""
    with s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture()
def bucket(s3: S3Server, request: pytest.FixtureRequest) -> str:
    name = request.node.name.lower().replace("_", "-")[:50].strip("-")
    s3.make_bucket(name)
    return name


def _env(s3: S3Server, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, **s3.env(), "PYTHONPATH": str(REPO), "IDARD_WEIGHTS_DIR": str(tmp_path / "cache"),
            **extra}


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "idard.bench.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _suite(folder: Path, images: str, downscalers: str = "[bicubic, nearest]", body: str = FAST,
           samples: int = 2) -> Path:
    path = folder / "suite.yaml"
    path.write_text(f"name: s3\nimages: ['{images}']\ndownscalers: {downscalers}\n{body}samples: {samples}\n")
    return path


def _records(s3: S3Server, uri: str, tmp_path: Path) -> pl.DataFrame:
    """The run's records as a reader sees them (through idard's own store, from S3)."""
    os.environ.update(s3.env())  # this process reads the store the way the CLI does
    from idard.bench.store import RecordStore

    return RecordStore(uri).scan().collect()


def _exactly_once(records: pl.DataFrame, expected: int) -> None:
    keys = records.select(KEY_COLUMNS)
    assert keys.height == expected, f"{keys.height} records, expected {expected}"
    assert keys.unique().height == expected, "a key is held twice"


def _upload_crops(s3: S3Server, tmp_path: Path, bucket: str, count: int = 2) -> str:
    write_crops(tmp_path / "hr", count)
    s3.upload(tmp_path / "hr", f"s3://{bucket}/hr/")
    return f"s3://{bucket}/hr/"


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with one line naming what is wrong (no traceback)."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ---------------------------------------------------------------------------------- runs
def test_a_run_reads_images_from_s3_and_writes_its_run_directory_there(s3: S3Server, bucket: str,
                                                                        tmp_path: Path) -> None:
    images = _upload_crops(s3, tmp_path, bucket)
    suite = _suite(tmp_path, images)
    out = f"s3://{bucket}/runs/x"
    env = _env(s3, tmp_path)
    first = _cli("run", "--suite", str(suite), "--out", out, "--workers", "1", "--flush-records", "2",
                 "--bootstrap", "100", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "8 tasks to compute (0 of 8 already in the store)" in first.stdout
    keys = s3.keys(f"s3://{bucket}/runs/x/")
    parts = sum(k.startswith("runs/x/records/part-") for k in keys)
    assert parts == 2  # one part per work unit (image x model: 4 records) at --flush-records 2
    assert {"runs/x/run.json", "runs/x/suite.yaml", "runs/x/ida_rd.md"} <= set(keys)
    assert "runs/x/lease.json" not in keys, "the lease is released when the run ends"
    _exactly_once(_records(s3, out, tmp_path), 8)
    run_json = json.loads(s3.client().get_object(Bucket=bucket, Key="runs/x/run.json")["Body"].read())
    assert len(run_json["runs"]) == 1 and run_json["suite_hash"]

    status = _cli("status", "--suite", str(suite), "--out", out, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "8/8 records done" in status.stdout

    report = _cli("report", out, "--html", env=env)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "report.html" in " ".join(s3.keys(f"s3://{bucket}/runs/x/"))

    compact = _cli("compact", out, env=env)
    assert compact.returncode == 0, compact.stdout + compact.stderr
    assert f"{parts} parts -> 1" in compact.stdout
    parts = [k for k in s3.keys(f"s3://{bucket}/runs/x/records/") if k.rsplit("/", 1)[-1].startswith("part-")]
    assert len(parts) == 1, parts
    _exactly_once(_records(s3, out, tmp_path), 8)


def _start(suite: Path, out: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    """``idard-bench run`` in its own session, so the test can end whatever Ray it left."""
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out", out,
               "--workers", "1", "--flush-records", "1", "--bootstrap", "100", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _end_session(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a run's session (its Ray processes): the test's own."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _parts(s3: S3Server, uri: str) -> list[str]:
    return [k for k in s3.keys(f"{uri}/records/") if k.rsplit("/", 1)[-1].startswith("part-")]


def test_a_second_run_on_the_same_prefix_stops_naming_the_holder(s3: S3Server, bucket: str,
                                                                 tmp_path: Path) -> None:
    suite = _suite(tmp_path, _upload_crops(s3, tmp_path, bucket))
    out = f"s3://{bucket}/runs/x"
    env = _env(s3, tmp_path)
    first = _start(suite, out, env)
    try:
        wait_for(lambda: "runs/x/lease.json" in s3.keys(f"s3://{bucket}/runs/x/") or first.poll() is not None,
                 120, "the first run's lease")
        assert first.poll() is None, first.communicate()
        started = time.monotonic()
        second = _cli("run", "--suite", str(suite), "--out", out, env=env)
        seconds = time.monotonic() - started
    finally:
        _end_session(first)
    line = _one_line_error(second, f"{out} is in use by another run", f"pid {first.pid} on ")
    assert second.returncode == 2, line
    print(f"second run stopped in {seconds:.1f} s: {line}")


def test_a_driver_killed_mid_run_resumes_with_no_key_lost_or_doubled(s3: S3Server, bucket: str,
                                                                     tmp_path: Path) -> None:
    suite = _suite(tmp_path, _upload_crops(s3, tmp_path, bucket, count=4), body=FAST.replace("ms=50", "ms=400"))
    out = f"s3://{bucket}/runs/x"
    env = _env(s3, tmp_path)
    first = _start(suite, out, env)
    try:
        wait_for(lambda: _parts(s3, out) or first.poll() is not None, 240, "the first part")
        os.kill(first.pid, signal.SIGKILL)  # the driver alone, as a crash or an OOM kill does
    finally:
        _end_session(first)
    before = _records(s3, out, tmp_path).height
    assert 0 < before < 16, f"the kill came too late to test anything ({before} records)"
    assert "runs/x/lease.json" in s3.keys(f"s3://{bucket}/runs/x/"), "a killed driver leaves its lease"

    started = time.monotonic()
    resumed = _cli("run", "--suite", str(suite), "--out", out, "--workers", "1", "--bootstrap", "100", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{16 - before} tasks to compute ({before} of 16 already in the store)" in resumed.stdout
    _exactly_once(_records(s3, out, tmp_path), 16)
    print(f"killed after {before} of 16 records; resume took {time.monotonic() - started:.0f} s, "
          f"computed {16 - before}, 0 lost, 0 doubled")


# -------------------------------------------------------------------------- store faults
def test_wrong_or_missing_credentials_and_a_missing_bucket_each_give_one_clear_line(
        s3: S3Server, bucket: str, tmp_path: Path) -> None:
    suite = _suite(tmp_path, _upload_crops(s3, tmp_path, bucket))
    out = f"s3://{bucket}/runs/x"
    wrong_secret = _cli("run", "--suite", str(suite), "--out", out,
                        env=_env(s3, tmp_path, AWS_SECRET_ACCESS_KEY="not-the-secret"), timeout=120)
    print(_one_line_error(wrong_secret, out, "access denied: check the credentials", s3.endpoint))
    wrong_key = _cli("run", "--suite", str(suite), "--out", out,
                     env=_env(s3, tmp_path, AWS_ACCESS_KEY_ID="AKIANOBODY"), timeout=120)
    print(_one_line_error(wrong_key, out, "access denied: check the credentials"))
    missing = {k: v for k, v in _env(s3, tmp_path).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    no_credentials = _cli("run", "--suite", str(suite), "--out", out, env=missing, timeout=120)
    print(_one_line_error(no_credentials, out, "no credentials: set AWS_ACCESS_KEY_ID"))
    no_bucket = _cli("run", "--suite", str(suite), "--out", "s3://no-such-bucket/runs/x",
                     env=_env(s3, tmp_path), timeout=120)
    print(_one_line_error(no_bucket, "s3://no-such-bucket/runs/x", "the bucket does not exist"))
    assert s3.keys(out) == [], "nothing was written with bad credentials"


def test_the_server_going_down_mid_run_stops_it_with_one_line_and_loses_nothing_flushed(
        s3: S3Server, bucket: str, tmp_path: Path) -> None:
    suite = _suite(tmp_path, _upload_crops(s3, tmp_path, bucket, count=4), body=FAST.replace("ms=50", "ms=400"))
    out = f"s3://{bucket}/runs/x"
    outage = Outage(s3.port)
    run = _start(suite, out, _env(s3, tmp_path, AWS_ENDPOINT_URL=outage.endpoint))
    try:
        wait_for(lambda: _parts(s3, out) or run.poll() is not None, 240, "the first part")
        outage.down()
        flushed = set(_parts(s3, out))
        stdout, stderr = run.communicate(timeout=240)
    finally:
        _end_session(run)
        outage.down()
    result = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    print(_one_line_error(result, out, "cannot reach the object store", outage.endpoint))
    assert flushed <= set(_parts(s3, out)), "a flushed part was lost"
    before = _records(s3, out, tmp_path).height
    resumed = _cli("run", "--suite", str(suite), "--out", out, "--workers", "1", "--bootstrap", "100",
                   env=_env(s3, tmp_path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"({before} of 16 already in the store)" in resumed.stdout
    _exactly_once(_records(s3, out, tmp_path), 16)


# ------------------------------------------------------------------------------- weights
def test_weights_named_by_an_s3_uri_are_copied_into_the_cache_and_hash_checked(s3: S3Server, bucket: str,
                                                                               tmp_path: Path) -> None:
    from idard.measure.weights import KNOWN_SHA256

    embedded = REPO / "idard" / "weights" / "srflow-tiny-4x.safetensors"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / embedded.name).write_bytes(embedded.read_bytes())
    s3.upload(tmp_path / "w", f"s3://{bucket}/weights/")
    suite = _suite(tmp_path, f"s3://{bucket}/hr/", body=(
        f"models: [\"srflow(weights='s3://{bucket}/weights/{embedded.name}', config=TINY_4X, heat=0.7)\"]\n"
        "metrics: [psnr]\n"))
    env = _env(s3, tmp_path)
    first = _cli("weights", "--suite", str(suite), env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    cached = tmp_path / "cache" / embedded.name
    assert cached.read_bytes() == embedded.read_bytes()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == KNOWN_SHA256[embedded.name]
    assert "verified" in first.stdout and "MISMATCH" not in first.stdout

    # The object is replaced under the same name: the cache must not keep serving the old copy.
    time.sleep(1.1)  # a new modification time, as any later upload has
    from safetensors.torch import load_file, save_file

    save_file(load_file(embedded), tmp_path / "w" / embedded.name, metadata={"retrained": "yes"})
    changed = (tmp_path / "w" / embedded.name).read_bytes()
    s3.upload(tmp_path / "w", f"s3://{bucket}/weights/")
    second = _cli("weights", "--suite", str(suite), env=env, timeout=120)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "MISMATCH" in second.stdout
    assert cached.read_bytes() == changed


# ----------------------------------------------------------------------- precomputed LR
def _lr_set(hr: Path, folder: Path, scale: int = 4) -> Path:
    """A precomputed LR set: each HR crop box-downscaled by ``scale`` (made "elsewhere")."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(hr.glob("*.png")):
        with Image.open(path) as image:
            image.resize((image.width // scale, image.height // scale), Image.Resampling.BOX).save(folder / path.name)
    return folder


def _change_one_lr_file(folder: Path) -> None:
    from PIL import Image

    first = sorted(folder.glob("*.png"))[0]
    with Image.open(first) as image:
        Image.eval(image, lambda v: 255 - v).save(first)


def test_a_precomputed_lr_set_on_s3_is_read_and_named_like_the_same_set_on_disk(
        s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from idard.measure.downscalers import Precomputed
    from idard.measure.images import ImageError, load_image
    from idard.measure.registry import SpecError

    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    write_crops(tmp_path / "hr", 2)
    lr = _lr_set(tmp_path / "hr", tmp_path / "sets" / "lr_x4")
    s3.upload(lr, f"s3://{bucket}/sets/lr_x4/")
    local, remote = Precomputed(folder=str(lr)), Precomputed(folder=f"s3://{bucket}/sets/lr_x4")
    assert remote.id == local.id and remote.id.startswith("precomputed(folder='lr_x4',content=")
    templated = Precomputed(folder=f"s3://{bucket}/sets/lr_x{{scale}}")
    assert templated.content_hash() == Precomputed(folder=str(tmp_path / "sets" / "lr_x{scale}")).content_hash()

    hr = load_image(tmp_path / "hr" / "img000.png")
    assert (remote.downscale(hr, 4) == load_image(lr / "img000.png").pixels).all()
    assert remote.lr_sha256("img000", 4) == hashlib.sha256((lr / "img000.png").read_bytes()).hexdigest()

    _change_one_lr_file(lr)
    s3.upload(lr, f"s3://{bucket}/sets/lr_x4/")
    changed = Precomputed(folder=f"s3://{bucket}/sets/lr_x4")
    assert changed.id != remote.id and changed.id == Precomputed(folder=str(lr)).id
    pinned = Precomputed(folder=f"s3://{bucket}/sets/lr_x4", content=remote.identity_values()["content"])
    with pytest.raises(ImageError, match=f"s3://{bucket}/sets/lr_x4: precomputed LR files changed"):
        pinned.downscale(hr, 4)  # a spec pinned to the old content (as workers get it) refuses the new files
    with pytest.raises(SpecError, match=f"LR folder s3://{bucket}/nothing-here does not exist"):
        Precomputed(folder=f"s3://{bucket}/nothing-here").id


def test_a_run_with_a_precomputed_lr_set_on_s3_computes_records_and_a_changed_file_is_a_new_id(
        s3: S3Server, bucket: str, tmp_path: Path) -> None:
    images = _upload_crops(s3, tmp_path, bucket)
    lr = _lr_set(tmp_path / "hr", tmp_path / "lr_x4")
    s3.upload(lr, f"s3://{bucket}/lr_x4/")
    suite = _suite(tmp_path, images, downscalers=f"[bicubic, 'precomputed(folder=s3://{bucket}/lr_x4)']")
    out = f"s3://{bucket}/runs/x"
    env = _env(s3, tmp_path)
    args = ("run", "--suite", str(suite), "--out", out, "--workers", "1", "--bootstrap", "100")
    first = _cli(*args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    records = _records(s3, out, tmp_path)
    _exactly_once(records, 8)
    assert records["error"].null_count() == 8, records.filter(pl.col("error").is_not_null())["error"][0]
    old = {d for d in records["downscaler"] if d.startswith("precomputed(")}
    assert len(old) == 1 and next(iter(old)).startswith("precomputed(folder='lr_x4',content=")
    assert records.filter(pl.col("downscaler").is_in(old))["lr_sha256"].null_count() == 0

    _change_one_lr_file(lr)
    s3.upload(lr, f"s3://{bucket}/lr_x4/")
    second = _cli(*args, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "4 tasks to compute (4 of 8 already in the store)" in second.stdout
    records = _records(s3, out, tmp_path)
    _exactly_once(records, 12)
    assert len({d for d in records["downscaler"] if d.startswith("precomputed(")} - old) == 1
